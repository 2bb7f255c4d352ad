"""The experiments table: rows valid, overrides checked, scripts and table consistent."""

import math
import pathlib
import re

import pytest

import experiments
from experiments import ConfigError, Config
import utils

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('name', list(experiments.EXPERIMENTS))
def test_every_row_is_valid_and_round_trips_through_json(name):
  cfg = experiments.get(name)
  assert cfg.name == name and cfg.validate() is cfg
  assert cfg.source, f'{name} must say where its settings come from'
  assert Config.from_dict(cfg.to_dict()) == cfg
  for p in cfg.published:
    assert p.shots in cfg.eval_shots and p.step <= cfg.test_num_updates


def test_sinusoid_rows_match_the_paper_and_the_original_code():
  maml = experiments.get('sinusoid_maml')
  assert (maml.update_lr, maml.num_updates, maml.update_batch_size) == (0.001, 1, 10)  # code default
  assert (maml.meta_batch_size, maml.meta_lr, maml.metatrain_iterations) == (25, 1e-3, 70_000)
  assert maml.hidden == (40, 40) and maml.norm == 'None'
  assert experiments.get('sinusoid_maml_paper_alpha').update_lr == 0.01  # paper §5.1, see §4.1
  pre = experiments.get('sinusoid_pretrained')
  assert (pre.pretrain_iterations, pre.metatrain_iterations) == (70_000, 0)
  assert [p.value for p in pre.published] == [2.41, 2.23, 2.19]
  assert [p.value for p in maml.published] == [0.67, 0.38, 0.35]
  assert experiments.get('sinusoid_oracle').input_dim == 3


@pytest.mark.parametrize('changes,match', [
    (dict(update_batch_size=0), 'update_batch_size=0 must be at least 1'),
    (dict(num_updates=-1), 'num_updates=-1 must not be negative'),
    (dict(test_num_updates=-2), 'must not be negative'),
    (dict(update_lr=float('nan')), 'update_lr=nan must be a positive number'),
    (dict(meta_lr=0.0), 'meta_lr=0.0 must be a positive number'),
    (dict(norm='batchnorm'), 'norm'),
    (dict(baseline='oracel'), 'baseline'),
    (dict(metatrain_iterations=0, pretrain_iterations=0), 'nothing to train'),
    (dict(learning_rate=1.0), 'unknown config field'),
    (dict(method='protonet'), 'test_num_updates and report_step must be 0'),
    (dict(method='reptile', inner_lr='per_parameter'), "has none of MAML's variants (inner_lr)"),
    (dict(method='maml_pp'), 'method'),
    (dict(inner_lr='learned'), 'inner_lr'),
    (dict(per_step_norm=True), 'per_step_norm=True needs a norm'),
    (dict(min_meta_lr=0.01), 'min_meta_lr=0.01 must lie in (0, meta_lr=0.001]'),
    (dict(full_context=True), 'full_context=True is for matching networks only'),
    (dict(cosine_scale=10.0), 'cosine_scale=10.0 is for matching networks only'),
    (dict(multi_step_loss_epochs=2, num_updates=0), 'needs num_updates >= 1'),
    (dict(first_order_iterations=-1), 'must not be negative'),
    (dict(task_chunk=2), 'task_chunk=2 must be 0 or divide meta_batch_size (25)'),
    (dict(task_chunk=5, method='reptile'), 'task_chunk=5 chunks the MAML meta-gradient on one device'),
])
def test_bad_values_raise_one_clear_error(changes, match):
  with pytest.raises(ConfigError, match=re.escape(match)):
    experiments.get('sinusoid_maml').replace(**changes)


def test_vectorized_map_is_refused_for_conv_rows_only():
  """pfor cannot map a per-task conv filter: a conv row asking for it would die in tracing."""
  with pytest.raises(ConfigError, match="'vectorized_map' cannot map a convolution"):
    experiments.get('omniglot_5way_1shot').replace(task_parallelism='vectorized_map')
  assert experiments.get('omniglot_5way_1shot_noconv').task_parallelism == 'vectorized_map'


def test_unknown_experiment_lists_the_rows():
  with pytest.raises(ConfigError, match='sinusoid_maml'):
    experiments.get('sinusoid')


def test_scripts_name_only_existing_rows_and_run_every_published_row():
  named = set()
  for script in (ROOT / 'scripts').glob('*.sh'):
    prefixes = '|'.join(experiments.DATASOURCES)
    text = script.read_text()
    named |= set(re.findall(rf'\b((?:{prefixes})_\w+)', text))
    for expression in re.findall(r'rows_of "([^"$]+)"', text):  # rows named by a table group
      named |= set(eval(expression, {'e': experiments}))
  assert named, 'no script names an experiment row'
  assert named <= set(experiments.EXPERIMENTS), named - set(experiments.EXPERIMENTS)
  published = {n for n, c in experiments.EXPERIMENTS.items() if c.published}
  assert published <= named, f'rows with published numbers that no script runs: {published - named}'


def test_ci95_is_the_original_formula():
  values = [[1.0, 2.0, 3.0, 4.0]]
  mean, ci = utils.mean_and_ci95(values)
  assert mean[0] == 2.5
  assert math.isclose(ci[0], 1.96 * math.sqrt(1.25) / 2)  # numpy std (ddof=0), sqrt(n)


def test_rl_scripts_run_every_rl_row():
  named = set()
  for script in (ROOT / 'scripts').glob('rl_*.sh'):
    text = script.read_text()
    named |= set(re.findall(r'\b(rl_\w+_(?:maml|pretrained|random|oracle))\b', text))
    for families in re.findall(r'^run_rl_families ([\w ]+)$', text, re.M):  # lib.sh: RL_METHODS rows
      named |= {f'rl_{f}_{m}' for f in families.split() for m in experiments.RL_METHODS}
  assert named == set(experiments.RL_EXPERIMENTS), set(experiments.RL_EXPERIMENTS) ^ named


def test_method_rows_are_grouped_and_compared_on_shared_tasks():
  family = {row for rows in experiments.METHOD_ROWS.values() for row in rows}
  assert not family & set(experiments.OMNIGLOT_ROWS + experiments.MINIIMAGENET_ROWS)
  for dataset, rows in experiments.COMPARE_ROWS.items():
    cfgs = [experiments.get(r) for r in rows]
    assert {c.datasource for c in cfgs} == {dataset}
    # Same test tasks: N, K = 1 evaluated, the same query size and evaluation seed.
    assert {(c.num_classes, c.test_query_size, c.eval_seed) for c in cfgs} == {(5, None, 1)}
    assert all(1 in c.eval_shots for c in cfgs)
  reptile = experiments.get('omniglot_5way_reptile')
  assert reptile.val_shots == 1 and reptile.update_batch_size == 10  # trains with more shots
  assert {(p.shots, p.transductive) for p in reptile.published} == {(1, True), (1, False),
                                                                    (5, True), (5, False)}


def test_rows_sharing_a_model_differ_from_its_row_in_evaluation_only():
  sharing = [c for c in experiments.EXPERIMENTS.values() if c.model_from]
  assert {c.model_from for c in sharing} == {'miniimagenet_5way_1shot_finetune'} and len(sharing) == 3
  for row in sharing:
    assert set(experiments.shared_model_fields(row)) <= experiments.SHARED_MODEL_FIELDS
  nn = experiments.get('miniimagenet_5way_1shot_nearest_neighbor')
  with pytest.raises(ConfigError, match='differs from miniimagenet_5way_1shot_finetune in what it '
                     'trains .meta_lr.'):
    experiments.shared_model_fields(nn.replace(meta_lr=0.01))
  with pytest.raises(ConfigError, match='must name a classifier baseline row'):
    experiments.shared_model_fields(nn.replace(model_from='miniimagenet_5way_1shot'))
