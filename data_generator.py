"""Episodes for meta-learning: a batch of tasks, each with a support set and a query set.

The original code calls these inputa/labela (support, used by the inner loop) and inputb/labelb
(query, used by the meta-objective). Every sampler takes an explicit seed and never touches the global
RNG, and exposes `trackable()`, an object a tf.train.Checkpoint saves, so a resumed run draws exactly
the episodes an uninterrupted one would have.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import tensorflow as tf


class Episode(NamedTuple):
  """A meta-batch of T tasks.

  support_x: [T, N*K, d_in]; support_y: [T, N*K, d_out] (float32).
  query_x:   [T, N*Q, d_in]; query_y:   [T, N*Q, d_out].
  task:      [T, 2] the task parameters (sinusoid: amplitude A, phase phi), for plots and the oracle.
  """
  support_x: np.ndarray
  support_y: np.ndarray
  query_x: np.ndarray
  query_y: np.ndarray
  task: np.ndarray


class SinusoidTasks:
  """Regression tasks y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5] (paper §5.1).

  Each task draws K support and Q query points independently from the same sine. With `oracle=True`
  every input row is (x, A, phi) instead of (x), the paper's oracle baseline.
  """
  AMP_RANGE = (0.1, 5.0)
  PHASE_RANGE = (0.0, np.pi)
  INPUT_RANGE = (-5.0, 5.0)

  def __init__(self, seed, oracle: bool = False):
    """seed: anything np.random.default_rng accepts (an int, or a tuple such as (eval_seed, split))."""
    self._rng = np.random.default_rng(seed)
    self.oracle = oracle

  def sample(self, meta_batch_size: int, k_support: int, k_query: int) -> Episode:
    """Draws T = meta_batch_size tasks with K = k_support and Q = k_query points each."""
    rng = self._rng
    amp = rng.uniform(*self.AMP_RANGE, size=(meta_batch_size, 1, 1))
    phase = rng.uniform(*self.PHASE_RANGE, size=(meta_batch_size, 1, 1))
    x = rng.uniform(*self.INPUT_RANGE, size=(meta_batch_size, k_support + k_query, 1))
    y = amp * np.sin(x - phase)
    x = self.inputs(x, amp, phase)
    task = np.concatenate([amp, phase], axis=-1)[:, 0].astype(np.float32)
    return Episode(x[:, :k_support], y[:, :k_support].astype(np.float32),
                   x[:, k_support:], y[:, k_support:].astype(np.float32), task)

  def inputs(self, x: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """x [T, M, 1] -> model inputs [T, M, d_in] float32 (appends A and phi for the oracle)."""
    if self.oracle:
      x = np.concatenate([x, np.broadcast_to(amp, x.shape), np.broadcast_to(phase, x.shape)], -1)
    return x.astype(np.float32)

  def grid(self, task: np.ndarray, num_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """An evenly spaced grid over the input range for plotting.

    task: [T, 2] (A, phi). Returns inputs [T, num_points, d_in] and targets [T, num_points, 1].
    """
    x = np.linspace(*self.INPUT_RANGE, num_points)[None, :, None].repeat(len(task), 0)
    amp, phase = task[:, None, :1], task[:, None, 1:]
    return self.inputs(x, amp, phase), (amp * np.sin(x - phase)).astype(np.float32)

  def get_state(self) -> str:
    return json.dumps(self._rng.bit_generator.state)

  def set_state(self, state: str) -> None:
    self._rng.bit_generator.state = json.loads(state)

  def trackable(self) -> tf.train.experimental.PythonState:
    """What a tf.train.Checkpoint saves so a resumed run draws the same episodes."""
    return _NumpyRngState(self)


class _NumpyRngState(tf.train.experimental.PythonState):
  """A sampler's numpy RNG state inside a tf.train.Checkpoint."""

  def __init__(self, sampler):
    self._sampler = sampler

  def serialize(self) -> str:
    return self._sampler.get_state()

  def deserialize(self, string_value) -> None:
    value = string_value.decode() if isinstance(string_value, bytes) else string_value
    self._sampler.set_state(value)


SPLIT_IDS = {'train': 0, 'val': 1, 'test': 2, 'plot': 3}


def make_sampler(cfg, split: str, shots: int | None = None):
  """The episode sampler of an experiment row for one split.

  Training tasks follow cfg.seed; validation, test and plotting tasks follow cfg.eval_seed and K only,
  so every model (MAML, baselines, any training seed) is evaluated on the very same tasks.
  """
  if split not in SPLIT_IDS:
    raise ValueError(f'unknown split {split!r}; choose one of {sorted(SPLIT_IDS)}')
  seed = (cfg.seed, 0) if split == 'train' else (cfg.eval_seed, SPLIT_IDS[split], shots or 0)
  if cfg.datasource == 'sinusoid':
    return SinusoidTasks(seed, oracle=cfg.baseline == 'oracle')
  raise ValueError(f'no episode sampler for datasource {cfg.datasource!r}')


def sample_tasks(sampler, num_tasks: int, k_support: int, k_query: int) -> Episode:
  """num_tasks tasks drawn one at a time, so task i is the same whatever batch it is later put in."""
  tasks = [sampler.sample(1, k_support, k_query) for _ in range(num_tasks)]
  return Episode(*(np.concatenate(parts) for parts in zip(*tasks)))
