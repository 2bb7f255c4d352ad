"""Training and Fig. 5 evaluation of the RL rows: `train_rl(cfg, run_dir)`, `evaluate_rl(cfg, run_dir)`.

A run directory (rundir.py, as the image trainer's) holds config.json, train.lock, checkpoints (theta, iteration, the sampling RNG), best/ (the
parameters with the best average training return, which the paper evaluates), TensorBoard scalars
(train/), the training curve (curve.json) and results (results/fig5.json).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from absl import logging
import keras
import numpy as np
import tensorflow as tf

import data_generator
import rl.envs
import rl.maml_trpo
import rl.policy
import rl.pool
import rl.sampling
import rundir
from rundir import RunError
import utils

if TYPE_CHECKING:  # the row's type only: the trainer reads no table
  from experiments import RLConfig

CURVE_FILE, RESULTS = 'curve.json', 'results/fig5.json'
MAX_CHECKPOINTS = 3  # an RL checkpoint is taken every few iterations; the curve keeps the history


def build(cfg: RLConfig):
  """(envs, policy, MamlTrpo) of a row; keras.utils.set_random_seed(cfg.seed) fixes theta_0."""
  envs = rl.envs.make_env(cfg.env, oracle=cfg.oracle,
                          workers=cfg.env_workers or rl.pool.default_workers())
  keras.utils.set_random_seed(cfg.seed)
  policy = rl.policy.policy_net(envs.obs_dim, envs.act_dim, cfg.hidden)
  algo = rl.maml_trpo.MamlTrpo(
      policy, inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps, max_kl=cfg.max_kl,
      cg_iters=cfg.cg_iters, cg_damping=cfg.cg_damping, fd_hvp_eps=cfg.fd_hvp_eps,
      backtrack_ratio=cfg.backtrack_ratio, max_backtracks=cfg.max_backtracks)
  return envs, policy, algo


def meta_batch(cfg: RLConfig, envs, algo: rl.maml_trpo.MamlTrpo, rng: np.random.Generator):
  """Samples one meta-batch: (MetaData for TRPO, pre-update Batch, post-update Batch or None)."""
  tasks = envs.sample_tasks(cfg.meta_batch_size, rng)
  params = algo.learner.tile(algo.learner.params(), cfg.meta_batch_size)
  pre = rl.sampling.rollouts(algo.forward, params, envs, tasks, cfg.per_task, rng)
  support_x, support_y = (tf.constant(a) for a in rl.sampling.support_set(pre, cfg.gamma))
  if cfg.inner_steps == 0:  # the policy's own surrogate on its own samples
    old = pre.outputs.reshape(cfg.meta_batch_size, -1, pre.outputs.shape[-1])
    return rl.maml_trpo.MetaData(support_x, support_y, support_x, support_y, tf.constant(old)), pre, None
  fast = algo.adapted_compiled(algo.learner.params(), support_x, support_y)
  post = rl.sampling.rollouts(algo.forward, fast, envs, tasks, cfg.per_task, rng)
  query_x, query_y = (tf.constant(a) for a in rl.sampling.support_set(post, cfg.gamma))
  old = post.outputs.reshape(cfg.meta_batch_size, -1, post.outputs.shape[-1])
  return rl.maml_trpo.MetaData(support_x, support_y, query_x, query_y, tf.constant(old)), pre, post


def train_rl(cfg: RLConfig, run_dir: str, resume: bool = True) -> int:
  """Runs cfg.iterations outer TRPO steps (resuming from the latest checkpoint); returns the iteration.

  Holds the run's lock throughout: a second trainer of the same run stops with RunError."""
  with rundir.open_for_training(run_dir, cfg.to_dict(), resume, rundir.fields_diff(cfg)):
    return _train_locked(cfg, run_dir)


def _train_locked(cfg: RLConfig, run_dir: str) -> int:
  envs, policy, algo = build(cfg)
  rng = data_generator.Rng(cfg.seed)
  iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
  ckpt = tf.train.Checkpoint(policy=policy, iteration=iteration,
                             rng=data_generator.NumpyRngState(rng))
  checkpoints = rundir.Checkpoints(ckpt, run_dir, iteration, MAX_CHECKPOINTS)
  start = it = checkpoints.resume()
  curve_path = os.path.join(run_dir, CURVE_FILE)
  curve = utils.read_json(curve_path) if os.path.exists(curve_path) else []
  curve = [c for c in curve if c['iteration'] <= it]
  # best/: the parameters with the best average training return (strictly better: the first wins)
  best = rundir.BestKeeper(ckpt, run_dir, iteration, lambda a, b: a > b,
                           max((c['score'] for c in curve), default=None))
  writer = tf.summary.create_file_writer(os.path.join(run_dir, 'train'))
  t_start = time.perf_counter()
  logging.info('training %s: iterations %d..%d in %s', cfg.name, it, cfg.iterations, run_dir)
  while it < cfg.iterations:
    if utils.STOP:  # between iterations: theta, the RNG and the curve belong to iteration `it`
      logging.info('%s: saving iteration %d and stopping', utils.STOP.describe(), it)
      checkpoints.save(it)
      utils.write_json(curve_path, curve)
      break
    data, pre, post = meta_batch(cfg, envs, algo, rng.rng)
    info = algo.step(data)
    it += 1
    record = {'iteration': it, 'pre_return': float(pre.returns().mean()),
              'post_return': float(post.returns().mean()) if post is not None else None, **info}
    if not np.isfinite(record['pre_return']) or not np.isfinite(info['loss_before']):
      raise RunError(f'non-finite return or loss at iteration {it}; the last good checkpoint is '
                     'kept. Lower --max_kl or the inner step size.')
    score = record['post_return'] if post is not None else record['pre_return']
    best.offer(score, it)
    curve.append({**record, 'score': score})
    with writer.as_default(step=it):
      tf.summary.scalar('return/pre_update', record['pre_return'])
      if post is not None:
        tf.summary.scalar('return/post_update', record['post_return'])
      tf.summary.scalar('trpo/kl', info['kl'])
    if it % cfg.print_every == 0 or it == cfg.iterations:
      elapsed = time.perf_counter() - t_start
      eta = (cfg.iterations - it) * elapsed / (it - start)
      post_text = f' | post-update return {record["post_return"]:.2f}' if post is not None else ''
      logging.info('iter %d/%d | pre-update return %.2f%s | KL %.4f%s | %.2f s/it | ETA %s', it,
                   cfg.iterations, record['pre_return'], post_text, info['kl'],
                   '' if info['accepted'] else f' (no step: {info["reason"]})',
                   elapsed / (it - start), utils.format_duration(eta))
    if it % cfg.checkpoint_every == 0 or it == cfg.iterations:
      checkpoints.save(it)
      utils.write_json(curve_path, curve)
  writer.flush()
  return it


def adaptation_returns(cfg: RLConfig, envs, algo: rl.maml_trpo.MamlTrpo, tasks: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
  """Fig. 5: average return of each task after 0..test_steps plain policy-gradient steps.

  Each step fits the baseline and advantages on that step's own test_per_task trajectories and takes
  one SGD step on the REINFORCE loss, of size test_lr first and test_lr * test_later_lr_factor after
  (the original's VPG test). Returns [test_steps + 1, tasks].
  """
  params = algo.learner.tile(algo.learner.params(), len(tasks))
  returns = []
  for step in range(cfg.test_steps + 1):
    batch = rl.sampling.rollouts(algo.forward, params, envs, tasks, cfg.test_per_task, rng)
    returns.append(batch.returns().mean(-1))
    if step < cfg.test_steps:
      x, y = (tf.constant(a) for a in rl.sampling.support_set(batch, cfg.gamma))
      lr = cfg.test_lr * (1.0 if step == 0 else cfg.test_later_lr_factor)
      params = algo.sgd_step(params, x, y, tf.constant(lr, algo.dtype))
  return np.array(returns)


def evaluate_rl(cfg: RLConfig, run_dir: str, test_iter: int = -1) -> dict:
  """Fig. 5 numbers of a run (the random baseline needs no run): writes and returns results/fig5.json.

  test_iter: -1 the best training return (the paper's choice), -2 the latest checkpoint, N the
    checkpoint of iteration N. Any but -1 writes results/fig5.iter<N>.json beside fig5.json, so the
    file the report reads always holds the paper's choice.
  """
  envs, policy, algo = build(cfg)
  iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
  path = None
  if cfg.method != 'random':
    # -1: best/ (or model/ in an exported results/<row>/), never the latest in its place
    path = rundir.checkpoint_for_eval(
        run_dir, test_iter,
        train_hint=(f'train the row first (python main.py --experiment={cfg.name} '
                    f'--logdir={os.path.dirname(run_dir) or "."})'),
        latest_refused=f'checkpoint of the best training return in {rundir.BEST_DIR}/')
    tf.train.Checkpoint(policy=policy, iteration=iteration).restore(path).expect_partial()
  tuning = {}
  if cfg.test_lr_grid and cfg.test_steps:
    val_tasks = envs.sample_tasks(cfg.tune_tasks, np.random.default_rng(cfg.tune_seed))
    for lr in cfg.test_lr_grid:
      val = adaptation_returns(cfg.replace(test_lr=lr), envs, algo, val_tasks,
                               np.random.default_rng(cfg.tune_seed + 1000))
      tuning[lr] = float(val[1:].mean())
    cfg = cfg.replace(test_lr=max(tuning, key=tuning.get))
    logging.info('test step size %g chosen on %d validation tasks (mean return after 1..%d steps: '
                 '%s)', cfg.test_lr, cfg.tune_tasks, cfg.test_steps,
                 ', '.join(f'{lr:g}: {v:.1f}' for lr, v in tuning.items()))
  tasks = envs.sample_tasks(cfg.test_tasks, np.random.default_rng(cfg.test_seed))
  returns = adaptation_returns(cfg, envs, algo, tasks, np.random.default_rng(cfg.test_seed + 1000))
  mean, ci95 = utils.mean_and_ci95(returns)
  result = {'experiment': cfg.name, 'env': cfg.env, 'method': cfg.method,
            'iteration': int(iteration), 'checkpoint': path and os.path.relpath(path, run_dir),
            'selection_rule': (cfg.selection_rule if test_iter == -1
                               else f'picked by hand: --test_iter={test_iter}'),
            'num_tasks': cfg.test_tasks,
            'trajectories_per_task': cfg.test_per_task, 'test_lr': cfg.test_lr,
            'test_later_lr_factor': cfg.test_later_lr_factor,
            'tuning': {f'{lr:g}': v for lr, v in tuning.items()},
            'mean': mean.tolist(), 'ci95': ci95.tolist(),
            'per_task': returns.tolist(), 'published': list(cfg.published), 'source': cfg.source,
            'commit': utils.git_commit()}
  os.makedirs(os.path.join(run_dir, 'results'), exist_ok=True)
  out = (RESULTS if test_iter == -1 or path is None
         else f'{RESULTS[:-len(".json")]}.iter{int(iteration)}.json')
  utils.write_json(os.path.join(run_dir, out), result)
  logging.info('%s: average return after 0..%d steps %s (published %s)', cfg.name, cfg.test_steps,
               utils.format_steps(mean, '{:.1f}'), list(cfg.published))
  return result
