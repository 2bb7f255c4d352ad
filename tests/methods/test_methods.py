"""The methods/ registry and the one interface the trainer, the evaluation and the report call.

Every method's first iterations are bit-identical to the code before methods/ existed
(tests/methods/method_runs.json, recorded at commit 0f6d5ba): the loss of each iteration, the progress
lines, the checkpoint's keys (its object graph, which runs in progress and results/ resume from)
and its tensors, and the evaluation's numbers. A new method adds its case to
tests/methods/method_runs.py's CASES and records it (docs/adding-a-method.md).
"""

import ast
import collections
import dataclasses
import json
import pathlib

import keras
import numpy as np
import pytest

import experiments
import image_datasets
import method_runs
import methods
from methods.maml_family import maml_learner
import report
import trainer
import utils

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECORDED = json.loads(method_runs.FIXTURE.read_text())


@pytest.mark.parametrize('case', method_runs.CASES)
def test_first_iterations_are_bit_identical_to_the_recorded_ones(case, request, tmp_path,
                                                                  monkeypatch):
  row, _ = method_runs.CASES[case]
  src = {} if experiments.get(row).datasource == 'sinusoid' else request.getfixturevalue('sources')
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  got = method_runs.run_case(case, str(tmp_path / 'run'), src)
  want = RECORDED[case]
  assert got['losses'] == want['losses']
  assert got['progress'] == want['progress']
  assert got['checkpoint_keys'] == want['checkpoint_keys']
  assert got['checkpoint_sha256'] == want['checkpoint_sha256']
  assert got['results'] == want['results']
  assert method_runs.unrestored_at_evaluation(method_runs.case_config(case, src),
                                              str(tmp_path / 'run')) == []


def test_every_method_has_a_recorded_case():
  covered = {methods.get(experiments.get(row).replace(**changes)).name
             for row, changes in method_runs.CASES.values()}
  assert covered == set(methods.REGISTRY)
  assert set(RECORDED) == set(method_runs.CASES)


def test_every_row_has_a_registered_method():
  for cfg in experiments.EXPERIMENTS.values():
    method = methods.get(cfg)
    assert method.name in (cfg.method, cfg.baseline) and method.cfg is cfg
  # the table's vocabulary and the registry agree: every method name a row may hold is registered
  assert set(experiments.METHODS) <= set(methods.REGISTRY)
  assert set(methods.REGISTRY) <= set(experiments.METHODS) | set(experiments.BASELINES)


def test_registry_errors():
  with pytest.raises(ValueError, match="registered twice"):
    methods.register('maml')(type('Again', (methods.Method,), {}))
  cfg = dataclasses.replace(experiments.get('sinusoid_maml'), method='no_such_method')  # unvalidated
  with pytest.raises(ValueError, match="no method is registered under 'no_such_method'"):
    methods.get(cfg)


def test_report_groups_are_the_method_rows():
  assert set(methods.report_groups()) == set(experiments.METHOD_ROWS)
  assert set(methods.report_groups()) <= set(report.GROUPS)


def test_phases_follow_the_objectives_fields():
  cfg = experiments.get('sinusoid_maml').replace(name='t', metatrain_iterations=10)
  assert methods.get(cfg).phases() == [('maml', 10)]
  assert methods.get(cfg.replace(first_order_iterations=4)).phases() == [('first_order', 4),
                                                                          ('maml', 10)]
  assert methods.get(cfg.replace(pretrain_iterations=3)).phases() == [('pretrain', 3), ('maml', 13)]
  assert methods.get(cfg.replace(pretrain_iterations=3, metatrain_iterations=0)).phases() == [
      ('pretrain', 3)]
  assert methods.get(experiments.get('omniglot_5way_reptile')).phases() == [('maml', 100_000)]


def test_what_evaluation_tunes_and_reports():
  rows = {name: methods.get(experiments.get(name)) for name in (
      'sinusoid_pretrained', 'omniglot_5way_1shot_meta_sgd', 'omniglot_5way_reptile',
      'omniglot_5way_1shot_protonet', 'miniimagenet_5way_1shot_finetune',
      'miniimagenet_5way_1shot_nearest_neighbor')}
  assert {n: m.tunes_step_size for n, m in rows.items()} == {
      'sinusoid_pretrained': True, 'omniglot_5way_1shot_meta_sgd': False,
      'omniglot_5way_reptile': True, 'omniglot_5way_1shot_protonet': False,
      'miniimagenet_5way_1shot_finetune': True, 'miniimagenet_5way_1shot_nearest_neighbor': False}
  assert rows['omniglot_5way_1shot_meta_sgd'].reported_step_size(0.4) == 'learned'
  assert rows['sinusoid_pretrained'].reported_step_size(0.01) == 0.01
  values = {'loss': 1.0, 'pre_loss': 2.0, 'post_loss': 3.0}
  assert rows['omniglot_5way_1shot_protonet'].log_losses(values) == 'query loss 1.0000'
  assert rows['omniglot_5way_reptile'].log_losses(values) == (
      'pre-update loss 2.0000 | post-update loss 3.0000')


# --- the trainer, the evaluation and the report name no method -----------------------------------

def _method_names_in(path: pathlib.Path) -> list[str]:
  """Where the code of `path` names a method: a string that is a registered name (or the oracle),
  a name that groups methods (METRIC_METHODS, CLASSIFIER_BASELINES), a method's own module or class,
  or a variant's field (inner_lr, first_order_iterations, ...)."""
  words = set(methods.REGISTRY) | {'oracle'}
  identifiers = {'METRIC_METHODS', 'CLASSIFIER_BASELINES', 'baselines', 'metric_learning',
                 'reptile', 'Reptile', 'MetricLearner', 'MAML', 'inner_lr', 'stop_grad',
                 'first_order_iterations', 'full_context', 'nn_distance', 'val_shots'}
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Constant) and node.value in words:
      found.append(f'{node.lineno}: {node.value!r}')
    elif isinstance(node, ast.Name) and node.id in identifiers:
      found.append(f'{node.lineno}: {node.id}')
    elif isinstance(node, ast.Attribute) and node.attr in identifiers:
      found.append(f'{node.lineno}: .{node.attr}')
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      modules = [a.name for a in node.names] + [getattr(node, 'module', None) or '']
      found += [f'{node.lineno}: import {m}' for m in modules if m in identifiers]
  return found


# What is left, and why it is no method's business: {(module, what): occurrences}.
NOT_METHODS = {
    ('trainer.py', '.val_shots'): 1,          # Config.val_shots, the validation K (experiments.py)
    ('report/results.py', "'oracle'"): 1,     # LABELS: the sinusoid figures' legend, by row
    ('report/tables.py', '.stop_grad'): 1,    # the experiments table's 'first order' column
    ('report/tables.py', "'maml'"): 1,        # the RL table: RLConfig.method and its inner_lr
    ('report/tables.py', '.inner_lr'): 1,
    ('data_generator.py', "'oracle'"): 1,     # the sinusoid oracle's input: amplitude and phase
    ('benchmark.py', '.stop_grad'): 2,        # the result file's name says first order
}


def _modules(name: str) -> list[str]:
  """The module `name`, or every module of the package `name` (a directory)."""
  path = ROOT / name
  return sorted(str(p.relative_to(ROOT)) for p in path.glob('*.py')) if path.is_dir() else [name]


@pytest.mark.parametrize('module', ['trainer.py', 'report', 'main.py', 'models.py', 'utils.py',
                                    'benchmark.py', 'data_generator.py', 'rundir.py'])
def test_the_trainer_and_the_report_name_no_method(module):
  modules = _modules(module)
  found = collections.Counter((m, f.split(': ', 1)[1]) for m in modules for f in _method_names_in(ROOT / m))
  assert found == {k: n for k, n in NOT_METHODS.items() if k[0] in modules}, (
      {m: _method_names_in(ROOT / m) for m in modules})


def _imports(path: pathlib.Path) -> list[str]:
  """The modules `path` imports at run time (not those under `if TYPE_CHECKING:`), dotted:
  `from rl import trainer` gives 'rl.trainer', `import rl.envs` 'rl.envs'."""
  tree = ast.parse(path.read_text())
  skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
          and getattr(node.test, 'id', '') == 'TYPE_CHECKING' for n in ast.walk(node)}
  names = []
  for node in ast.walk(tree):
    if id(node) in skip:
      continue
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names += [f'{node.module}.{a.name}' for a in node.names]
  return names


# The reading order, top to bottom: a module imports only its own level and those below. A package
# stands for its modules unless a module of it is named on its own.
LEVELS = (
    ('main',),
    ('report', 'run_queue', 'benchmark', 'benchmarks', 'predict'),  # what main runs besides
                                                 # training (the speed comparison too): read the table
    ('experiments',),                            # the rows: the config composed with the methods'
    ('trainer', 'rl.trainer', 'l2l.trainer'),    # one training loop and evaluation per kind of row
    ('methods',),                                # the learner interface and every method
    ('maml', 'models', 'rl', 'l2l'),             # the algorithm core, the networks, the RL core, the
                                                 # learned optimizer's
    ('data_generator', 'image_datasets'),        # tasks and episodes
    ('rundir', 'utils', 'config'),               # shared by every level
)
_LEVEL = {module: i for i, modules in enumerate(LEVELS) for module in modules}


def _level(dotted: str) -> int | None:
  """The level of module `dotted` (e.g. 'rl.envs.ENVS' -> rl's), None outside the project."""
  parts = dotted.split('.')
  for n in range(len(parts), 0, -1):
    if '.'.join(parts[:n]) in _LEVEL:
      return _LEVEL['.'.join(parts[:n])]
  return None


def _project_modules() -> list[pathlib.Path]:
  return sorted(p for p in [*ROOT.glob('*.py'), *ROOT.glob('*/*.py')]
                if p.parts[len(ROOT.parts)] not in ('tests', 'scripts', 'docs'))


def _dotted(path: pathlib.Path) -> str:
  return '.'.join(path.relative_to(ROOT).with_suffix('').parts).removesuffix('.__init__')


def test_every_module_has_a_level():
  assert [str(p.relative_to(ROOT)) for p in _project_modules() if _level(_dotted(p)) is None] == []
  assert {_dotted(p).split('.')[0] for p in _project_modules()} >= {m.split('.')[0] for m in _LEVEL}


@pytest.mark.parametrize('path', _project_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_reading_order_only(path):
  """main -> experiments -> trainer -> methods -> maml/models -> data: nothing points back up."""
  level = _level(_dotted(path))
  up = [m for m in _imports(path) if (_level(m) if _level(m) is not None else level) < level]
  assert not up, f'{path.relative_to(ROOT)} imports {up} from above its level'


# --- a new method touches only its own module ----------------------------------------------------

def test_a_new_method_needs_only_its_own_module(tmp_path, monkeypatch):
  """A method registered here (its module would be methods/<name>.py) trains, checkpoints,
  resumes, evaluates and is labelled through the interface alone: no other module changes."""
  calls = []

  @methods.register('toy')
  class Toy(methods.Method):
    """Multi-task learning of the query loss without inner steps, fine-tuned at meta-test."""

    def build(self, model):
      calls.append('build')
      loss_fn, metric_fn = utils.loss_and_metric(self.cfg)
      learner = maml_learner(self.cfg, model, loss_fn, metric_fn, num_updates=0)
      learner.counter = keras.Variable(0, dtype='int64', trainable=False, name='toy_counter')
      return learner

    def saved_variables(self, learner):
      return {'learner_state': [learner.counter]}

    def log_losses(self, values):
      calls.append('log')
      return 'toy loss %.4f' % values['loss']

    def make_eval_fn(self, learner, steps, return_outputs=False):
      calls.append(('eval', steps))
      return super().make_eval_fn(learner, steps, return_outputs)

    def label(self):
      return 'Toy'

  try:
    monkeypatch.setattr(experiments, 'METHODS', experiments.METHODS + ('toy',))
    cfg = experiments.get('sinusoid_maml').replace(
        name='toy', method='toy', metatrain_iterations=2, print_every=1, checkpoint_every=2,
        steps_per_call=1, eval_shots=(5,), num_test_tasks=4, test_num_updates=2, report_step=2)
    assert trainer.train(cfg, str(tmp_path), log_summaries=False) == 2
    [result] = trainer.evaluate(cfg, str(tmp_path), split='test')
    assert len(result['mean']) == 3 and np.all(np.isfinite(result['mean']))
    assert report.method_label(cfg) == 'Toy'
    assert calls[:2] == ['build', 'log'] and ('eval', 2) in calls
    assert trainer.train(cfg.replace(metatrain_iterations=3), str(tmp_path),
                         log_summaries=False) == 3  # resumes its own checkpoint keys
  finally:
    del methods.REGISTRY['toy']
