"""Command line for the MAML reproduction: the only module that reads flags.

Flag names are the original code's (cbfinn/maml), so its commands work unchanged, plus
`--experiment=<row>` presets from experiments.py. Examples:

  python main.py --experiment=sinusoid_maml                      # meta-train (resumes if stopped)
  python main.py --experiment=sinusoid_maml --train=False --test_set=True   # 600 test tasks, K=5,10,20
  python main.py --datasource=sinusoid --metatrain_iterations=70000 --norm=None --update_batch_size=10
  python main.py --experiment=sinusoid_maml --benchmark          # it/s, compile time, peak memory
  python main.py --report=sinusoid --logdir=logs/sinusoid        # Fig. 2, 3/6 and App. C Table 2
  python main.py --experiment=l2l_quadratic                      # the LSTM optimizer: meta-train, evaluate
  python main.py --datasource=folder --data_dir=DIR              # meta-train on a folder of classes
  python main.py --experiment=omniglot_5way_1shot_noconv --logdir=results --predict \
      --support_dir=examples/handdrawn/support --query=examples/handdrawn/query   # adapt, classify

A run lives in <logdir>/<experiment>[.<override><value>...] and stores its config, so test mode needs
no repeated training flags. In test mode --update_batch_size and --update_lr are the *test* K and
alpha; --train_update_batch_size/--train_update_lr name the training values, as in the original.
"""

import dataclasses
import logging as std_logging
import os
import signal
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # hide TF's C++ start-up chatter (CUDA probes)
# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI and newer; the
# image rows' task-batched forward needs their gradients of grouped convolutions, and on an AVX2 CPU
# (AMD EPYC) oneDNN with batched tasks is 1.8x the speed of map_fn without it (docs/performance.md).
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
# `import tensorflow` loads TFLite's converter, which imports JAX whenever it is installed
# (tensorflow/lite/python/util.py) to convert JAX models; nothing here converts models, and the import
# costs each process about 120 MB of memory and a second of start-up (measured beside the speed
# comparison's peers). None in sys.modules makes that import fail as if JAX were not installed.
sys.modules.setdefault('jax', None)

from absl import app
from absl import flags
from absl import logging

import experiments
from experiments import ConfigError

FLAGS = flags.FLAGS
_PREDEFINED = frozenset(FLAGS)  # absl's own flags; the ones below are this module's

# What to run.
flags.DEFINE_string('experiment', None, f'Row of the experiments table: {", ".join(experiments.EXPERIMENTS)}. '
                    'Default: the datasource\'s main row.')
flags.DEFINE_enum('datasource', None, list(experiments.DATASOURCES),
                  'Picks the datasource\'s default row when --experiment is not given.')
flags.DEFINE_bool('train', True, 'True: meta-train; False: meta-test a trained run.')
flags.DEFINE_bool('benchmark', False, 'Measure it/s, compile time and peak memory; no training.')
flags.DEFINE_enum('queue', None, ['pending', 'status', 'restore', 'export', 'save'],
                  'The run queue (results/queue.txt, scripts/continue_runs.sh): list the rows not '
                  'done, show how far each got, restore --experiment\'s committed checkpoint into '
                  '--logdir, export its trained and evaluated run to results/<row>/, or save the '
                  'running row\'s latest checkpoint to results/<row>/checkpoint/.')
flags.DEFINE_string('results_dir', 'results', 'The committed results (one folder per row) and the queue.')
flags.DEFINE_string('report', None, 'Print (and draw) a group\'s published-vs-reproduced table: sinusoid, omniglot, '
                    'miniimagenet, experiments, speed (the README speed section from the comparison), ...')
# The rows' fields: one flag per field marked `flag` in config.py, the methods' options and
# experiments.RLConfig, with the field's doc; None keeps the row's value.
_IN_TEST_MODE = {'update_batch_size': 'test mode: the K to evaluate',
                 'update_lr': 'test mode and --predict: alpha at meta-test'}
_DEFINE = {'bool': flags.DEFINE_bool, 'int': flags.DEFINE_integer, 'float': flags.DEFINE_float,
           'str': flags.DEFINE_string}


def _define_field_flags(cls) -> tuple[str, ...]:
  """Defines a flag for each field of `cls` marked `flag` that has none yet; returns the names."""
  names = []
  for f in dataclasses.fields(cls):
    name = f.metadata.get('flag')
    if not name:
      continue
    name = f.name if name is True else name
    names.append(name)
    if name in FLAGS:
      continue
    kind = f.type.split(' | ')[0]
    doc = f.metadata['doc'] + (f' ({_IN_TEST_MODE[name]})' if name in _IN_TEST_MODE else '')
    choices = f.metadata.get('choices')
    if kind == 'str' and choices and None not in choices and 'None' not in choices:
      flags.DEFINE_enum(name, None, list(choices), doc)
    else:
      _DEFINE[kind](name, None, doc)
  return tuple(names)


CONFIG_FLAGS = _define_field_flags(experiments.Config)
RL_FIELD_FLAGS = _define_field_flags(experiments.RLConfig)
L2L_FIELD_FLAGS = _define_field_flags(experiments.L2LConfig)
# Logging and checkpoints.
flags.DEFINE_bool('log', True, 'Write TensorBoard summaries.')
flags.DEFINE_string('logdir', 'logs', 'Directory that holds the run directories.')
flags.DEFINE_bool('resume', True, 'Continue from the latest checkpoint of the run directory.')
# Test mode.
flags.DEFINE_integer('test_iter', -1, 'Checkpoint iteration to evaluate (-1: the best validated, '
                     'else the latest; -2: the latest; N: iteration N, its results beside the '
                     'selected model\'s as <name>.iter<N>.json).')
flags.DEFINE_bool('test_set', False, 'Evaluate on the test tasks (False: validation tasks).')
flags.DEFINE_integer('train_update_batch_size', None, 'Test mode: the K the run was trained with.')
flags.DEFINE_float('train_update_lr', None, 'Test mode: the alpha the run was trained with.')
flags.DEFINE_integer('benchmark_iterations', 200, 'Benchmark: timed iterations after warm-up.')
flags.DEFINE_integer('benchmark_warmup', 20, 'Benchmark: untimed iterations after the first call.')
# The speed comparison with other implementations on the same work (benchmarks/compare.py).
flags.DEFINE_bool('compare_speed', False, 'Run this project and every installed peer (PyTorch '
                  'torch.func, higher, JAX, the original TF1 code) on the same work, one after another; '
                  'one JSON line each to --compare_out.')
flags.DEFINE_list('compare_works', [], 'Compare: the works to run (benchmarks/work.py; default all).')
flags.DEFINE_list('compare_impls', [], 'Compare: the implementations to run (default all).')
flags.DEFINE_string('tf1_original', None, 'Compare: a checkout of github.com/cbfinn/maml, run under '
                    'tf.compat.v1 as a peer (skipped without it).')
flags.DEFINE_string('compare_out', 'results/speed/comparison.jsonl', 'Compare: the JSON lines file.')
flags.DEFINE_bool('compare_quick', False, 'Compare: a tenth of the iterations (a smoke run).')
flags.DEFINE_enum('benchmark_data', 'synthetic', ['synthetic', 'sampler'],
                  "Benchmark: random episodes of the row's shapes, or the row's own data sampler.")
# Adapt a trained model to your own images (predict.py).
flags.DEFINE_bool('predict', False, 'Adapt the trained run (as test mode finds it: --logdir, the '
                  'training flags) to --support_dir and classify the --query images.')
flags.DEFINE_string('support_dir', None, 'Predict: one sub-folder of K images per new class '
                    '(N classes, the model\'s N-way).')
flags.DEFINE_multi_string('query', None, 'Predict: an image, or a folder of images, to classify '
                          '(repeat the flag for more).')
flags.DEFINE_string('predict_out', None, 'Predict: also write the predictions to this .json or '
                    '.csv file.')
flags.DEFINE_integer('predict_steps', None, 'Predict: adaptation steps (default: the row\'s '
                     'report_step, the step its results report); --update_lr sets alpha.')
_PREDICT_ONLY = ('support_dir', 'query', 'predict_out', 'predict_steps')

# How long a run trains: a training flag that may change on resume, which test mode ignores.
_TRAINING_LENGTH = ('metatrain_iterations', 'pretrain_iterations')
# Flags that change what is trained (test mode: the trained run's own values are used) ...
TRAIN_FIELDS = tuple(f for f in CONFIG_FLAGS
                     if f not in experiments.RUNTIME_FIELDS or f in _TRAINING_LENGTH)
# ... and those that may differ from the trained run's (evaluation, speed, paths).
RUNTIME_FLAGS = tuple(f for f in CONFIG_FLAGS if f not in TRAIN_FIELDS)
# A run directory is named <row>.<field><value>... after the training flags given, in this order
# (the order of the first runs' names, so their directories still resume); fields added to the
# table later follow in table order.
_RUN_NAME_ORDER = ('num_classes', 'baseline', 'meta_batch_size', 'meta_lr', 'update_batch_size',
                   'update_lr', 'num_updates', 'norm', 'num_filters', 'conv', 'max_pool', 'conv_head',
                   'stop_grad', 'seed', 'meta_grad_clip', 'adapt_norm', 'inner_loop', 'query_size',
                   'inner_lr', 'per_step_norm', 'multi_step_loss_epochs', 'first_order_iterations',
                   'min_meta_lr', 'inner_batch_size', 'full_context', 'cosine_scale')

# The flags an RL row reads (resolve_rl, _run_rl); it refuses the others of this module.
RL_FLAGS = ('experiment', 'train', 'test_set', 'logdir', 'resume', 'test_iter') + RL_FIELD_FLAGS
RL_ONLY_FLAGS = tuple(f for f in RL_FIELD_FLAGS if f not in CONFIG_FLAGS)
# The flags a learned-optimizer row reads (resolve_l2l); it refuses the others.
L2L_FLAGS = ('experiment', 'train', 'test_set', 'logdir', 'resume', 'test_iter', 'log') + L2L_FIELD_FLAGS
L2L_ONLY_FLAGS = tuple(f for f in L2L_FIELD_FLAGS if f not in CONFIG_FLAGS + RL_FIELD_FLAGS)
MAIN_FLAGS = tuple(f for f in FLAGS if f not in _PREDEFINED)

def _training_overrides(test_mode: bool) -> dict:
  """Flag values that override the row's training fields."""
  out = {f: FLAGS[f].value for f in TRAIN_FIELDS if FLAGS[f].value is not None}
  if test_mode:  # in test mode these two flags mean the test K and alpha
    out.pop('update_batch_size', None)
    out.pop('update_lr', None)
    if FLAGS.train_update_batch_size is not None:
      out['update_batch_size'] = FLAGS.train_update_batch_size
    if FLAGS.train_update_lr is not None:
      out['update_lr'] = FLAGS.train_update_lr
  if 'baseline' in out:
    out['baseline'] = None if out['baseline'] in ('None', '') else out['baseline']
  return out


def _run_name(name: str, overrides: dict) -> str:
  """<row>[.<field><value>...]; iteration counts are left out so a run can be extended."""
  order = _RUN_NAME_ORDER + tuple(f for f in TRAIN_FIELDS if f not in _RUN_NAME_ORDER)
  parts = [name] + [f'{k}{overrides[k]}' for k in order
                    if k in overrides and k not in experiments.RUNTIME_FIELDS]
  return '.'.join(parts)


def resolve(test_mode: bool, name: str | None = None):
  """(config, run_dir) of row `name` (default: the flags') with the flags' overrides."""
  name = name or FLAGS.experiment or experiments.default_experiment(FLAGS.datasource or 'sinusoid')
  row = experiments.get(name)
  for flag in RL_ONLY_FLAGS:
    if FLAGS[flag].value is not None:
      raise ConfigError(f'--{flag} applies to the RL rows only; {name} is not one')
  for flag in L2L_ONLY_FLAGS:
    if FLAGS[flag].value is not None:
      raise ConfigError(f'--{flag} applies to the learned-optimizer rows only; {name} is not one')
  if FLAGS.datasource and FLAGS.datasource != row.datasource:
    raise ConfigError(f'--datasource={FLAGS.datasource} contradicts --experiment={name} '
                      f'({row.datasource})')
  overrides = _training_overrides(test_mode)
  runtime = {f: FLAGS[f].value for f in RUNTIME_FLAGS if FLAGS[f].value is not None}
  cfg = row.replace(**overrides, **runtime)
  return cfg, os.path.join(FLAGS.logdir, _run_name(name, overrides))


def _resolve_own_row(cfg, row_flags: tuple[str, ...], kind: str, evaluated_on: str):
  """(config, run_dir) of an RL or learned-optimizer row `cfg` with the flags' overrides: these rows
  have their own config type, read only `row_flags` and are evaluated on their test set only."""
  refused = [f'--{f}' for f in MAIN_FLAGS if f not in row_flags and FLAGS[f].present]
  if refused:
    raise ConfigError(f'{" ".join(refused)}: not read by the {kind} row {cfg.name}, which takes only '
                      f'{" ".join("--" + f for f in row_flags)}')
  if FLAGS['test_set'].present and not FLAGS.test_set:
    raise ConfigError(f'{cfg.name} is evaluated on {evaluated_on}; drop --test_set=False')
  overrides = {}
  for f in dataclasses.fields(cfg):
    flag = f.metadata.get('flag')
    value = FLAGS[f.name if flag is True else flag].value if flag else None
    if value is not None:
      overrides[f.name] = value
  cfg = cfg.replace(**overrides)
  run_dir = os.path.join(FLAGS.logdir, '.'.join(
      [cfg.name] + [f'{k}{v}' for k, v in overrides.items() if k not in cfg.RUNTIME_FIELDS]))
  return cfg, run_dir


def resolve_rl():
  """(config, run_dir) of the flags' RL row with the flags' overrides."""
  return _resolve_own_row(experiments.get_rl(FLAGS.experiment), RL_FLAGS, 'RL',
                          'its test tasks only (Fig. 5)')


def _run_rl(test_mode: bool) -> int:
  """An RL row (paper Fig. 5): train it, or evaluate it after 0..3 gradient steps."""
  import rl.trainer
  if FLAGS.benchmark:
    raise ConfigError('--benchmark times the supervised rows; an RL run logs its s/iteration')
  cfg, run_dir = resolve_rl()
  if test_mode:
    rl.trainer.evaluate_rl(cfg, run_dir, test_iter=FLAGS.test_iter)
  elif cfg.iterations:
    return _until_stopped(lambda: rl.trainer.train_rl(cfg, run_dir, resume=FLAGS.resume))
  return 0


def resolve_l2l(name: str | None = None):
  """(config, run_dir) of a learned-optimizer row (default: the flags') with the flags' overrides."""
  return _resolve_own_row(experiments.get_l2l(name or FLAGS.experiment), L2L_FLAGS,
                          'learned-optimizer', 'its test problems only')


def _run_l2l(test_mode: bool) -> int:
  """A learned-optimizer row (Andrychowicz et al. 2016): meta-train it, then (or in test mode only)
  evaluate it against the tuned baselines and draw its loss curves."""
  import l2l.trainer
  import report
  import utils
  if FLAGS.benchmark:
    raise ConfigError('--benchmark times the supervised rows; an L2L run logs its s/iteration')
  cfg, run_dir = resolve_l2l()
  if not test_mode:
    status = _until_stopped(lambda: l2l.trainer.train(cfg, run_dir, resume=FLAGS.resume,
                                                      log_summaries=FLAGS.log))
    if status or utils.STOP:
      return status
  l2l.trainer.evaluate(cfg, run_dir, test_iter=FLAGS.test_iter)
  report.l2l_report(run_dir)
  return 0


def _compare_speed() -> int:
  """--compare_speed: benchmarks/compare.py with the --compare_* flags; config flags given on the
  command line (e.g. --task_chunk=4) go to this project's runs."""
  from benchmarks import compare
  from benchmarks import work as work_lib
  unknown = [w for w in FLAGS.compare_works if w not in work_lib.BY_NAME]
  if unknown:
    raise ConfigError(f'--compare_works: unknown {", ".join(unknown)}; known: '
                      f'{", ".join(work_lib.BY_NAME)}')
  unknown = [i for i in FLAGS.compare_impls if i not in compare.IMPLS]
  if unknown:
    raise ConfigError(f'--compare_impls: unknown {", ".join(unknown)}; known: {", ".join(compare.IMPLS)}')
  if FLAGS.experiment:
    raise ConfigError('--compare_speed runs the works of benchmarks/work.py: drop --experiment')
  if FLAGS.tf1_original and not os.path.isfile(os.path.join(FLAGS.tf1_original, 'maml.py')):
    raise ConfigError(f'--tf1_original={FLAGS.tf1_original} holds no maml.py: give a clone of '
                      'github.com/cbfinn/maml')
  extra = tuple(f'--{f}={FLAGS[f].value}' for f in CONFIG_FLAGS if FLAGS[f].present)
  compare.run(FLAGS.compare_out, works=tuple(FLAGS.compare_works),
              impls=tuple(FLAGS.compare_impls), tf1_original=FLAGS.tf1_original,
              quick=FLAGS.compare_quick, extra_flags=extra)
  return 0


def _queue(action: str) -> int:
  """The run queue's steps (run_queue.py); scripts/continue_runs.sh chains them."""
  import run_queue
  results = FLAGS.results_dir

  def run_dirs(row):  # (the run it trains, the run whose model it evaluates)
    if run_queue.is_rl(row) or run_queue.is_l2l(row):
      return (os.path.join(FLAGS.logdir, row),) * 2
    cfg, run_dir = resolve(False, row)
    return run_dir, resolve(False, cfg.model_from)[1] if cfg.model_from else run_dir

  if action == 'pending':
    print('\n'.join(run_queue.pending(results)))
  elif action == 'status':
    print('\n'.join(run_queue.status_lines(
        results, {row: run_dirs(row)[1] for row in run_queue.read_queue(results)})))
  elif action == 'save':
    running = [r for r in run_queue.pending(results)
               if run_queue.has_checkpoint(run_dirs(r)[1])]
    if not running:
      print(f'nothing to save: no unfinished row of {results}/queue.txt has a checkpoint in '
            f'{FLAGS.logdir}')
    for row in running:
      it = run_queue.save_snapshot(results, row, run_dirs(row)[1])
      print(f'{row}: iteration {it} saved to {results}/{row}/{run_queue.SNAPSHOT_DIR}/ (commit it)')
  else:
    row = FLAGS.experiment
    if row is None:
      raise ConfigError(f'--queue={action} needs --experiment=<row>')
    run_dir, model_dir = run_dirs(row)
    if action == 'restore':
      it = run_queue.restore(results, row, model_dir)
      if it is not None:
        print(f'{row}: resuming from the committed checkpoint of iteration {it}')
    else:
      info = run_queue.export(results, row, run_dir, model_dir)
      print(f'{row}: exported to {results}/{row}/ ({info["trained_iterations"]} iterations, tested '
            f'iteration {info["tested_iteration"]})')
  return 0


def _until_stopped(train) -> int:
  """Runs train() with Ctrl-C and SIGTERM (schedulers, `kill`) asking it to save and stop after the
  current iteration (a second signal interrupts at once); returns the exit status."""
  import utils
  previous = {s: signal.signal(s, utils.STOP) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    train()
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  if not utils.STOP:
    return 0
  print(f'stopped by {utils.STOP.describe()} with the last iteration saved; the same command '
        'resumes', file=sys.stderr)
  return 128 + utils.STOP.signum


def _check_predict_flags() -> None:
  """ConfigError for a --predict without its inputs, or its flags without --predict."""
  if not FLAGS.predict:
    given = [f'--{f}' for f in _PREDICT_ONLY if FLAGS[f].present]
    if given:
      raise ConfigError(f'{" ".join(given)}: read by --predict only')
    return
  if FLAGS.benchmark or FLAGS['train'].present or FLAGS['test_set'].present:
    raise ConfigError('--predict adapts a trained run: drop --benchmark, --train and --test_set')
  if FLAGS.update_batch_size is not None:  # test mode's K; here the support folders give it
    raise ConfigError('--predict takes K from --support_dir; a run trained with another K is named '
                      'by --train_update_batch_size')
  needs = {'support_dir': 'one sub-folder of K images per new class',
           'query': 'the images to classify'}
  missing = [f'--{f} ({what})' for f, what in needs.items() if not FLAGS[f].value]
  if missing:
    raise ConfigError(f'--predict needs {" and ".join(missing)}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.INFO)
  # INFO lines from this repo only; libraries (TF's per-checkpoint timings, tfds) still warn.
  here = os.path.dirname(os.path.abspath(__file__))
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or record.pathname.startswith(here))
  # tfds's own Tensor decoder reads its deprecated FeatureConnector.dtype on every image dataset
  # load (tensor_feature.py): a warning no user can act on.
  logging.get_absl_handler().addFilter(
      lambda record: 'FeatureConnector.dtype` is deprecated' not in str(record.msg))
  # Imported here so --help stays fast and flag errors come before TensorFlow starts.
  import image_datasets
  from methods import maml_family
  import run_queue
  import tensorflow as tf
  import trainer
  try:
    if FLAGS.queue:
      return _queue(FLAGS.queue)
    if FLAGS.compare_speed:
      return _compare_speed()
    if FLAGS.report:
      import report
      report.write_report(FLAGS.report, FLAGS.logdir)
      return 0
    _check_predict_flags()
    # --predict reads a trained run as test mode does: its config, the training flags naming it.
    test_mode = (not FLAGS.train or FLAGS.predict) and not FLAGS.benchmark
    if FLAGS.experiment in experiments.RL_EXPERIMENTS:
      return _run_rl(test_mode)
    if FLAGS.experiment in experiments.L2L_EXPERIMENTS:
      return _run_l2l(test_mode)
    cfg, run_dir = resolve(test_mode)
    model_dir = run_dir  # the run whose checkpoints are trained or evaluated
    if cfg.model_from:  # trains nothing of its own: its model is another row's run
      shared = experiments.shared_model_fields(experiments.get(cfg.name))
      source, model_dir = resolve(test_mode, cfg.model_from)
      if not test_mode:
        logging.info('%s evaluates the model of %s: training that run', cfg.name, cfg.model_from)
        cfg, run_dir = source, model_dir
    if test_mode:  # the run's own config, with this command's runtime flags and today's provenance
      trained = experiments.Config.load(model_dir)
      if cfg.model_from:
        trained = trained.replace(**shared)
      cfg = trained.replace(
          **{f: FLAGS[f].value for f in RUNTIME_FLAGS if FLAGS[f].value is not None},
          **{f: getattr(cfg, f) for f in experiments.PROVENANCE_FIELDS})
    threads = cfg.intra_op_threads or (1 if maml_family.chunks_in_flight(cfg) > 1 else 0)
    if threads:  # before TensorFlow runs its first op
      tf.config.threading.set_intra_op_parallelism_threads(threads)
    if FLAGS.predict:
      import predict
      if FLAGS.transductive is None:  # a query's answer must not depend on the others asked
        cfg = cfg.replace(transductive=False)
      predict.run(cfg, model_dir, support_dir=FLAGS.support_dir, queries=FLAGS.query,
                  test_iter=FLAGS.test_iter, steps=FLAGS.predict_steps, update_lr=FLAGS.update_lr,
                  out_path=FLAGS.predict_out)
    elif FLAGS.benchmark:
      import benchmark
      benchmark.run_benchmark(cfg, iterations=FLAGS.benchmark_iterations,
                              out_dir=os.path.join(FLAGS.logdir, 'benchmarks'),
                              warmup=FLAGS.benchmark_warmup, data=FLAGS.benchmark_data)
    elif FLAGS.train:
      return _until_stopped(
          lambda: trainer.train(cfg, run_dir, resume=FLAGS.resume, log_summaries=FLAGS.log))
    else:
      shots = (FLAGS.update_batch_size,) if FLAGS.update_batch_size is not None else None
      if shots and shots[0] < 1:
        raise ConfigError(f'--update_batch_size={shots[0]} must be at least 1')
      if FLAGS.update_lr is not None and not FLAGS.update_lr >= 0:
        raise ConfigError(f'--update_lr={FLAGS.update_lr} must not be negative')
      trainer.evaluate(cfg, run_dir, split='test' if FLAGS.test_set else 'val',
                       test_iter=FLAGS.test_iter, shots=shots, update_lr=FLAGS.update_lr,
                       model_dir=model_dir)
  except (ConfigError, trainer.RunError, image_datasets.DataError, run_queue.QueueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr)
    return 130
  return 0


if __name__ == '__main__':
  app.run(main)
