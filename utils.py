"""Losses, statistics and small run helpers shared by training, evaluation and the report."""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import subprocess
from typing import TYPE_CHECKING, Sequence

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
  from experiments import Config


# --- per-task losses and metrics: (y [T, M, d], out [T, M, d][, K]) -> [T] -----------------------

def mse(y: tf.Tensor, out: tf.Tensor, shots=None) -> tf.Tensor:
  """Mean squared error of each task (the original's `mse`, a plain mean; K is not used)."""
  del shots
  return tf.reduce_mean(tf.square(out - y), axis=[1, 2])


def xent(y: tf.Tensor, out: tf.Tensor, shots) -> tf.Tensor:
  """The original's classification loss: softmax cross-entropy summed over the set, divided by K.

  On an N-way K-shot support set this is N x the mean cross-entropy, so alpha means what the
  original's --update_lr means (cbfinn/maml issue #70). y: one-hot [T, M, N]; out: logits [T, M, N].
  """
  return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=out), -1) / shots


def accuracy(y: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
  """Percentage of the task's examples whose arg-max logit is the label (the paper reports %).

  y one-hot [T, M, N]; out logits [T, M, N].
  """
  hits = tf.equal(tf.argmax(y, -1), tf.argmax(out, -1))
  return 100.0 * tf.reduce_mean(tf.cast(hits, out.dtype), -1)


def loss_and_metric(cfg: Config):
  """(loss_fn, metric_fn) of an experiment row."""
  if cfg.metric == 'mse':
    return mse, mse
  if cfg.metric == 'accuracy':
    return xent, accuracy
  raise ValueError(f'no loss for metric {cfg.metric!r}')


# --- statistics ------------------------------------------------------------------------------------

def mean_and_ci95(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
  """Mean and 95% confidence half-width 1.96 * std / sqrt(n) over `axis` (original main.py test()).

  The original uses numpy's population std (ddof=0); so does this.
  """
  values = np.asarray(values, dtype=np.float64)
  n = values.shape[axis]
  return values.mean(axis), 1.96 * values.std(axis) / math.sqrt(n)


# --- run bookkeeping -------------------------------------------------------------------------------

def git_commit() -> str:
  """The repository's HEAD commit (with '+dirty' for local changes), or 'unknown' outside git."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True,
                            check=True, timeout=10).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here,
                           capture_output=True, text=True, check=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return 'unknown'
  return commit + ('+dirty' if dirty else '')


def results_name(split: str, shots: int, transductive: bool = True) -> str:
  """<split>_K<K>.json; non-transductive evaluations get their own file (_nontransductive)."""
  return f'{split}_K{shots}{"" if transductive else "_nontransductive"}.json'


def write_json(path: str, data) -> None:
  """Writes atomically (a crash never leaves half a results file)."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(data, f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def format_duration(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(round(seconds))))


def format_steps(values: Sequence[float], fmt: str = '{:.3f}') -> str:
  return ' '.join(fmt.format(v) for v in values)


# --- graceful stop ------------------------------------------------------------------------------

class StopRequest:
  """Set by a signal (main.py: SIGINT, SIGTERM); the training loops check it between iterations.

  A signal handler runs between two Python bytecodes, which may fall after an update but before the
  loop counts it; a checkpoint written there would be one update ahead of its iteration number and
  its data stream. So the handler only records the request and the loop stops where its state is
  whole, saves, and returns. A second signal raises KeyboardInterrupt at once.
  """

  def __init__(self):
    self.signum: int | None = None

  def __call__(self, signum: int, frame=None) -> None:
    if self.signum is not None:
      raise KeyboardInterrupt
    self.signum = signum

  def __bool__(self) -> bool:
    return self.signum is not None

  def describe(self) -> str:
    return signal.Signals(self.signum).name if self else 'none'


STOP = StopRequest()
