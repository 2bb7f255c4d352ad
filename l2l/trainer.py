"""Meta-training and evaluation of the learned optimizer: `train(cfg, run_dir)`, `evaluate(cfg, run_dir)`.

A run directory (rundir.py, as the other trainers') holds config.json, train.lock, checkpoints (phi,
Adam's moments, the iteration, the problems' RNG), TensorBoard scalars (train/), the training curve
(train.csv) and the results: results/l2l.json (mean loss per step of the LSTM and of each tuned
baseline over the test problems, with 95% CIs and the tuning) and results/l2l_curves.csv.
"""

from __future__ import annotations

import csv
import os
import time
from typing import TYPE_CHECKING

from absl import logging
import keras
import numpy as np
import tensorflow as tf

import data_generator
from l2l import optimizer as l2l_optimizer
from l2l import problems
import rundir
from rundir import RunError
import utils

if TYPE_CHECKING:  # the row's type only: the trainer reads no table
  from experiments import L2LConfig

RESULTS, CURVES_CSV, TRAIN_CSV = 'results/l2l.json', 'results/l2l_curves.csv', 'train.csv'
MAX_CHECKPOINTS = 3
LSTM = 'lstm'
# Separate random streams for meta-training, tuning and test problems: np.random.default_rng((seed,
# purpose)) never gives two purposes the same stream, whatever the seeds.
_TRAIN, _TUNE, _TEST = 0, 1, 2


def make_problem(cfg: L2LConfig, split: str):
  """The row's problem; MNIST: training images for 'train' (meta-training, tuning), test images for
  'test'. Raises problems.MnistMissing when the row's MNIST file is absent."""
  if cfg.problem == 'quadratic':
    return problems.Quadratic(cfg.quadratic_dims, cfg.quadratic_functions, cfg.quadratic_init)
  data = problems.load_mnist(cfg.mnist_path)
  return problems.MnistMLP(data[f'x_{split}'], data[f'y_{split}'], cfg.mnist_hidden,
                           cfg.mnist_batch_size)


def build_net(cfg: L2LConfig) -> l2l_optimizer.LSTMOptimizer:
  """m(g; phi_0), phi_0 fixed by cfg.seed."""
  keras.utils.set_random_seed(cfg.seed)
  return l2l_optimizer.LSTMOptimizer(cfg.hidden, cfg.preprocess_p if cfg.preprocess else None,
                                     cfg.output_scale)


def make_meta_step(cfg: L2LConfig, problem, net, meta_optimizer):
  """A compiled fn(theta [D], state, consts, data [unroll+1, ...]) -> (losses [unroll+1], theta,
  state): one truncated-BPTT unroll of `cfg.unroll` steps and one Adam step on phi along the gradient
  of the summed losses. The returned theta and state start the next unroll (no gradient flows back)."""

  @tf.function
  def meta_step(theta, state, consts, data):
    with tf.GradientTape() as tape:
      losses, theta, state = problems.unroll(problem, net, theta, state, consts, data, cfg.unroll,
                                             second_order=cfg.second_derivatives)
      meta_loss = tf.reduce_sum(losses)
    grads = tape.gradient(meta_loss, net.trainable_variables)
    meta_optimizer.apply(grads, net.trainable_variables)
    return losses, theta, state

  return meta_step


def meta_train_iteration(cfg: L2LConfig, problem, net, meta_step, rng: np.random.Generator):
  """One optimization of a fresh problem by the LSTM, with T / unroll meta-updates of phi; returns
  f(theta_0..theta_T) [T + 1]."""
  instance = problem.sample(rng, cfg.optimization_steps)
  theta = tf.constant(instance.theta0)
  state = net.init(theta)
  losses = []
  for start in range(0, cfg.optimization_steps, cfg.unroll):
    data = tuple(a[start:start + cfg.unroll + 1] for a in instance.data)
    unroll_losses, theta, state = meta_step(theta, state, instance.consts, data)
    losses.append(unroll_losses.numpy()[:-1])  # its last loss is the next unroll's first
  return np.concatenate(losses + [unroll_losses.numpy()[-1:]])


def train(cfg: L2LConfig, run_dir: str, resume: bool = True, log_summaries: bool = True) -> int:
  """Meta-trains to cfg.iterations optimizations (resuming from the latest checkpoint); returns the
  iteration reached. Holds the run's lock throughout."""
  problem = make_problem(cfg, 'train')  # a missing MNIST file stops here, before the run exists
  with rundir.open_for_training(run_dir, cfg.to_dict(), resume, rundir.fields_diff(cfg)):
    return _train_locked(cfg, run_dir, problem, log_summaries)


def _read_curve(path: str, upto: int) -> list[list[str]]:
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    rows = list(csv.reader(f))[1:]
  return [r for r in rows if int(r[0]) <= upto]


def _train_locked(cfg: L2LConfig, run_dir: str, problem, log_summaries: bool) -> int:
  net = build_net(cfg)
  meta_optimizer = keras.optimizers.Adam(cfg.meta_lr)
  meta_optimizer.build(net.trainable_variables)
  rng = data_generator.Rng((cfg.seed, _TRAIN))
  iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
  ckpt = tf.train.Checkpoint(net=net, optimizer=meta_optimizer, iteration=iteration,
                             rng=data_generator.NumpyRngState(rng))
  checkpoints = rundir.Checkpoints(ckpt, run_dir, iteration, MAX_CHECKPOINTS)
  start = it = checkpoints.resume()
  curve_path = os.path.join(run_dir, TRAIN_CSV)
  curve = _read_curve(curve_path, it)

  def save(it):
    checkpoints.save(it)
    with open(curve_path, 'w', newline='') as f:
      csv.writer(f).writerows([['iteration', 'mean_loss', 'final_loss'], *curve])

  meta_step = make_meta_step(cfg, problem, net, meta_optimizer)
  writer = tf.summary.create_file_writer(os.path.join(run_dir, 'train')) if log_summaries else None
  t_start = time.perf_counter()
  logging.info('meta-training %s: optimizations %d..%d in %s', cfg.name, it, cfg.iterations, run_dir)
  while it < cfg.iterations:
    if utils.STOP:  # between optimizations: phi, Adam and the RNG belong to iteration `it`
      logging.info('%s: saving iteration %d and stopping', utils.STOP.describe(), it)
      save(it)
      break
    losses = meta_train_iteration(cfg, problem, net, meta_step, rng.rng)
    it += 1
    if not np.all(np.isfinite(losses)):
      raise RunError(f'non-finite optimizee loss at iteration {it}; the last checkpoint is kept. '
                     'Lower --meta_lr or --output_scale.')
    curve.append([it, f'{losses.mean():.6g}', f'{losses[-1]:.6g}'])
    if writer:
      with writer.as_default(step=it):
        tf.summary.scalar('optimizee/mean_loss', losses.mean())
        tf.summary.scalar('optimizee/final_loss', losses[-1])
    if it % cfg.print_every == 0 or it == cfg.iterations:
      elapsed = time.perf_counter() - t_start
      eta = (cfg.iterations - it) * elapsed / (it - start)
      logging.info('iter %d/%d (%.1f%%) | optimizee loss: mean %.4g, final %.4g | %.2f s/it | ETA %s',
                   it, cfg.iterations, 100.0 * it / cfg.iterations, losses.mean(), losses[-1],
                   elapsed / (it - start), utils.format_duration(eta))
    if it % cfg.checkpoint_every == 0 or it == cfg.iterations:
      save(it)
  if writer:
    writer.flush()
  return it


# --- evaluation (paper Fig. 2, 3) -----------------------------------------------------------------

def run_losses(optimize, instances, lr: float = 0.0) -> np.ndarray:
  """f(theta_0..theta_T) on each instance [instances, T + 1] (NaN/inf kept) of a compiled
  problems.make_optimize."""
  return np.stack([optimize(tf.constant(i.theta0), i.consts, i.data, tf.constant(lr, tf.float32))
                   .numpy() for i in instances])


def tune(problem, name: str, lr_grid, instances, steps: int) -> tuple[float, dict[float, float]]:
  """(the learning rate of lr_grid with the lowest mean loss over steps 0..steps on `instances`,
  {lr: that mean}); a diverging rate scores inf. A tie goes to the first rate of the grid."""
  optimize = problems.make_optimize(problem, l2l_optimizer.baseline(name), steps)
  scores = {}
  for lr in lr_grid:
    losses = run_losses(optimize, instances, lr)
    scores[lr] = float(losses.mean()) if np.all(np.isfinite(losses)) else float('inf')
  best = min(scores, key=lambda lr: scores[lr])
  if not np.isfinite(scores[best]):
    raise RunError(f'{name} diverges at every learning rate of {tuple(lr_grid)}')
  if best in (max(lr_grid), min(lr_grid)):
    logging.warning('%s: the best learning rate %g is at the edge of the grid; widen lr_grid', name, best)
  return best, scores


def _instances(problem, seed, purpose, count, steps):
  rng = np.random.default_rng((seed, purpose))
  return [problem.sample(rng, steps) for _ in range(count)]


def restore_net(cfg: L2LConfig, path: str) -> tuple[l2l_optimizer.LSTMOptimizer, tf.Variable]:
  """(the LSTM optimizer m(g; phi) of checkpoint `path`, its iteration). phi is restored as training
  restores it, through the meta-optimizer's references to it too: checkpoints written before the
  LSTM cells were attributes of the net hold them only there."""
  net = build_net(cfg)
  meta_optimizer = keras.optimizers.Adam(cfg.meta_lr)
  meta_optimizer.build(net.trainable_variables)
  iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
  tf.train.Checkpoint(net=net, optimizer=meta_optimizer, iteration=iteration).restore(
      path).assert_existing_objects_matched().expect_partial()
  return net, iteration


def evaluate(cfg: L2LConfig, run_dir: str, test_iter: int = -1) -> dict:
  """The LSTM optimizer of the run and each baseline (learning rate tuned on cfg.tune_problems other
  problems) on cfg.test_problems test problems for T steps; writes and returns results/l2l.json.

  test_iter: -1 the latest checkpoint (or the exported model/), N the checkpoint of iteration N (its
  results go to results/l2l.iter<N>.json)."""
  path = rundir.checkpoint_for_eval(
      run_dir, test_iter, train_hint=(f'meta-train the row first (python main.py '
                                      f'--experiment={cfg.name} --logdir={os.path.dirname(run_dir) or "."})'))
  test_problem, tune_problem = make_problem(cfg, 'test'), make_problem(cfg, 'train')
  net, iteration = restore_net(cfg, path)
  steps = cfg.optimization_steps
  tune_set = _instances(tune_problem, cfg.tune_seed, _TUNE, cfg.tune_problems, steps)
  test_set = _instances(test_problem, cfg.test_seed, _TEST, cfg.test_problems, steps)
  optimizers = {}
  optimizers[LSTM] = {'losses': run_losses(problems.make_optimize(test_problem, net, steps), test_set)}
  for name in cfg.compared_with:
    lr, scores = tune(tune_problem, name, cfg.lr_grid, tune_set, steps)
    logging.info('%s: learning rate %g (mean loss on %d tuning problems: %s)', name, lr,
                 cfg.tune_problems, ', '.join(f'{k:g}: {v:.4g}' for k, v in scores.items()))
    optimize = problems.make_optimize(test_problem, l2l_optimizer.baseline(name), steps)
    optimizers[name] = {'losses': run_losses(optimize, test_set, lr),
                        'lr': lr, 'tuning': {f'{k:g}': v for k, v in scores.items()}}
  for name, o in optimizers.items():
    mean, ci95 = utils.mean_and_ci95(o.pop('losses'), axis=0)
    o.update(mean=mean.tolist(), ci95=ci95.tolist(), final=float(mean[-1]))
  result = {'experiment': cfg.name, 'problem': cfg.problem, 'iteration': int(iteration),
            'checkpoint': os.path.relpath(path, run_dir),
            'selection_rule': (cfg.selection_rule if test_iter == -1
                               else f'picked by hand: --test_iter={test_iter}'),
            'num_problems': cfg.test_problems, 'tune_problems': cfg.tune_problems,
            'steps': steps, 'lr_grid': list(cfg.lr_grid), 'order': list(optimizers),
            'optimizers': optimizers,
            'source': cfg.source, 'choices': list(cfg.choices), 'commit': utils.git_commit()}
  os.makedirs(os.path.join(run_dir, 'results'), exist_ok=True)
  suffix = '' if test_iter == -1 else f'.iter{int(iteration)}'
  utils.write_json(os.path.join(run_dir, RESULTS.replace('.json', f'{suffix}.json')), result)
  with open(os.path.join(run_dir, CURVES_CSV.replace('.csv', f'{suffix}.csv')), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['step', *optimizers])
    for t in range(steps + 1):
      w.writerow([t, *(f'{o["mean"][t]:.6g}' for o in optimizers.values())])
  logging.info('%s: final loss after %d steps over %d test problems: %s', cfg.name, steps,
               cfg.test_problems, ', '.join(f'{k} {o["final"]:.4g}' for k, o in optimizers.items()))
  return result
