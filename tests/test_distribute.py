"""tf.distribute: a meta-update split over replicas equals the single-device one (scale-out).

Each case runs in fresh processes (logical devices and TF_CONFIG must be set before TensorFlow
starts): 2 logical CPU devices under MirroredStrategy, and 2 worker processes on localhost under
MultiWorkerMirroredStrategy, against one device. Second-order MAML with batch norm, per-task
grouped convolutions and a meta-gradient clip that bites (clipping must follow the all-reduce).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import experiments
import trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / 'tests' / 'distribute_worker.py'
# One pytest-xdist worker runs this module's tests one after another: two localhost clusters
# started at once by the two test processes lost a worker's heartbeats once in four runs.
pytestmark = pytest.mark.xdist_group('distribute')


def free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def env(**extra):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', **extra)


def tf_configs(n):
  workers = [f'localhost:{p}' for p in free_ports(n)]
  return [json.dumps({'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': i}})
          for i in range(n)]


def run_all(commands, timeout=300):
  """Starts every (argv, env) at once and waits for all; fails with their stderr on an error."""
  procs = [subprocess.Popen(argv, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for argv, e in commands]
  outputs = [p.communicate(timeout=timeout) for p in procs]
  # Every failed process's stderr: a worker that dies takes its peers down with a heartbeat
  # error, and only its own log says why.
  failed = [f'--- process {i} (exit {p.returncode}):\n{err[-3000:]}'
            for i, (p, (_, err)) in enumerate(zip(procs, outputs)) if p.returncode != 0]
  assert not failed, '\n'.join(failed)
  return outputs


@pytest.fixture(scope='module')
def single(tmp_path_factory):
  out = tmp_path_factory.mktemp('single') / 'single.npz'
  run_all([([sys.executable, str(WORKER), 'single', str(out)], env())])
  result = dict(np.load(out))
  assert result['clipped'] > 0, 'the clip must bite for the test to check where it is applied'
  return result


def assert_same_updates(got, want):
  np.testing.assert_allclose(got['losses'], want['losses'], rtol=1e-5)
  weights = [k for k in want if k.startswith('w')]
  assert weights
  # float32 rounding through 3 second-order updates, measured against the largest weight: the conv
  # biases (true gradient 0 under batch norm) hold nothing but rounding noise on both sides.
  scale = max(np.abs(want[k]).max() for k in weights)
  for k in weights:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)


def test_mirrored_on_two_devices_equals_one_device(single, tmp_path):
  out = tmp_path / 'mirrored.npz'
  run_all([([sys.executable, str(WORKER), 'mirrored', str(out)], env())])
  got = dict(np.load(out))
  assert got['replicas'] == 2
  assert_same_updates(got, single)


def test_two_workers_on_localhost_equal_one_device(single, tmp_path):
  outs = [tmp_path / f'worker{i}.npz' for i in range(2)]
  run_all([([sys.executable, str(WORKER), 'multi_worker', str(out)], env(TF_CONFIG=config))
           for out, config in zip(outs, tf_configs(2))])
  for out in outs:
    got = dict(np.load(out))
    assert got['replicas'] == 2
    assert_same_updates(got, single)


def test_multi_worker_training_run_from_the_command_line(tmp_path):
  """main.py on 2 workers, stopped at 20 iterations and resumed to 30 (the other worker resumes from
  a private copy of the chief's checkpoint): the chief's run directory gets the checkpoints, and the
  weights equal an uninterrupted single-process run of the same flags."""
  flags = ['--experiment=sinusoid_maml', '--meta_batch_size=24', '--checkpoint_every=10',
           '--print_every=10']
  main = [sys.executable, str(ROOT / 'main.py')]
  # One after another: three TensorFlow processes at once on CI's 2 cores only add contention.
  run_all([(main + flags + ['--metatrain_iterations=30', f'--logdir={tmp_path / "one"}'], env())])
  for iterations in (20, 30):
    run_all([(main + flags + [f'--metatrain_iterations={iterations}', '--distribute=multi_worker',
                              f'--logdir={tmp_path / "two"}'], env(TF_CONFIG=config))
             for config in tf_configs(2)])
  cfg = experiments.get('sinusoid_maml').replace(meta_batch_size=24, metatrain_iterations=30)
  one, _ = trainer.restore_for_eval(cfg, str(tmp_path / 'one' / 'sinusoid_maml.meta_batch_size24'))
  two_dir = tmp_path / 'two' / 'sinusoid_maml.meta_batch_size24'
  two, _ = trainer.restore_for_eval(cfg, str(two_dir))
  assert int(one.iteration) == int(two.iteration) == 30
  assert tf.train.latest_checkpoint(str(two_dir)).endswith('-30')
  for a, b in zip(one.model.variables, two.model.variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_a_worker_copies_only_the_chiefs_latest_checkpoint(tmp_path):
  """The non-chief's private run starts from the chief's newest checkpoint and nothing else (a
  file the chief is writing, its lock, its summaries)."""
  chief, private = tmp_path / 'chief', tmp_path / 'private'
  chief.mkdir()
  private.mkdir()
  trainer._copy_latest_checkpoint(str(tmp_path / 'missing'), str(private))
  trainer._copy_latest_checkpoint(str(chief), str(private))
  assert not list(private.iterdir())
  step = tf.Variable(0)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step), str(chief), max_to_keep=3)
  for value in (10, 20):
    step.assign(value)
    manager.save(checkpoint_number=value)
  for name in ('config.json.tmp', trainer.LOCK_FILE, 'events.out.tfevents.1'):
    (chief / name).write_text('x')
  trainer._copy_latest_checkpoint(str(chief), str(private))
  assert sorted(p.name for p in private.iterdir()) == sorted(
      ['checkpoint'] + [p.name for p in chief.glob('ckpt-20.*')])
  restored = tf.Variable(0)
  copy = tf.train.CheckpointManager(tf.train.Checkpoint(step=restored), str(private), max_to_keep=3)
  copy.checkpoint.restore(copy.latest_checkpoint).assert_consumed()
  assert int(restored) == 20


def test_multi_worker_without_tf_config_is_one_clear_error(tmp_path):
  proc = subprocess.run([sys.executable, str(ROOT / 'main.py'), '--distribute=multi_worker',
                         f'--logdir={tmp_path}', '--metatrain_iterations=10'],
                        env={k: v for k, v in env().items() if k != 'TF_CONFIG'}, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr
  assert 'error: --distribute=multi_worker needs TF_CONFIG' in proc.stderr
