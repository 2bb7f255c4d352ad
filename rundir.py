"""The run directory every trainer writes (trainer.py for the image and sinusoid rows, rl/trainer.py
for the RL rows): written once here, so both keep the same files under the same names, which
run_queue.py snapshots and exports.

  config.json   the resolved row; a directory never mixes two experiments (`open_for_training`)
  train.lock    the pid of the process training the run (`lock`)
  ckpt-<N>, checkpoint   the latest checkpoints, rotated (`Checkpoints`)
  best/         the checkpoint with the best score so far (`BestKeeper`)
  model/        in an exported results/<row>/: the tested weights alone (run_queue.py)

`checkpoint_for_eval` picks the checkpoint an evaluation reads. What a checkpoint holds (its object
graph) and the trainer's own files (validation.json, train.csv, curve.json) stay with the trainer.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

from absl import logging
import tensorflow as tf

import utils

CONFIG_FILE = 'config.json'
CKPT_PREFIX = 'ckpt'
BEST_DIR = 'best'        # the checkpoint with the best score (model selection)
EXPORTED_DIR = 'model'   # the tested weights of a row exported to results/<row>/ (run_queue.py)
LOCK_FILE = 'train.lock'  # held by the process training the run


class RunError(Exception):
  """A run that cannot go on; the message tells the user what to do."""


def read_config(run_dir: str) -> dict:
  """The config.json a run was trained with, or RunError if run_dir holds no run."""
  path = os.path.join(run_dir, CONFIG_FILE)
  if not os.path.exists(path):
    raise RunError(f'no trained run in {run_dir} (no {CONFIG_FILE}); train it first, e.g. '
                   f'python main.py --experiment=<row> --logdir={os.path.dirname(run_dir) or "."}')
  return utils.read_json(path)


# --- opening a run for training -------------------------------------------------------------------

def prepare(run_dir: str, config: dict, resume: bool, diff: Callable[[dict], list[str]]) -> None:
  """Creates run_dir and writes config (config.json); refuses to mix two experiments in one directory.

  A directory that already holds a checkpoint is continued only with resume, and only if
  diff(the saved config.json) lists no difference ('field: old -> new') that makes it another
  experiment: which fields count is the caller's (a runtime setting such as the iteration count
  does not).
  """
  try:
    os.makedirs(run_dir, exist_ok=True)
  except OSError as e:
    raise RunError(f'cannot create run directory {run_dir}: {e.strerror}; choose another --logdir')
  if not os.access(run_dir, os.W_OK):
    raise RunError(f'run directory {run_dir} is not writable; choose another --logdir')
  path = os.path.join(run_dir, CONFIG_FILE)
  if os.path.exists(path) and tf.train.latest_checkpoint(run_dir) is not None:
    if not resume:
      raise RunError(f'{run_dir} already holds a trained run; pass --resume=True to continue it, '
                     'or choose another --logdir')
    changes = diff(utils.read_json(path))
    if changes:
      raise RunError(f'{run_dir} was trained with another configuration ({"; ".join(changes)}); '
                     'choose another --logdir')
  utils.write_json(path, config)


def fields_diff(cfg) -> Callable[[dict], list[str]]:
  """prepare's diff for a config with its own type (the RL and learned-optimizer rows: to_dict,
  from_dict, RUNTIME_FIELDS): its fields, but the runtime ones, that differ from the saved ones."""
  new = cfg.to_dict()

  def diff(saved: dict) -> list[str]:
    saved = type(cfg).from_dict(saved).to_dict()
    return [f'{k}: {saved[k]!r} -> {v!r}' for k, v in new.items()
            if k not in cfg.RUNTIME_FIELDS and saved.get(k) != v]
  return diff


@contextlib.contextmanager
def lock(run_dir: str):
  """Holds <run>/train.lock (this process's pid) while training: a second trainer of the same run
  stops with RunError instead of interleaving its checkpoints with ours. A lock whose process is
  gone (a crash, a killed job) is taken over."""
  path = os.path.join(run_dir, LOCK_FILE)
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      break
    except FileExistsError:
      if _lock_holder_alive(path):
        raise RunError(f'{run_dir} is being trained by another process (pid '
                       f'{open(path).read().strip()}); stop it first, or delete {path} if that '
                       'process is not a trainer')
      with contextlib.suppress(FileNotFoundError):  # stale: its process is gone
        os.remove(path)
  else:
    raise RunError(f'cannot take {path}; delete it if no trainer is running')
  os.write(fd, str(os.getpid()).encode())
  os.close(fd)
  try:
    yield
  finally:
    os.remove(path)


def _lock_holder_alive(path: str) -> bool:
  """True if the pid written in the lock file `path` is a running process."""
  try:
    with open(path) as f:
      pid = int(f.read().strip() or 0)
    if pid <= 0:
      return False
    os.kill(pid, 0)  # signal 0: only checks that the process exists
  except (FileNotFoundError, ValueError, ProcessLookupError, OverflowError):
    return False
  except PermissionError:  # exists, owned by another user
    return True
  return True


@contextlib.contextmanager
def open_for_training(run_dir: str, config: dict, resume: bool, diff: Callable[[dict], list[str]]):
  """`prepare` the directory, then hold its `lock` for the block: how every trainer starts a run."""
  prepare(run_dir, config, resume, diff)
  with lock(run_dir):
    yield


# --- checkpoints ----------------------------------------------------------------------------------

class Checkpoints:
  """The latest checkpoints of a run, <run>/ckpt-<iteration>, the oldest dropped past max_to_keep.

  ckpt is the trainer's tf.train.Checkpoint (its object graph is the trainer's) and iteration the
  int64 variable in it that counts the iterations.
  """

  def __init__(self, ckpt: tf.train.Checkpoint, run_dir: str, iteration: tf.Variable,
               max_to_keep: int):
    self.ckpt, self.iteration = ckpt, iteration
    self.manager = tf.train.CheckpointManager(ckpt, run_dir, max_to_keep=max_to_keep,
                                              checkpoint_name=CKPT_PREFIX)

  def resume(self) -> int:
    """Restores the latest checkpoint, if any (every object of it must be matched: a checkpoint
    of another graph is an error, not a partial resume); returns the iteration reached."""
    latest = self.manager.latest_checkpoint
    if latest:
      self.ckpt.restore(latest).assert_consumed()
      logging.info('resumed %s at iteration %d', latest, int(self.iteration))
    return int(self.iteration)

  def save(self, iteration: int) -> None:
    """Saves ckpt-<iteration> with the iteration counter set to it."""
    self.iteration.assign(iteration)
    self.manager.save(checkpoint_number=iteration)


class BestKeeper:
  """<run>/best/: the one checkpoint with the best score so far (model selection).

  better(a, b): whether score a beats the best b, e.g. `a >= b` so that a tie goes to the later
  checkpoint. best: the best score of the run so far (a resumed run reads it from its curve), or None.
  """

  def __init__(self, ckpt: tf.train.Checkpoint, run_dir: str, iteration: tf.Variable,
               better: Callable[[float, float], bool], best: float | None = None):
    self.iteration, self.better, self.best = iteration, better, best
    self.manager = tf.train.CheckpointManager(ckpt, os.path.join(run_dir, BEST_DIR), max_to_keep=1,
                                              checkpoint_name=CKPT_PREFIX)

  def offer(self, score: float, iteration: int) -> bool:
    """Saves best/ckpt-<iteration> if score is the first or beats the best; returns whether it did."""
    if self.best is not None and not self.better(score, self.best):
      return False
    self.iteration.assign(iteration)
    self.manager.save(checkpoint_number=iteration)
    self.best = score
    return True


# --- evaluation -----------------------------------------------------------------------------------

def checkpoint_for_eval(run_dir: str, test_iter: int, *, train_hint: str,
                        latest_refused: str | None = None) -> str:
  """The checkpoint an evaluation reads (its path), or RunError: an untrained model is never evaluated.

  test_iter -1: the best checkpoint (<run>/best/), else the exported one (<run>/model/, the tested
  weights run_queue.py exports to results/<row>/), else the latest, unless latest_refused names the
  missing best checkpoint and why the latest does not stand in for it (the error then reads
  '<run> has no <latest_refused>; pass --test_iter=-2 ...');
  -2: the latest; N: the checkpoint of iteration N (in <run>/ or best/).
  train_hint: what to do when there is no checkpoint at all (the command that trains the row).
  """
  if test_iter >= 0:
    candidates = [os.path.join(d, f'{CKPT_PREFIX}-{test_iter}')
                  for d in (run_dir, os.path.join(run_dir, BEST_DIR))]
    path = next((p for p in candidates if tf.io.gfile.exists(p + '.index')), None)
    if path is None:
      have = tf.train.get_checkpoint_state(run_dir)
      kept = [os.path.basename(p) for p in have.all_model_checkpoint_paths] if have else []
      raise RunError(f'no checkpoint of iteration {test_iter} in {run_dir} ({candidates[0]}); it '
                     f'holds: {", ".join(kept) or "none"}')
    return path
  best = (tf.train.latest_checkpoint(os.path.join(run_dir, BEST_DIR))
          or tf.train.latest_checkpoint(os.path.join(run_dir, EXPORTED_DIR))) if test_iter == -1 else None
  path = best or tf.train.latest_checkpoint(run_dir)
  if path is None:
    raise RunError(f'no checkpoint in {run_dir}: {train_hint}')
  if best is None and test_iter == -1 and latest_refused:
    raise RunError(f'{run_dir} has no {latest_refused}; pass --test_iter=-2 to evaluate the latest '
                   'checkpoint, or --test_iter=N for iteration N')
  return path
