"""The command line and the training loop end to end: train, kill -9, resume, test, bad inputs."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import data_generator
import experiments
import trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK = ['--print_every=20', '--checkpoint_every=20', '--jit_compile=False']


def run_main(*flags, timeout=120):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, str(ROOT / 'main.py'), *flags], capture_output=True,
                        text=True, timeout=timeout, env=env, cwd=ROOT)


def assert_clean_error(proc, match):
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and match in errors[0], proc.stderr[-2000:]


def test_train_kill_resume_and_test(tmp_path):
  logdir = str(tmp_path)
  run_dir = tmp_path / 'sinusoid_maml'
  proc = subprocess.Popen([sys.executable, str(ROOT / 'main.py'), f'--logdir={logdir}',
                           '--metatrain_iterations=1000000', *QUICK], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 90
    while time.time() < deadline and not list(run_dir.glob('ckpt-40.index')):
      time.sleep(0.2)
    assert list(run_dir.glob('ckpt-40.index')), 'no checkpoint appeared'
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  killed_at = int(tf.train.latest_checkpoint(str(run_dir)).rsplit('-', 1)[1])

  resumed = run_main(f'--logdir={logdir}', f'--metatrain_iterations={killed_at + 40}', *QUICK)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f'at iteration {killed_at}' in resumed.stderr
  assert f'iter {killed_at + 40}/{killed_at + 40}' in resumed.stderr
  config = json.loads((run_dir / 'config.json').read_text())
  assert config['name'] == 'sinusoid_maml' and config['update_lr'] == 0.001
  assert list((run_dir / 'train').glob('events.out.tfevents.*')), 'no TensorBoard summaries'

  # Test mode reads the run's config: no training flags repeated.
  tested = run_main(f'--logdir={logdir}', '--train=False', '--test_set=True',
                    '--num_test_tasks=20', '--update_batch_size=5')
  assert tested.returncode == 0, tested.stderr[-2000:]
  result = json.loads((run_dir / 'results' / 'test_K5.json').read_text())
  assert result['iteration'] == killed_at + 40 and result['num_tasks'] == 20
  assert len(result['mean']) == 11 and len(result['ci95']) == 11
  assert result['update_lr'] == 0.001 and result['split'] == 'test'
  assert [p['step'] for p in result['published']] == [1, 5, 10]
  curves = np.load(run_dir / 'results' / 'test_K5_curves.npz')
  assert curves['pred'].shape[0] == 11 and curves['support_x'].shape[1] == 5


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_the_last_iteration_and_resumes_exactly(tmp_path, signum):
  """SIGTERM / Ctrl-C stop training at an iteration boundary with a checkpoint of that very
  iteration (none is due: checkpoint_every is huge), so a resumed run equals an uninterrupted one."""
  flags = ['--print_every=100', '--checkpoint_every=1000000', '--jit_compile=False',
           '--metatrain_iterations=1000000']
  log = tmp_path / 'stderr.txt'
  with open(log, 'w') as err:
    proc = subprocess.Popen([sys.executable, str(ROOT / 'main.py'), f'--logdir={tmp_path / "a"}',
                             *flags], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
      deadline = time.time() + 90
      while time.time() < deadline and 'iter 200/' not in log.read_text():
        time.sleep(0.2)
      assert 'iter 200/' in log.read_text(), log.read_text()[-2000:]
      proc.send_signal(signum)
      assert proc.wait(timeout=60) == 128 + signum, log.read_text()[-2000:]
    finally:
      proc.kill()
  text = log.read_text()
  assert 'Traceback' not in text and 'the same command resumes' in text, text[-2000:]
  run_dir = tmp_path / 'a' / 'sinusoid_maml'
  stopped_at = int(tf.train.latest_checkpoint(str(run_dir)).rsplit('-', 1)[1])
  assert stopped_at >= 200 and f'saving iteration {stopped_at} and stopping' in text

  cfg = experiments.get('sinusoid_maml').replace(metatrain_iterations=stopped_at + 20,
                                                 jit_compile=False)
  trainer.train(cfg, str(run_dir))  # resumes (config.json holds 1000000 iterations: a runtime field)
  trainer.train(cfg, str(tmp_path / 'b'))
  a, _ = trainer.restore_for_eval(cfg, str(run_dir))
  b, _ = trainer.restore_for_eval(cfg, str(tmp_path / 'b'))
  for x, y in zip(a.model.variables, b.model.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_resume_continues_exactly(tmp_path):
  """Stopping and resuming from a checkpoint gives the same weights, Adam state and data stream."""
  cfg = experiments.get('sinusoid_maml').replace(
      metatrain_iterations=40, checkpoint_every=20, summary_every=10, print_every=20,
      jit_compile=False)
  trainer.train(cfg, str(tmp_path / 'a'))
  trainer.train(cfg.replace(metatrain_iterations=20), str(tmp_path / 'b'))
  trainer.train(cfg, str(tmp_path / 'b'))  # resumes at 20
  a, _ = trainer.restore_for_eval(cfg, str(tmp_path / 'a'))
  b, _ = trainer.restore_for_eval(cfg, str(tmp_path / 'b'))
  assert int(a.iteration) == int(b.iteration) == 40
  for x, y in zip(a.model.variables, b.model.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


class _StopAfter:
  """utils.STOP as after a SIGTERM that arrives once the loop has checked it `n` times."""

  def __init__(self, n):
    self.n = n

  def __bool__(self):
    self.n -= 1
    return self.n < 0

  def describe(self):
    return 'SIGTERM'


@pytest.mark.parametrize('interruption', ['kill_after_checkpoint', 'stop', 'crash'])
def test_episodes_drawn_ahead_train_what_episodes_drawn_in_turn_train(tmp_path, monkeypatch,
                                                                       interruption):
  """The loop draws the next call's sinusoid episodes during the current call (data_generator.
  Prefetched). The weights equal those of a run that draws each call's episodes when it starts,
  bit for bit, also when the prefetching run resumes from a checkpoint written while it was drawing
  ahead: a kill -9 after a periodic checkpoint, a stop signal, a crash mid-run."""
  cfg = experiments.get('sinusoid_maml').replace(
      pretrain_iterations=15, metatrain_iterations=32, checkpoint_every=20, summary_every=10,
      print_every=20, steps_per_call=7, jit_compile=False)
  with monkeypatch.context() as m:  # the reference: each call's episodes drawn when it starts
    m.setattr(data_generator, 'episode_stream', data_generator.Episodes)
    trainer.train(cfg, str(tmp_path / 'in_turn'))
  run_dir = str(tmp_path / 'ahead')
  if interruption == 'kill_after_checkpoint':  # ckpt-20 was written with episodes drawn ahead
    trainer.train(cfg, run_dir)
    for path in tf.io.gfile.glob(f'{run_dir}/ckpt-4*'):
      os.remove(path)
    with open(f'{run_dir}/checkpoint', 'w') as f:  # the state file as it was after ckpt-20
      f.write('model_checkpoint_path: "ckpt-20"\nall_model_checkpoint_paths: "ckpt-20"\n')
  elif interruption == 'stop':
    with monkeypatch.context() as m:
      m.setattr(trainer.utils, 'STOP', _StopAfter(12))
      assert trainer.train(cfg, run_dir) < 47
  else:
    real_next, calls = data_generator.Prefetched.next, []

    def crash(self, count, then):
      calls.append(count)
      if len(calls) == 12:
        raise KeyboardInterrupt
      return real_next(self, count, then)
    with monkeypatch.context() as m:
      m.setattr(data_generator.Prefetched, 'next', crash)
      with pytest.raises(KeyboardInterrupt):
        trainer.train(cfg, run_dir)
  resumed_at = int(tf.train.latest_checkpoint(run_dir).rsplit('-', 1)[1])
  assert 0 < resumed_at < 47
  assert trainer.train(cfg, run_dir) == 47
  a, _ = trainer.restore_for_eval(cfg, str(tmp_path / 'in_turn'))
  b, _ = trainer.restore_for_eval(cfg, run_dir)
  for x, y in zip(a.model.variables, b.model.variables, strict=True):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_a_smaller_evaluation_never_replaces_a_larger_one(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(metatrain_iterations=20, jit_compile=False)
  trainer.train(cfg, str(tmp_path))
  results = tmp_path / 'results'
  read = lambda name: json.loads((results / name).read_text())
  trainer.evaluate(cfg.replace(num_test_tasks=8), str(tmp_path), split='test', shots=(5,))
  trainer.evaluate(cfg.replace(num_test_tasks=4), str(tmp_path), split='test', shots=(5,))
  assert read('test_K5.json')['num_tasks'] == 8 and read('test_K5.tasks4.json')['num_tasks'] == 4
  assert (results / 'test_K5.tasks4_curves.npz').exists()
  trainer.evaluate(cfg.replace(num_test_tasks=8, test_update_lr=0.5), str(tmp_path), split='test',
                   shots=(5,))
  assert read('test_K5.json')['update_lr'] == 0.5  # as many tasks: the newer evaluation wins


def test_a_hand_picked_checkpoint_never_replaces_the_selected_models_results(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(metatrain_iterations=40, checkpoint_every=20,
                                                 jit_compile=False, num_test_tasks=4)
  trainer.train(cfg, str(tmp_path))
  results = tmp_path / 'results'
  trainer.evaluate(cfg, str(tmp_path), split='test', shots=(5,))
  trainer.evaluate(cfg, str(tmp_path), split='test', shots=(5,), test_iter=20)
  trainer.evaluate(cfg, str(tmp_path), split='test', shots=(5,), test_iter=-2)  # the latest
  read = lambda name: json.loads((results / name).read_text())
  assert read('test_K5.json')['iteration'] == 40
  assert read('test_K5.iter20.json')['iteration'] == 20
  assert read('test_K5.iter40.json')['iteration'] == 40


def test_steps_per_call_changes_speed_not_results(tmp_path):
  """Looped calls (with remainders before every log, checkpoint and the pretrain -> MAML switch)
  train the same weights as one update per call."""
  cfg = experiments.get('sinusoid_maml').replace(
      pretrain_iterations=15, metatrain_iterations=32, checkpoint_every=20, summary_every=10,
      print_every=20, jit_compile=False)
  weights = []
  for steps_per_call in (1, 7):
    run_dir = str(tmp_path / str(steps_per_call))
    assert trainer.train(cfg.replace(steps_per_call=steps_per_call), run_dir) == 47
    setup, _ = trainer.restore_for_eval(cfg, run_dir)
    weights.append([v.numpy() for v in setup.model.variables])
  for x, y in zip(*weights):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  cfg = experiments.get('sinusoid_maml').replace(
      metatrain_iterations=100, checkpoint_every=10, summary_every=5, print_every=50,
      jit_compile=False)
  real_sample = data_generator.SinusoidTasks.sample
  calls = []

  def poisoned(self, *args):
    calls.append(1)
    episode = real_sample(self, *args)
    if len(calls) > 33:  # iteration 34 on: NaN targets
      episode.query_y[:] = np.nan
    return episode

  monkeypatch.setattr(data_generator.SinusoidTasks, 'sample', poisoned)
  with pytest.raises(trainer.RunError, match=r'became nan at iteration 34'):
    trainer.train(cfg, str(tmp_path))
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith('ckpt-30')
  setup, _ = trainer.restore_for_eval(cfg, str(tmp_path))
  assert all(np.all(np.isfinite(v.numpy())) for v in setup.model.variables)


def test_test_mode_never_evaluates_an_untrained_model(tmp_path):
  proc = run_main(f'--logdir={tmp_path}', '--train=False')
  assert_clean_error(proc, 'no trained run')
  # A run directory with a config but no checkpoint (training died before the first one).
  (tmp_path / 'sinusoid_maml').mkdir()
  trainer.prepare_run_dir(experiments.get('sinusoid_maml'), str(tmp_path / 'sinusoid_maml'), True)
  proc = run_main(f'--logdir={tmp_path}', '--train=False')
  assert_clean_error(proc, 'no checkpoint')


@pytest.mark.parametrize('flags,match', [
    (['--experiment=sinusoid_mamll'], "unknown experiment 'sinusoid_mamll'"),
    (['--update_batch_size=0'], 'update_batch_size=0 must be at least 1'),
    (['--num_updates=-1'], 'num_updates=-1 must not be negative'),
    (['--meta_lr=-1'], 'meta_lr=-1.0 must be a positive number'),
])
def test_bad_flags_give_one_clear_line(tmp_path, flags, match):
  assert_clean_error(run_main(f'--logdir={tmp_path}', *flags), match)


def test_unwritable_logdir(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  assert_clean_error(run_main(f'--logdir={blocker}/runs', '--metatrain_iterations=5'),
                     'cannot create run directory')


def test_unknown_flag_is_rejected_by_absl(tmp_path):
  proc = run_main(f'--logdir={tmp_path}', '--update_batchsize=5')
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  assert "Unknown command line flag 'update_batchsize'" in proc.stderr


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(metatrain_iterations=5, jit_compile=False)
  trainer.train(cfg, str(tmp_path))
  with pytest.raises(trainer.RunError, match='already holds a trained run'):
    trainer.train(cfg, str(tmp_path), resume=False)
  with pytest.raises(trainer.RunError, match=r'another configuration \(update_lr: 0.001 -> 0.02\)'):
    trainer.train(cfg.replace(update_lr=0.02), str(tmp_path))
  # A corrected published number or source is not another experiment: the run goes on.
  assert trainer.train(cfg.replace(published=(), source='elsewhere', metatrain_iterations=6),
                       str(tmp_path)) == 6


def test_seed_makes_cpu_runs_repeatable(tmp_path):
  """Same seed: bit-identical weights (XLA included); another seed: different ones."""
  cfg = experiments.get('sinusoid_maml').replace(metatrain_iterations=30, print_every=30)
  for name, seed in (('a', 0), ('b', 0), ('c', 1)):
    trainer.train(cfg.replace(seed=seed), str(tmp_path / name))
  weights = {n: [v.numpy() for v in trainer.restore_for_eval(cfg.replace(seed=s), str(tmp_path / n))[0]
                 .model.variables] for n, s in (('a', 0), ('b', 0), ('c', 1))}
  for x, y, z in zip(weights['a'], weights['b'], weights['c']):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, z) for x, z in zip(weights['a'], weights['c']))


def test_validation_keeps_the_best_checkpoint_and_test_mode_uses_it(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(
      metatrain_iterations=60, val_every=20, num_val_tasks=10, checkpoint_every=20,
      print_every=20, jit_compile=False)
  trainer.train(cfg, str(tmp_path))
  curve = json.loads((tmp_path / 'validation.json').read_text())['curve']
  assert sorted(map(int, curve)) == [20, 40, 60]
  best_iter = min(curve, key=curve.get)  # MSE: lower is better
  setup, path = trainer.restore_for_eval(cfg, str(tmp_path))
  assert int(setup.iteration) == int(best_iter) and '/best/' in path
  latest, _ = trainer.restore_for_eval(cfg, str(tmp_path), test_iter=-2)
  assert int(latest.iteration) == 60


def test_a_validation_tie_selects_the_later_checkpoint(tmp_path, monkeypatch):
  """A saturated validation set (every checkpoint at 100%) selects the checkpoint trained longest."""
  cfg = experiments.get('sinusoid_maml').replace(
      metatrain_iterations=60, val_every=20, num_val_tasks=10, checkpoint_every=20,
      print_every=20, jit_compile=False)
  monkeypatch.setattr(trainer, '_run_tasks', lambda fn, chunks, lr: {
      'metric': np.zeros((cfg.report_step + 1, cfg.num_val_tasks))})
  trainer.train(cfg, str(tmp_path))
  curve = json.loads((tmp_path / 'validation.json').read_text())['curve']
  assert curve == {'20': 0.0, '40': 0.0, '60': 0.0}
  setup, path = trainer.restore_for_eval(cfg, str(tmp_path))
  assert int(setup.iteration) == 60 and '/best/' in path


def test_a_validating_row_without_a_best_checkpoint_is_not_evaluated_silently(tmp_path):
  """No fallback to the latest checkpoint where the best-validated one is missing."""
  cfg = experiments.get('sinusoid_maml').replace(
      metatrain_iterations=10, val_every=0, checkpoint_every=10, print_every=10, jit_compile=False)
  trainer.train(cfg, str(tmp_path))
  with pytest.raises(trainer.RunError, match='no best-validated checkpoint.*--test_iter=-2'):
    trainer.restore_for_eval(cfg.replace(val_every=500), str(tmp_path))
  setup, path = trainer.restore_for_eval(cfg.replace(val_every=500), str(tmp_path), test_iter=-2)
  assert int(setup.iteration) == 10 and path.endswith('ckpt-10')
  assert trainer.restore_for_eval(cfg, str(tmp_path))[1] == path  # a row without validation


def test_resuming_with_another_validation_set_is_refused(tmp_path):
  """Validation values on other tasks cannot pick the best checkpoint: a changed set is an error."""
  cfg = experiments.get('sinusoid_maml').replace(
      metatrain_iterations=20, val_every=10, num_val_tasks=10, checkpoint_every=10, print_every=10,
      jit_compile=False)
  trainer.train(cfg, str(tmp_path))
  saved = json.loads((tmp_path / 'validation.json').read_text())
  assert (saved['num_tasks'], saved['eval_seed'], sorted(saved['curve'])) == (10, 1, ['10', '20'])
  with pytest.raises(trainer.RunError, match='num_tasks=10.*num_tasks=12'):
    trainer.train(cfg.replace(metatrain_iterations=30, num_val_tasks=12), str(tmp_path))
  trainer.train(cfg.replace(metatrain_iterations=30), str(tmp_path))  # the same set: one curve
  assert sorted(json.loads((tmp_path / 'validation.json').read_text())['curve']) == ['10', '20', '30']


def test_intra_op_threads_reaches_tensorflow(tmp_path):
  """The sinusoid rows run one thread per op (a speed setting of the row); a flag overrides it."""
  proc = run_main('--experiment=sinusoid_maml', '--benchmark', '--benchmark_iterations=100',
                  '--intra_op_threads=2', f'--logdir={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  record = json.loads((tmp_path / 'benchmarks' / 'sinusoid_maml.intra_op_threads2.json').read_text())
  assert record['intra_op_threads'] == 2
  assert experiments.get('sinusoid_maml').intra_op_threads == 1


def test_a_run_being_trained_by_a_live_process_is_refused_and_a_stale_lock_taken_over(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(metatrain_iterations=2, print_every=1,
                                                 steps_per_call=1)
  tmp_path.mkdir(exist_ok=True)
  lock = tmp_path / trainer.LOCK_FILE
  lock.write_text(str(os.getppid()))  # a live process
  with pytest.raises(trainer.RunError, match=rf'being trained by another process \(pid {os.getppid()}\)'):
    trainer.train(cfg, str(tmp_path))
  lock.write_text('999999999')  # no such process: a crashed trainer's lock
  assert trainer.train(cfg, str(tmp_path)) == 2
  assert not lock.exists()


def _fake_miniimagenet(folder: pathlib.Path, images_per_class: dict[str, int]) -> None:
  """Split CSVs (64/16/20 classes) and tiny-content 84x84 JPEGs in train|val|test/<wnid>/."""
  from PIL import Image
  rng = np.random.default_rng(0)
  number = iter(range(1, 10_000))
  (folder / 'splits').mkdir(parents=True)
  for index, (split, classes) in enumerate((('train', 64), ('val', 16), ('test', 20))):
    rows = ['filename,label']
    for c in range(classes):
      wnid = f'n{index}{c:07d}'
      (folder / split / wnid).mkdir(parents=True)
      for _ in range(images_per_class[split]):
        name = f'{wnid}{next(number):08d}.jpg'
        pixels = rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / split / wnid / name)
        rows.append(f'{name},{wnid}')
    (folder / 'splits' / f'{split}.csv').write_text('\n'.join(rows) + '\n')


def test_classifier_baselines_share_one_trained_classifier(tmp_path, monkeypatch):
  """The four MiniImagenet baseline rows train one classifier (model_from) and each evaluates it
  its own way into its own results folder."""
  source = tmp_path / 'mini'
  _fake_miniimagenet(source, {'train': 2, 'val': 1, 'test': 20})
  monkeypatch.setenv('MAML_TFDS_DIR', str(tmp_path / 'tfds'))
  logdir = tmp_path / 'logs'
  common = [f'--logdir={logdir}', f'--data_dir={source}']
  untrained = run_main('--experiment=miniimagenet_5way_5shot_finetune', '--train=False', *common)
  assert_clean_error(untrained, f'no trained run in {logdir / "miniimagenet_5way_1shot_finetune"}')

  # Training a sharing row trains the row it takes its model from, and only that.
  trained = run_main('--experiment=miniimagenet_5way_1shot_nearest_neighbor',
                     '--pretrain_iterations=2', '--print_every=1', '--checkpoint_every=2', *common)
  assert trained.returncode == 0, trained.stderr[-2000:]
  assert 'training that run' in trained.stderr
  assert sorted(p.name for p in logdir.iterdir()) == ['miniimagenet_5way_1shot_finetune']

  evaluate = ['--train=False', '--test_set=True', '--num_test_tasks=2', *common]
  nn = run_main('--experiment=miniimagenet_5way_1shot_nearest_neighbor', *evaluate)
  tuned = run_main('--experiment=miniimagenet_5way_5shot_finetune', '--update_lr=0.01', *evaluate)
  for proc in (nn, tuned):
    assert proc.returncode == 0, proc.stderr[-2000:]
  for row, k, steps in (('miniimagenet_5way_1shot_nearest_neighbor', 1, 1),
                        ('miniimagenet_5way_5shot_finetune', 5, 11)):
    result = json.loads((logdir / row / 'results' / f'test_K{k}.json').read_text())
    assert result['experiment'] == row and result['iteration'] == 2 and len(result['mean']) == steps
    assert result['checkpoint'].startswith('../miniimagenet_5way_1shot_finetune/')
    assert [p['shots'] for p in result['published']] == [k]
    assert not list((logdir / row).glob('ckpt-*')), 'a sharing row stores no model of its own'


@pytest.mark.parametrize('flag, value', [('max_kl', 0.01), ('fd_hvp_eps', 1.0)])
def test_trpo_flags_name_the_rl_run_they_train_and_are_refused_for_supervised_rows(flag, value):
  from absl.testing import flagsaver
  import main
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=rl_cheetah_dir_maml', f'--{flag}={value}', '--logdir=L'])
    cfg, run_dir = main.resolve_rl()
    assert getattr(cfg, flag) == value
    assert run_dir == os.path.join('L', f'rl_cheetah_dir_maml.{flag}{value}')
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=sinusoid_maml', f'--{flag}={value}'])
    with pytest.raises(experiments.ConfigError, match=f'--{flag} applies to the RL rows only'):
      main.resolve(test_mode=False)


def test_rl_rows_refuse_the_flags_they_do_not_read():
  from absl.testing import flagsaver
  import main
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=rl_cheetah_vel_maml', '--env_workers=3', '--logdir=L',
                '--test_set=True', '--num_test_tasks=4'])
    cfg, run_dir = main.resolve_rl()  # env_workers is speed only: the run name keeps the row's
    assert (cfg.env_workers, cfg.test_tasks, run_dir) == (3, 4, os.path.join('L', 'rl_cheetah_vel_maml'))
    for bad, message in (('--meta_lr=0.5', '--meta_lr: not read by the RL row'),
                         ('--update_lr=0.3', '--update_lr: not read by the RL row'),
                         ('--test_set=False', 'evaluated on its test tasks only')):
      main.FLAGS.unparse_flags()
      main.FLAGS(['main.py', '--experiment=rl_cheetah_vel_maml', bad])
      with pytest.raises(experiments.ConfigError, match=message):
        main.resolve_rl()
    main.FLAGS.unparse_flags()
    main.FLAGS(['main.py', '--experiment=sinusoid_maml', '--env_workers=2'])
    with pytest.raises(experiments.ConfigError, match='--env_workers applies to the RL rows only'):
      main.resolve(test_mode=False)
  assert set(main.RL_FLAGS) <= set(main.MAIN_FLAGS) and 'verbosity' not in main.MAIN_FLAGS
