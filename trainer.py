"""One training loop and one evaluation for every experiment row: `train(cfg, run_dir)`, `evaluate(...)`.

A run directory holds config.json (the resolved row), checkpoints (ckpt-<iteration>), TensorBoard
summaries (train/) and results (results/<split>_K<K>.json). Training resumes from the latest
checkpoint with the iteration, optimizer state and data RNG, so a crash loses at most one interval.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

from absl import logging
import keras
import numpy as np
import tensorflow as tf

import data_generator
import methods
import models
import rundir
# The run directory's names and error live in rundir.py (shared with rl/trainer.py); these
# re-exports keep trainer.X working for main.py, run_queue.py and the tests.
from rundir import BEST_DIR, CKPT_PREFIX, CONFIG_FILE, EXPORTED_DIR, LOCK_FILE, RunError
import utils

if TYPE_CHECKING:  # the row's type only: trainer reads no table (experiments.py calls down to it)
  from experiments import Config

VAL_FILE = 'validation.json'  # the validation curve: iteration -> metric at report_step
TRAIN_CURVE = 'train.csv'     # the training losses at every summary step
MAX_CHECKPOINTS = 10  # as the original Saver(max_to_keep=10)


@dataclasses.dataclass
class Setup:
  """What a run is made of: model (theta), learner, optimizer and the iteration counter, and the
  row's method (methods.get(cfg)), whose hooks are all this module calls on the learner."""
  cfg: Config
  model: keras.Model
  learner: object  # the method's algorithm object (method.build(model)), e.g. a maml.MAML
  optimizer: keras.optimizers.Optimizer
  iteration: tf.Variable
  method: methods.Method


def make_optimizer(cfg: Config) -> keras.optimizers.Optimizer:
  """The row's meta-optimizer (its method's: Adam(beta) unless the method says otherwise)."""
  return methods.get(cfg).make_optimizer()


def trackables(setup: Setup) -> dict:
  """What a checkpoint holds besides the optimizer and data: theta, the iteration and what the
  method saves (its learner's extras and state)."""
  return dict(model=setup.model, iteration=setup.iteration,
              **setup.method.saved_variables(setup.learner))


def build(cfg: Config, strategy: tf.distribute.Strategy | None = None) -> Setup:
  """Model, learner and meta-optimizer for a row; keras.utils.set_random_seed(cfg.seed) fixes
  theta_0 (and the learner's own variables).

  With a strategy, the variables are created in its scope (mirrored on every replica).
  """
  keras.utils.set_random_seed(cfg.seed)
  method = methods.get(cfg)
  with strategy.scope() if strategy is not None else contextlib.nullcontext():
    model = method.build_model()
    learner = method.build(model)
    optimizer = method.make_optimizer()
    optimizer.build(learner.variables)
  # Bookkeeping read on the host (int()), so a plain variable even under a strategy.
  iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
  return Setup(cfg, model, learner, optimizer, iteration, method)


def make_strategy(cfg: Config) -> tf.distribute.Strategy | None:
  """None, or the tf.distribute strategy cfg.distribute names (RunError if it cannot split T)."""
  if cfg.distribute == 'none':
    return None
  if cfg.distribute == 'multi_worker' and 'TF_CONFIG' not in os.environ:
    raise RunError('--distribute=multi_worker needs TF_CONFIG naming the cluster and this '
                   'worker (docs/performance.md, "Several GPUs and several machines")')
  strategy = (tf.distribute.MirroredStrategy() if cfg.distribute == 'mirrored'
              else tf.distribute.MultiWorkerMirroredStrategy())
  replicas = strategy.num_replicas_in_sync
  if cfg.meta_batch_size % replicas:
    raise RunError(f'meta_batch_size={cfg.meta_batch_size} cannot be split evenly over {replicas} '
                   'replicas; choose a multiple')
  logging.info('distributing each meta-batch of %d tasks over %d replicas (%s)',
               cfg.meta_batch_size, replicas, type(strategy).__name__)
  return strategy


def _is_chief(strategy: tf.distribute.Strategy | None) -> bool:
  """True unless this is a non-chief worker of a multi-worker cluster."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not resolver.task_type:
    return True
  return resolver.task_type == 'chief' or (
      resolver.task_type == 'worker' and resolver.task_id == 0 and
      'chief' not in resolver.cluster_spec().as_dict())


# --- run directory --------------------------------------------------------------------------------

def _science_diff(cfg: Config):
  """rundir.prepare's diff for a row: what makes the saved config.json another experiment than
  cfg. A runtime or provenance field (the iteration count, a corrected published number) does not."""
  skip = set(cfg.RUNTIME_FIELDS) | set(cfg.PROVENANCE_FIELDS)
  b = cfg.to_dict()

  def diff(saved: dict) -> list[str]:
    a = type(cfg).from_dict(saved).to_dict()
    return [f'{k}: {a[k]!r} -> {b[k]!r}' for k in a if k not in skip and a[k] != b.get(k)]
  return diff


def prepare_run_dir(cfg: Config, run_dir: str, resume: bool) -> None:
  """Creates run_dir and writes config.json; refuses to mix two experiments in one directory."""
  rundir.prepare(run_dir, cfg.to_dict(), resume, _science_diff(cfg))


# --- training -------------------------------------------------------------------------------------

class _Meter:
  """Collects per-iteration losses without a host sync per step; checks them for NaN/Inf."""

  def __init__(self):
    self._pending = []

  def add(self, out: dict) -> None:
    self._pending.append(out)

  def flush(self, iteration: int) -> dict[str, float] | None:
    if not self._pending:
      return None
    # Each entry holds one iteration's scalars, or [S] per key from a looped call.
    values = {k: np.concatenate([np.reshape(o[k], [-1]) for o in self._pending])
              for k in self._pending[0]}
    self._pending = []
    for name, v in values.items():
      if not np.all(np.isfinite(v)):
        first = iteration - len(v) + 1 + int(np.argmin(np.isfinite(v)))
        raise RunError(f'{name} became {v[~np.isfinite(v)][0]} at iteration {first}; training '
                       'stopped and the last good checkpoint is kept. Lower --meta_lr or '
                       '--update_lr, or clip the meta-gradient.')
    return {k: float(v.mean()) for k, v in values.items()}


def train(cfg: Config, run_dir: str, *, resume: bool = True, log_summaries: bool = True) -> int:
  """Meta-trains (after `pretrain_iterations` of the pretrained baseline) up to total_iterations.

  Returns the iteration reached. Saves a checkpoint every cfg.checkpoint_every iterations and on
  exit (also on Ctrl-C), never after a non-finite loss.
  """
  strategy = make_strategy(cfg)
  if _is_chief(strategy):
    return _train(cfg, run_dir, strategy, resume, log_summaries)
  # Other workers run the very same loop (the same collective ops, in the same order) on a private
  # copy of the run, so they resume from the chief's checkpoint and their writes go nowhere.
  private = tempfile.mkdtemp(prefix='maml-worker-')
  try:
    _copy_latest_checkpoint(run_dir, private)
    return _train(cfg, private, strategy, resume, log_summaries=False)
  finally:
    shutil.rmtree(private, ignore_errors=True)


def _copy_latest_checkpoint(src: str, dst: str) -> None:
  """Copies src's newest checkpoint (its files and the `checkpoint` state file) into dst.

  Only files the chief leaves alone until the first collective step: copying the whole run
  directory raced with the chief's atomic config.json write (a .tmp that vanishes mid-copy kills
  this worker, which the chief then sees as a lost heartbeat).
  """
  latest = tf.train.latest_checkpoint(src) if os.path.isdir(src) else None
  if latest is None:
    return
  # CheckpointManager records paths relative to the directory, so the state file moves as is.
  for path in [os.path.join(src, 'checkpoint')] + tf.io.gfile.glob(latest + '.*'):
    shutil.copy2(path, dst)


def _train(cfg: Config, run_dir: str, strategy, resume: bool, log_summaries: bool) -> int:
  with rundir.open_for_training(run_dir, cfg.to_dict(), resume, _science_diff(cfg)):
    return _train_locked(cfg, run_dir, strategy, resume, log_summaries)


def _train_locked(cfg: Config, run_dir: str, strategy, resume: bool, log_summaries: bool) -> int:
  setup = build(cfg, strategy)
  method = setup.method
  sizes = (cfg.meta_batch_size, cfg.update_batch_size * cfg.num_classes,
           cfg.train_query_size * cfg.num_classes)
  # The episodes of one call at a time; a numpy sampler's next ones are drawn during the call.
  episodes = data_generator.episode_stream(method.train_sampler(), sizes)
  ckpt = tf.train.Checkpoint(optimizer=setup.optimizer, data=episodes.trackable(),
                             **trackables(setup))
  checkpoints = rundir.Checkpoints(ckpt, run_dir, setup.iteration, MAX_CHECKPOINTS)
  start = it = checkpoints.resume()
  curve = _TrainCurve(os.path.join(run_dir, TRAIN_CURVE), it)
  total = cfg.total_iterations
  if it >= total:
    logging.info('%s already trained to iteration %d', run_dir, it)
    return it

  phases = method.phases()  # [(objective, end)]: e.g. pretrain, then the meta-objective
  steps, loops = {}, {}  # objective -> one update; -> steps_per_call updates per call
  for objective, _ in phases:
    steps[objective] = method.make_train_step(setup.learner, setup.optimizer, objective,
                                              strategy=strategy)
    if cfg.steps_per_call > 1:
      loops[objective] = method.make_train_step(setup.learner, setup.optimizer, objective,
                                                cfg.steps_per_call, strategy)
  writer = tf.summary.create_file_writer(os.path.join(run_dir, 'train')) if log_summaries else None
  validator = _Validator(setup, ckpt, run_dir, writer) if cfg.val_every else None
  meter = _Meter()
  saved = it
  t_start = t_print = time.perf_counter()
  it_print = it

  def save():
    nonlocal saved
    meter_values = meter.flush(it)  # raises on NaN before anything is written
    if meter_values is not None:
      write_summaries(meter_values)
    checkpoints.save(it)
    saved = it

  def write_summaries(values):
    curve.add(it, values)
    if writer is None:
      return
    with writer.as_default(step=it):
      tf.summary.scalar('loss/pre_update', values['pre_loss'])
      tf.summary.scalar('loss/post_update', values['post_loss'])
      tf.summary.scalar('loss/objective', values['loss'])

  def call_size(at: int) -> int:
    """The updates of the call at iteration `at` (0 past the end): a looped call never steps over
    an iteration at which something is logged or saved or the objective switches."""
    if at >= total:
      return 0
    objective = next(o for o, end in phases if at < end)
    if objective in loops and _next_event(cfg, at) - at >= cfg.steps_per_call:
      return cfg.steps_per_call
    return 1

  logging.info('training %s: iterations %d..%d (pretrain %d, meta-train %d) in %s', cfg.name,
               it, total, cfg.pretrain_iterations, cfg.metatrain_iterations, run_dir)
  try:
    while it < total:
      if utils.STOP:
        logging.info('%s: saving iteration %d and stopping', utils.STOP.describe(), it)
        break
      objective = next(o for o, end in phases if it < end)
      count = call_size(it)
      # Announcing the next call's size lets a numpy sampler draw its episodes during this call.
      fields = episodes.next(count, then=call_size(it + count))
      meter.add((loops[objective] if count > 1 else steps[objective])(*fields))
      it += count
      if it % cfg.summary_every == 0 or it == total:
        values = meter.flush(it)
        write_summaries(values)
        if it % cfg.print_every == 0 or it == total:
          now = time.perf_counter()
          rate = (it - it_print) / max(now - t_print, 1e-9)
          eta = (total - it) / max((it - start) / (now - t_start), 1e-9)
          losses = method.log_losses(values)
          label = cfg.method if objective == methods.META else objective
          logging.info('iter %d/%d (%.1f%%) %s | %s | %.3g it/s | ETA %s', it, total,
                       100 * it / total, label, losses, rate, utils.format_duration(eta))
          if writer is not None:
            with writer.as_default(step=it):
              tf.summary.scalar('perf/iterations_per_second', rate)
          t_print, it_print = now, it
      if validator is not None and it % cfg.val_every == 0:
        setup.iteration.assign(it)
        validator.validate(it)
      if it % cfg.checkpoint_every == 0:
        save()
  except RunError:
    raise
  except BaseException:
    if it > saved:  # Ctrl-C or a crash of the loop: keep the work done so far (if it is finite)
      save()
      logging.info('saved checkpoint at iteration %d before exiting', it)
    raise
  finally:
    episodes.close()  # waits for episodes drawn ahead; the data position stays after those used
  if it > saved:
    save()
  if writer is not None:
    writer.flush()
  logging.info('training %s: iteration %d, %s', 'stopped' if it < total else 'done', it,
               utils.format_duration(time.perf_counter() - t_start))
  return it


class _TrainCurve:
  """<run>/train.csv: iteration, pre_loss, post_loss, loss at every summary step. A resumed run first
  drops the lines past its checkpoint, so the file always matches the iterations really kept."""
  FIELDS = ('iteration', 'pre_loss', 'post_loss', 'loss')

  def __init__(self, path: str, iteration: int):
    self.path = path
    lines = []
    if os.path.exists(path):
      with open(path) as f:
        lines = [l for l in f.read().splitlines()[1:] if l and int(l.split(',', 1)[0]) <= iteration]
    with open(path, 'w') as f:
      f.write('\n'.join([','.join(self.FIELDS)] + lines) + '\n')

  def add(self, iteration: int, values: dict) -> None:
    with open(self.path, 'a') as f:
      f.write(','.join([str(iteration)] + [f'{values[k]:.6g}' for k in self.FIELDS[1:]]) + '\n')


def _next_event(cfg: Config, it: int) -> int:
  """The first iteration after `it` at which the loop logs, validates, saves or switches objective."""
  events = [cfg.total_iterations]
  for every in (cfg.summary_every, cfg.print_every, cfg.checkpoint_every, cfg.val_every):
    if every:
      events.append((it // every + 1) * every)
  events += [end for _, end in methods.get(cfg).phases() if it < end]
  return min(events)


class _Validator:
  """Meta-validation during training and model selection (the paper: early stopping on validation).

  Every cfg.val_every iterations: the metric at cfg.report_step on a fixed set of cfg.num_val_tasks
  validation tasks. The best model is checkpointed to <run>/best/ and the curve kept in
  <run>/validation.json, which also lets a resumed run know the best so far. Values measured on
  another set of tasks are not comparable, so a resumed run whose validation protocol differs from
  the file's raises RunError instead of mixing two curves.
  """

  def __init__(self, setup: Setup, ckpt: tf.train.Checkpoint, run_dir: str, writer):
    cfg = self.cfg = setup.cfg
    self.setup, self.writer = setup, writer
    self.path = os.path.join(run_dir, VAL_FILE)
    self.best = rundir.BestKeeper(ckpt, run_dir, setup.iteration, self.better)
    k = cfg.val_shots
    sampler = data_generator.make_sampler(cfg, 'val', k)
    q = (cfg.test_query_size or k) * cfg.num_classes
    self.tasks = data_generator.fixed_task_chunks(sampler, cfg.num_val_tasks, k * cfg.num_classes,
                                                  q, cfg.eval_chunk)  # the same at every validation
    self.eval_fn = setup.method.make_eval_fn(setup.learner, cfg.report_step)
    self.protocol = {'num_tasks': cfg.num_val_tasks, 'shots': k, 'query_size': q // cfg.num_classes,
                     'eval_seed': cfg.eval_seed, 'step': cfg.report_step}
    self.curve = {}
    if os.path.exists(self.path):
      saved = utils.read_json(self.path)
      # files written before the protocol was recorded in full hold num_tasks and step only
      differ = {f: (saved[f], v) for f, v in self.protocol.items() if f in saved and saved[f] != v}
      if differ:
        raise RunError(
            f'{self.path} holds a validation curve measured with '
            f'{", ".join(f"{f}={a}" for f, (a, _) in differ.items())}; this run validates with '
            f'{", ".join(f"{f}={b}" for f, (_, b) in differ.items())}. Values on different tasks '
            'cannot be compared to pick the best model: resume with the earlier setting (e.g. '
            '--num_val_tasks), or move validation.json and best/ aside to start a new curve.')
      self.curve = saved['curve']
      values = self.curve.values()
      self.best.best = (max(values, default=None) if cfg.metric == 'accuracy'
                        else min(values, default=None))

  def better(self, a: float, b: float) -> bool:
    # A tie goes to the later checkpoint: a saturated validation set (100% on Omniglot 5-way's 100
    # tasks) cannot rank its checkpoints, and the later one has trained longer
    # (docs/image-classification.md). Config.selection_rule states this rule with every result.
    return a >= b if self.cfg.metric == 'accuracy' else a <= b

  def validate(self, iteration: int) -> float:
    cfg = self.cfg
    metric = _run_tasks(self.eval_fn, self.tasks(), cfg.update_lr)['metric']
    value = float(metric[cfg.report_step].mean())
    self.curve[str(iteration)] = value
    self.best.offer(value, iteration)
    utils.write_json(self.path, {'metric': cfg.metric, **self.protocol, 'curve': self.curve})
    if self.writer is not None:
      with self.writer.as_default(step=iteration):
        tf.summary.scalar(f'val/{cfg.metric}_step{cfg.report_step}', value)
    logging.info('validation at iteration %d: %s after %d steps %.4f (best %.4f)', iteration,
                 cfg.metric, cfg.report_step, value, self.best.best)
    return value


# --- evaluation -----------------------------------------------------------------------------------

def restore_for_eval(cfg: Config, run_dir: str, test_iter: int = -1) -> tuple[Setup, str]:
  """Builds the row's model and loads a checkpoint into it.

  test_iter -1: the best validated checkpoint (<run>/best, or the exported <run>/model) if the row
  validates (cfg.val_every), else the latest; -2: the latest; N: the checkpoint of iteration N
  (rundir.checkpoint_for_eval picks it). Raises RunError if there is no such checkpoint: an
  untrained model is never evaluated, nor the latest in place of the best.
  """
  setup = build(cfg)
  path = rundir.checkpoint_for_eval(
      run_dir, test_iter,
      train_hint=(f'train the run first (python main.py --experiment={cfg.name} ...) or point '
                  '--logdir at a trained run'),
      latest_refused=(f'best-validated checkpoint in {BEST_DIR}/ yet (the row validates every '
                      f'{cfg.val_every} iterations)') if cfg.val_every else None)
  ckpt = tf.train.Checkpoint(**trackables(setup))
  ckpt.restore(path).assert_existing_objects_matched().expect_partial()
  return setup, path


def _run_tasks(eval_fn, chunks, lr: float) -> dict:
  """Runs eval_fn over Episode chunks; returns arrays [steps+1, num_tasks] ('loss', 'metric') and
  [P, num_tasks] for each extra per-task metric the eval fn returns (every key but 'outputs')."""
  parts = []
  for episode in chunks:
    parts.append(eval_fn(*episode[:4], tf.constant(lr, tf.float32)))
  return {k: np.concatenate([p[k].numpy() for p in parts], axis=1) for k in parts[0]
          if k != 'outputs'}


def tune_step_size(setup: Setup, eval_fn, shots: int) -> tuple[float, dict[str, float]]:
  """Picks alpha at meta-test from cfg.test_update_lr_grid on validation tasks.

  Score: mean query metric over steps 1..test_num_updates (lower is better for MSE).
  """
  cfg = setup.cfg
  sampler = data_generator.make_sampler(cfg, 'val', shots)
  q = (cfg.test_query_size or shots) * cfg.num_classes
  chunks = list(data_generator.task_chunks(sampler, cfg.num_tune_tasks, shots * cfg.num_classes, q,
                                            cfg.eval_chunk))
  scores = {}
  for lr in cfg.test_update_lr_grid:
    metric = _run_tasks(eval_fn, chunks, lr)['metric']
    scores[repr(lr)] = float(metric[1:].mean())
  sign = -1.0 if cfg.metric == 'accuracy' else 1.0
  # A step size whose fine-tuning diverges scores NaN/Inf and must never win.
  best = min(cfg.test_update_lr_grid,
             key=lambda lr: sign * scores[repr(lr)] if np.isfinite(scores[repr(lr)]) else np.inf)
  return best, scores


def evaluate(cfg: Config, run_dir: str, *, split: str = 'test', test_iter: int = -1,
             shots: tuple[int, ...] | None = None, update_lr: float | None = None,
             model_dir: str | None = None) -> list[dict]:
  """Meta-tests a trained run: cfg.num_test_tasks tasks per K, metric after 0..test_num_updates steps.

  Args:
    split: 'test' or 'val' (the original's --test_set).
    shots: K values (default cfg.eval_shots).
    update_lr: alpha at meta-test; default cfg.test_update_lr, tuned on validation tasks when the row
      has a grid, else cfg.update_lr.

    model_dir: the run whose checkpoint is evaluated (default run_dir; a row with model_from
      evaluates another row's run and keeps its results in its own run_dir).

  Returns one result dict per K, also written to run_dir/results/<split>_K<K>.json; with test_iter
  other than -1 to <split>_K<K>.iter<N>.json beside it (N: the checkpoint's iteration), so the file
  the reports read always holds the model the protocol selects.
  """
  setup, path = restore_for_eval(cfg, model_dir or run_dir, test_iter)
  out_dir = os.path.join(run_dir, 'results')
  os.makedirs(out_dir, exist_ok=True)
  results = []
  # One function for every K: after the first shapes it traces once more with general shapes
  # (reduce_retracing) and reuses that trace, instead of two or three traces per K.
  method = setup.method
  eval_fn = method.make_eval_fn(setup.learner, cfg.test_num_updates)
  curves_fn = (method.make_eval_fn(setup.learner, cfg.test_num_updates, return_outputs=True)
               if cfg.datasource == 'sinusoid' else None)
  for k in shots or cfg.eval_shots:
    t0 = time.perf_counter()
    scores = None
    if update_lr is not None:
      lr = update_lr
    elif cfg.test_update_lr is not None:
      lr = cfg.test_update_lr
    elif cfg.test_update_lr_grid and method.tunes_step_size:
      lr, scores = tune_step_size(setup, eval_fn, k)
    else:
      lr = cfg.update_lr
    sampler = data_generator.make_sampler(cfg, split, k)
    q = (cfg.test_query_size or k) * cfg.num_classes
    digest = hashlib.sha256()  # of the tasks' images: runs compared side by side saw the same tasks
    chunks = data_generator.task_chunks(sampler, cfg.num_test_tasks, k * cfg.num_classes, q,
                                        cfg.eval_chunk)
    per_task = _run_tasks(eval_fn, _hashed(chunks, digest), lr)
    mean, ci95 = utils.mean_and_ci95(per_task['metric'])
    nonfinite = (~np.isfinite(per_task['metric'])).sum(axis=1)
    if nonfinite.any():
      logging.warning('%s K=%d: fine-tuning diverged (NaN/Inf %s) on %d of %d tasks by step %d; the '
                      'mean is not finite from there on', cfg.name, k, cfg.metric, nonfinite.max(),
                      cfg.num_test_tasks, int(np.argmax(nonfinite > 0)))
    result = {
        'experiment': cfg.name, 'split': split, 'shots': k, 'num_tasks': cfg.num_test_tasks,
        'metric': cfg.metric, 'update_lr': method.reported_step_size(lr),
        'step_size_tuning': scores, 'method': cfg.method, 'transductive': cfg.transductive,
        'tasks_sha256': digest.hexdigest(),
        'steps': list(range(cfg.test_num_updates + 1)),
        'mean': mean.tolist(), 'ci95': ci95.tolist(),
        # A diverged task (NaN) counts as the worst one, so the median stays that of all the tasks.
        'median': np.median(np.where(np.isnan(per_task['metric']),
                                     np.inf if cfg.metric == 'mse' else -np.inf,
                                     per_task['metric']), axis=1).tolist(),
        'num_nonfinite': nonfinite.tolist(),
        # task by task at the reported step: paired comparisons, and re-checks on the first few tasks
        'report_step': cfg.report_step,
        'per_task': [float(f'{v:.6g}') for v in per_task['metric'][cfg.report_step]],
        'checkpoint': os.path.relpath(path, run_dir), 'iteration': int(setup.iteration),
        'selection_rule': cfg.selection_rule if test_iter == -1 else f'picked by hand: --test_iter={test_iter}',
        'eval_seed': cfg.eval_seed, 'seed': cfg.seed, 'commit': utils.git_commit(),
        'published': [dict(dataclasses.asdict(p), reproduced=mean[p.step], reproduced_ci95=ci95[p.step])
                      for p in cfg.published if p.shots == k and p.step <= cfg.test_num_updates
                      and p.transductive == cfg.transductive],
    }
    name = utils.results_name(split, k, cfg.transductive)
    if test_iter != -1:  # a checkpoint picked by hand never replaces the selected model's results
      name = f'{name[:-len(".json")]}.iter{int(setup.iteration)}.json'
    out_path = _results_path(out_dir, name, cfg.num_test_tasks)
    extras = sorted(set(per_task) - {'loss', 'metric'})
    if extras:  # e.g. MANN's accuracy at each presentation of a class: mean and CI over the tasks
      result['extra_metrics'] = {key: dict(zip(('mean', 'ci95'), (
          a.tolist() for a in utils.mean_and_ci95(per_task[key])))) for key in extras}
    if cfg.datasource == 'sinusoid':
      result['curves'] = sinusoid_curves(setup, curves_fn, k, lr,
                                         out_path[:-len('.json')] + '_curves.npz')
    utils.write_json(out_path, result)
    alpha = result['update_lr']  # a step size, or what stands for one (e.g. 'learned')
    logging.info('%s K=%d alpha=%s (%d tasks, %.1fs): %s after 0..%d steps: %s', cfg.name, k,
                 (alpha if isinstance(alpha, str) else f'{lr:g}' if cfg.test_num_updates
                  else 'none (no steps)'), cfg.num_test_tasks,
                 time.perf_counter() - t0, cfg.metric, cfg.test_num_updates, utils.format_steps(mean))
    results.append(result)
  return results


def _results_path(out_dir: str, name: str, num_tasks: int) -> str:
  """<out_dir>/<name>, unless that file holds an evaluation on more tasks: then a quick check (say
  --num_test_tasks=20) goes beside it as <name>.tasks<N>.json and never replaces a 600-task result."""
  path = os.path.join(out_dir, name)
  if os.path.exists(path) and utils.read_json(path).get('num_tasks', 0) > num_tasks:
    path = f'{path[:-len(".json")]}.tasks{num_tasks}.json'
    logging.info('%s holds an evaluation on more tasks; this one goes to %s', name, path)
  return path


def _hashed(chunks, digest):
  """The Episode chunks unchanged; each task's support and query images fed to `digest` task by
  task, so the digest does not depend on how the tasks are chunked."""
  for episode in chunks:
    for support, query in zip(np.asarray(episode.support_x), np.asarray(episode.query_x)):
      digest.update(np.ascontiguousarray(support).tobytes())
      digest.update(np.ascontiguousarray(query).tobytes())
    yield episode


def sinusoid_curves(setup: Setup, fn, shots: int, lr: float, path: str, num_tasks: int = 4) -> str:
  """Saves predictions on a dense grid after every step for a few fixed tasks (paper Fig. 2).

  fn: the learner's make_eval_step(test_num_updates, return_outputs=True). The npz holds x [P],
  y [tasks, P], support_x/support_y [tasks, K], pred [steps+1, tasks, P]. Returns the file name.
  """
  cfg = setup.cfg
  sampler = data_generator.make_sampler(cfg, 'plot', shots)
  episode = data_generator.sample_tasks(sampler, num_tasks, shots, 1)
  grid_x, grid_y = sampler.grid(episode.task)
  out = fn(episode.support_x, episode.support_y, grid_x, grid_y, tf.constant(lr, tf.float32))
  np.savez(path, x=grid_x[0, :, 0], y=grid_y[..., 0], support_x=episode.support_x[..., 0],
           support_y=episode.support_y[..., 0], pred=out['outputs'].numpy()[..., 0], task=episode.task)
  return os.path.basename(path)
