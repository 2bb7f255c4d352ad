"""The one run directory (rundir.py): both trainers open, lock, checkpoint and pick checkpoints
through it, so the RL trainer has the image trainer's lock too."""

import os

import pytest

import experiments
import rl.trainer
import rundir
import trainer


def small_rl(**changes):
  return experiments.get_rl('rl_navigation_maml').replace(**{
      'meta_batch_size': 4, 'per_task': 4, 'test_tasks': 2, 'test_per_task': 2,
      'checkpoint_every': 2, 'iterations': 2, **changes})


def test_a_second_rl_trainer_of_the_same_run_is_refused_and_a_stale_lock_taken_over(tmp_path):
  lock = tmp_path / rundir.LOCK_FILE
  lock.write_text(str(os.getppid()))  # a live process
  with pytest.raises(rl.trainer.RunError,
                     match=rf'being trained by another process \(pid {os.getppid()}\)'):
    rl.trainer.train_rl(small_rl(), str(tmp_path))
  assert rl.trainer.RunError is trainer.RunError  # main.py reports both the same way
  lock.write_text('999999999')  # no such process: a crashed trainer's lock
  assert rl.trainer.train_rl(small_rl(), str(tmp_path)) == 2
  assert not lock.exists()


def test_both_trainers_go_through_the_one_run_directory(tmp_path, monkeypatch):
  """Each trainer opens its run, rotates its checkpoints (10 image, 3 RL), keeps best/ and picks the
  checkpoint to evaluate with rundir.py's functions."""
  calls = []

  def spy(name, fn):
    def wrapped(*args, **kwargs):
      calls.append((name, args, kwargs))
      return fn(*args, **kwargs)
    monkeypatch.setattr(rundir, name, wrapped)

  for name in ('open_for_training', 'Checkpoints', 'BestKeeper', 'checkpoint_for_eval'):
    spy(name, getattr(rundir, name))

  cfg = experiments.get('sinusoid_maml').replace(
      metatrain_iterations=4, val_every=2, num_val_tasks=10, checkpoint_every=2, print_every=2,
      steps_per_call=1, jit_compile=False)
  trainer.train(cfg, str(tmp_path / 'image'))
  _, path = trainer.restore_for_eval(cfg, str(tmp_path / 'image'))
  image = [(name, args) for name, args, _ in calls]
  calls.clear()
  rl.trainer.train_rl(small_rl(), str(tmp_path / 'rl'))
  rl.trainer.evaluate_rl(small_rl(), str(tmp_path / 'rl'))
  rl_calls = [(name, args) for name, args, _ in calls]

  for got, run_dir, keep in ((image, str(tmp_path / 'image'), trainer.MAX_CHECKPOINTS),
                             (rl_calls, str(tmp_path / 'rl'), rl.trainer.MAX_CHECKPOINTS)):
    assert [name for name, _ in got] == ['open_for_training', 'Checkpoints', 'BestKeeper',
                                         'checkpoint_for_eval']
    assert all(args[0 if name in ('open_for_training', 'checkpoint_for_eval') else 1] == run_dir
               for name, args in got)
    assert got[1][1][3] == keep
  assert (trainer.MAX_CHECKPOINTS, rl.trainer.MAX_CHECKPOINTS) == (10, 3)
  assert '/best/' in path
  assert sorted(os.listdir(tmp_path / 'rl')) == sorted(
      ['best', 'checkpoint', 'ckpt-2.data-00000-of-00001', 'ckpt-2.index', 'config.json',
       'curve.json', 'results', 'train'])


def test_the_best_keeper_saves_only_when_the_callers_comparison_says_better(tmp_path):
  import tensorflow as tf
  iteration = tf.Variable(0, dtype=tf.int64)
  ckpt = tf.train.Checkpoint(iteration=iteration)
  keeper = rundir.BestKeeper(ckpt, str(tmp_path), iteration, lambda a, b: a > b, best=0.5)
  assert not keeper.offer(0.5, 1)  # a tie is not better under a strict comparison
  assert keeper.offer(0.7, 2) and keeper.best == 0.7
  assert tf.train.latest_checkpoint(str(tmp_path / rundir.BEST_DIR)).endswith('ckpt-2')
  with pytest.raises(rundir.RunError, match='no checkpoint of iteration 1'):
    rundir.checkpoint_for_eval(str(tmp_path), 1, train_hint='train it')
  assert rundir.checkpoint_for_eval(str(tmp_path), 2, train_hint='train it').endswith('best/ckpt-2')
