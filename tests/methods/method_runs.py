"""A few training iterations and a small evaluation of every method, recorded exactly.

tests/methods/test_methods.py compares each case with tests/methods/method_runs.json, which was recorded on the code
before the methods/ refactor (commit 0f6d5ba): the loss of every iteration, the trained weights'
digest, the checkpoint's keys, the progress lines and the evaluation's numbers must stay
bit-identical. The image cases run on tests/synthetic_data.py's sources, so they run on any clone.

Record a new method's case (add it to CASES first), or re-record one whose numbers a change is
meant to alter (say so in the commit):

  python tests/methods/method_runs.py <case> ...   # updates those cases in tests/methods/method_runs.json
  python tests/methods/method_runs.py              # re-records every case
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import re
import sys
import tempfile

# As tests/conftest.py, before TensorFlow starts: one op thread, oneDNN on (the numbers depend on it).
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')

from absl import logging as absl_logging
import numpy as np
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tests'))

import experiments  # noqa: E402
import image_datasets  # noqa: E402
import synthetic_data  # noqa: E402
import trainer  # noqa: E402

FIXTURE = pathlib.Path(__file__).with_name('method_runs.json')

_SMALL = dict(print_every=1, summary_every=1, checkpoint_every=3, num_test_tasks=4, eval_chunk=2)
# chunks_in_flight=1: the recorded runs took the meta-batch at once (bit-identical floats need the
# same summation; chunks give the same update, tests/test_maml.py).
_IMAGE = dict(_SMALL, meta_batch_size=2, num_filters=4, eval_shots=(1,), num_val_tasks=2,
              chunks_in_flight=1)
_SINUSOID = dict(_SMALL, metatrain_iterations=3, meta_batch_size=5, eval_shots=(5,),
                 test_num_updates=3, report_step=3, steps_per_call=1)

_MANN = dict(metatrain_iterations=3, val_every=3, query_size=2, mann_units=8, mann_slots=8,
             mann_slot_width=4, mann_reads=2)

# case -> (row, overrides). Every method and variant of the registry, on the data its rows use.
CASES: dict[str, tuple[str, dict]] = {
    'maml': ('sinusoid_maml', _SINUSOID),
    'maml_steps_per_call': ('sinusoid_maml', dict(_SINUSOID, metatrain_iterations=4,
                                                  steps_per_call=2, checkpoint_every=4)),
    'first_order_maml': ('sinusoid_maml', dict(_SINUSOID, stop_grad=True)),
    'meta_sgd': ('sinusoid_maml', dict(_SINUSOID, inner_lr='per_parameter')),
    'maml_plus_plus': ('sinusoid_maml', dict(
        _SINUSOID, norm='layer_norm', inner_lr='per_layer_per_step', per_step_norm=True,
        multi_step_loss_epochs=2, epoch_iterations=1, first_order_iterations=2, num_updates=2,
        min_meta_lr=1e-5, metatrain_iterations=4, checkpoint_every=4)),
    'anil': ('sinusoid_maml', dict(_SINUSOID, inner_loop='head')),
    'pretrained': ('sinusoid_pretrained', dict(_SINUSOID, metatrain_iterations=0,
                                               pretrain_iterations=3, num_tune_tasks=4,
                                               test_update_lr_grid=(0.001, 0.01))),
    'oracle': ('sinusoid_oracle', dict(_SINUSOID, metatrain_iterations=0, pretrain_iterations=3)),
    'omniglot_maml': ('omniglot_5way_1shot', dict(_IMAGE, metatrain_iterations=3, val_every=3,
                                                  test_num_updates=3)),
    'omniglot_maml_plus_plus': ('omniglot_5way_1shot_maml_plus_plus', dict(
        _IMAGE, metatrain_iterations=3, val_every=3, first_order_iterations=2, epoch_iterations=1)),
    'omniglot_anil': ('omniglot_20way_1shot_anil', dict(_IMAGE, metatrain_iterations=3,
                                                        val_every=3, test_num_updates=2,
                                                        report_step=2)),
    'reptile': ('omniglot_5way_reptile', dict(_IMAGE, metatrain_iterations=3, val_every=3,
                                              update_batch_size=3, inner_batch_size=4,
                                              test_num_updates=3, report_step=3)),
    'protonet': ('omniglot_5way_1shot_protonet', dict(_IMAGE, metatrain_iterations=3, val_every=3,
                                                      query_size=2)),
    'matching': ('omniglot_5way_1shot_matching', dict(_IMAGE, metatrain_iterations=3, val_every=3,
                                                      query_size=2)),
    'matching_fce': ('omniglot_5way_1shot_matching', dict(_IMAGE, metatrain_iterations=3,
                                                          val_every=3, query_size=2,
                                                          full_context=True)),
    'siamese': ('omniglot_5way_1shot_siamese', dict(_IMAGE, metatrain_iterations=3, val_every=3,
                                                    query_size=2)),
    'relation': ('omniglot_5way_1shot_relation', dict(_IMAGE, metatrain_iterations=3, val_every=3,
                                                      query_size=2)),
    'meta_lstm': ('miniimagenet_5way_1shot_meta_lstm', dict(
        _IMAGE, metatrain_iterations=3, val_every=3, query_size=2, num_updates=2,
        test_num_updates=2, report_step=2)),
    'metanet': ('omniglot_5way_1shot_metanet', dict(_IMAGE, metatrain_iterations=3, val_every=3,
                                                    query_size=2, metanet_hidden=4)),
    'mann': ('omniglot_5way_1shot_mann', dict(_IMAGE, **_MANN)),
    'mann_lstm': ('omniglot_5way_1shot_mann_lstm', dict(_IMAGE, **_MANN)),
    'finetune': ('miniimagenet_5way_1shot_finetune', dict(
        _IMAGE, pretrain_iterations=3, meta_batch_size=8, test_num_updates=2, report_step=2,
        num_tune_tasks=2)),
    'nearest_neighbor': ('miniimagenet_5way_1shot_nearest_neighbor', dict(
        _IMAGE, pretrain_iterations=3, meta_batch_size=8, model_from=None)),
}

# The progress line without its rate and ETA: 'iter 3/3 (100.0%) maml | pre-update loss ...'.
_PROGRESS = re.compile(r'(iter \d+/\d+ \([\d.]+%\) [^|]+\|[^|]+(\|[^|]+)?) \| [\d.e+-]+ it/s')


def tiny_episode(tasks=2, n=3, k=2, q=2, seed=0, shape=(28, 28, 1)):
  """Random images [T, N*K, *shape], one-hot [T, N*K, N] (shuffled per task), [T, N*Q, *shape],
  [T, N*Q, N]: an episode for the methods' unit tests."""
  rng = np.random.default_rng(seed)

  def labels(shots):
    return np.stack([np.eye(n)[rng.permutation(np.repeat(np.arange(n), shots))] for _ in range(tasks)])

  sy, qy = labels(k), labels(q)
  sx = rng.uniform(size=(tasks, n * k, *shape))
  qx = rng.uniform(size=(tasks, n * q, *shape))
  return tuple(tf.constant(a, tf.float32) for a in (sx, sy, qx, qy))


def make_sources(folder: pathlib.Path) -> dict[str, str]:
  """The synthetic Omniglot and MiniImagenet sources (seeded, the same bytes on every run)."""
  return {'omniglot': str(synthetic_data.make_omniglot(folder / 'omniglot')),
          'miniimagenet': str(synthetic_data.make_miniimagenet(folder / 'miniimagenet'))}


class _Lines(logging.Handler):
  def __init__(self):
    super().__init__()
    self.lines = []

  def emit(self, record):
    match = _PROGRESS.search(record.getMessage())
    if match:
      self.lines.append(match.group(1))


def train_straight_and_resumed(cfg, folder: pathlib.Path):
  """(setup trained cfg.metatrain_iterations in one go, setup trained half, stopped and resumed),
  both restored from their run directories under `folder`: a method's resume test compares them."""
  trainer.train(cfg, str(folder / 'a'), log_summaries=False)
  trainer.train(cfg.replace(metatrain_iterations=cfg.metatrain_iterations // 2), str(folder / 'b'),
                log_summaries=False)
  trainer.train(cfg, str(folder / 'b'), log_summaries=False)
  return (trainer.restore_for_eval(cfg, str(folder / 'a'))[0],
          trainer.restore_for_eval(cfg, str(folder / 'b'))[0])


def case_config(name: str, sources: dict[str, str]):
  """The row of case `name` with its changes, on the synthetic sources."""
  row, changes = CASES[name]
  cfg = experiments.get(row).replace(**changes)
  return cfg if cfg.datasource == 'sinusoid' else cfg.replace(data_dir=sources[cfg.datasource])


def unrestored_at_evaluation(cfg, run_dir: str) -> list[str]:
  """The learner's variables that evaluation (trainer.restore_for_eval: the model and the method's
  saved variables, no optimizer) restores unlike training's resume (which reaches the trainable ones
  through the optimizer's references too) from the run's latest checkpoint. A variable that the
  checkpoint reaches only through the optimizer (say a Keras 3 layer kept in a Python list) would
  keep its initial value at evaluation."""
  evaluated, path = trainer.restore_for_eval(cfg, run_dir, test_iter=-2)
  resumed = trainer.build(cfg)
  tf.train.Checkpoint(optimizer=resumed.optimizer, **trainer.trackables(resumed)).restore(
      path).expect_partial()
  return [v.path for v, w in zip(evaluated.learner.variables, resumed.learner.variables)
          if not np.array_equal(v.numpy(), w.numpy())]


def run_case(name: str, run_dir: str, sources: dict[str, str]) -> dict:
  """Trains case `name` in run_dir and evaluates it on the test split; returns what is compared."""
  cfg = case_config(name, sources)
  losses = []
  add = trainer._Meter.add

  def record(meter, out):  # every iteration's losses, in full precision
    losses.append({k: np.reshape(np.asarray(v, np.float64), [-1]).tolist()
                   for k, v in sorted(out.items())})
    add(meter, out)

  lines = _Lines()
  absl_logger = logging.getLogger('absl')
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logger.addHandler(lines)
  trainer._Meter.add = record
  try:
    trainer.train(cfg, run_dir, log_summaries=False)
    results = trainer.evaluate(cfg, run_dir, split='test')
  finally:
    trainer._Meter.add = add
    absl_logger.removeHandler(lines)
    absl_logging.set_verbosity(verbosity)
  path = tf.train.latest_checkpoint(run_dir)
  reader = tf.train.load_checkpoint(path)
  keys = sorted(k for k in reader.get_variable_to_shape_map() if k != '_CHECKPOINTABLE_OBJECT_GRAPH')
  digest = hashlib.sha256()
  dtypes = reader.get_variable_to_dtype_map()
  for key in keys:  # theta, the optimizer's state, the learner's extras and state
    if dtypes[key] not in (tf.string, tf.variant):  # the data iterator's state: not numbers
      digest.update(key.encode())
      digest.update(np.ascontiguousarray(reader.get_tensor(key)).tobytes())
  fields = ('shots', 'mean', 'ci95', 'median', 'per_task', 'update_lr', 'step_size_tuning',
            'tasks_sha256', 'iteration', 'method', 'transductive', 'steps')
  return {'losses': losses, 'progress': lines.lines, 'checkpoint_keys': keys,
          'checkpoint_sha256': digest.hexdigest(),
          'results': [{f: r[f] for f in fields} for r in results]}


def record_all(cases=tuple(CASES)) -> dict:
  old = os.environ.get(image_datasets.TFDS_DIR_ENV)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    os.environ[image_datasets.TFDS_DIR_ENV] = str(tmp / 'tfds')
    try:
      sources = make_sources(tmp / 'sources')
      return {name: run_case(name, str(tmp / 'runs' / name), sources) for name in cases}
    finally:
      if old is None:
        del os.environ[image_datasets.TFDS_DIR_ENV]
      else:
        os.environ[image_datasets.TFDS_DIR_ENV] = old


if __name__ == '__main__':
  unknown = set(sys.argv[1:]) - set(CASES)
  if unknown:
    sys.exit(f'unknown case(s) {", ".join(sorted(unknown))}; cases: {", ".join(CASES)}')
  recorded = json.loads(FIXTURE.read_text()) if sys.argv[1:] and FIXTURE.exists() else {}
  recorded.update(record_all(sys.argv[1:] or tuple(CASES)))
  FIXTURE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + '\n')
  print(f'wrote {", ".join(sys.argv[1:]) or "every case"} to {FIXTURE}')
