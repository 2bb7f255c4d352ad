"""Sampling for the RL rows: rollouts of every task's policy, rllab's linear baseline and advantages,
and a batch of rollouts as MAML's (x, y).

Shapes: T tasks, N trajectories per task, H time steps, O observation and A action dimensions. A batch
of rollouts is laid out [T, N, H, ...]; steps after an episode ended are masked out (mask 0).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from rl.policy import MIN_LOG_STD


# --- returns, baseline, advantages (numpy) ----------------------------------------------------------

def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
  """R_t = sum_{k >= t} gamma^(k-t) r_k along the last axis (H): [..., H] -> [..., H]."""
  out = np.zeros_like(rewards, dtype=np.float64)
  running = np.zeros(rewards.shape[:-1])
  for t in range(rewards.shape[-1] - 1, -1, -1):
    running = rewards[..., t] + gamma * running
    out[..., t] = running
  return out


def baseline_features(obs: np.ndarray) -> np.ndarray:
  """rllab's LinearFeatureBaseline features: [N, H, O] -> [N, H, 2O + 4]."""
  o = np.clip(obs, -10, 10)
  t = np.broadcast_to(np.arange(obs.shape[1])[None, :, None] / 100.0, obs.shape[:2] + (1,))
  return np.concatenate([o, o ** 2, t, t ** 2, t ** 3, np.ones_like(t)], axis=-1)


def fit_linear_baseline(obs: np.ndarray, returns: np.ndarray, mask: np.ndarray,
                        reg: float = 1e-5) -> np.ndarray:
  """Ridge regression of the returns on baseline_features over the valid steps of one task.

  obs [N, H, O], returns and mask [N, H] -> baseline values [N, H]. As rllab, the ridge coefficient
  grows x10 (up to 5 times) while the solution is not finite.
  """
  features = baseline_features(obs).astype(np.float64)
  valid = mask.astype(bool)
  f, r = features[valid], returns[valid]
  for _ in range(5):
    coef = np.linalg.solve(f.T @ f + reg * np.eye(f.shape[1]), f.T @ r)
    if np.all(np.isfinite(coef)):
      break
    reg *= 10
  return features @ coef


def advantages(obs: np.ndarray, rewards: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
  """Standardized advantages per task, GAE with lambda = 1: A_t = R_t - b(s_t).

  obs [T, N, H, O], rewards and mask [T, N, H] -> [T, N, H] (0 where masked). The linear baseline
  is fitted per task on that task's batch; each task's advantages are then centred and scaled to unit
  std over its valid steps (rllab's center_adv).
  """
  out = np.zeros(rewards.shape)
  for i in range(rewards.shape[0]):
    returns = discounted_returns(rewards[i] * mask[i], gamma)
    adv = returns - fit_linear_baseline(obs[i], returns, mask[i])
    valid = mask[i].astype(bool)
    out[i][valid] = (adv[valid] - adv[valid].mean()) / (adv[valid].std() + 1e-8)
  return out.astype(np.float32)


# --- sampling -----------------------------------------------------------------------------------

class Batch(NamedTuple):
  """Rollouts of T tasks x N trajectories x H steps (numpy)."""
  obs: np.ndarray       # [T, N, H, O] float32
  actions: np.ndarray   # [T, N, H, A] float32
  rewards: np.ndarray   # [T, N, H] float32
  mask: np.ndarray      # [T, N, H] float32: 1 for the steps of the episode, 0 after it ended
  outputs: np.ndarray   # [T, N, H, 2A] float32: the sampling policy's mean and log std

  def returns(self) -> np.ndarray:
    """Undiscounted return of every trajectory: [T, N]."""
    return (self.rewards * self.mask).sum(-1)


def rollouts(forward: Callable, task_params, envs, tasks: np.ndarray, per_task: int,
             rng: np.random.Generator) -> Batch:
  """Runs per_task trajectories of each task's policy for envs.horizon steps.

  forward(task_params, obs [T, N, O]) -> outputs [T, N, 2A]: one batched policy call per time step
  for all tasks and trajectories. tasks [T, task_dim]; actions are drawn from N(mean, std^2) with rng.
  """
  t, h = len(tasks), envs.horizon
  envs.set_tasks(tasks, per_task)
  obs = envs.reset(int(rng.integers(2 ** 31)))
  o, a = envs.obs_dim, envs.act_dim
  batch = Batch(np.zeros((t, per_task, h, o), np.float32), np.zeros((t, per_task, h, a), np.float32),
                np.zeros((t, per_task, h), np.float32), np.zeros((t, per_task, h), np.float32),
                np.zeros((t, per_task, h, 2 * a), np.float32))
  done = np.zeros(t * per_task, bool)
  for step in range(h):
    x = obs.reshape(t, per_task, o)
    out = np.asarray(forward(task_params, tf.constant(x)))
    mean, log_std = out[..., :a], np.maximum(out[..., a:], MIN_LOG_STD)
    action = (mean + np.exp(log_std) * rng.standard_normal(mean.shape)).astype(np.float32)
    batch.obs[:, :, step], batch.actions[:, :, step], batch.outputs[:, :, step] = x, action, out
    batch.mask[:, :, step] = (~done).reshape(t, per_task)
    obs, reward, now_done = envs.step(action.reshape(t * per_task, a))
    batch.rewards[:, :, step] = np.where(done, 0.0, reward).reshape(t, per_task)
    done = done | now_done
    if done.all():
      break
  return batch


def support_set(batch: Batch, gamma: float) -> tuple[np.ndarray, np.ndarray]:
  """A batch as MAML's (x, y): x = obs [T, N*H, O]; y = [actions, advantage, mask] [T, N*H, A+2]."""
  t = batch.obs.shape[0]
  adv = advantages(batch.obs, batch.rewards, batch.mask, gamma)
  y = np.concatenate([batch.actions, adv[..., None], batch.mask[..., None]], -1)
  return batch.obs.reshape(t, -1, batch.obs.shape[-1]), y.reshape(t, -1, y.shape[-1])
