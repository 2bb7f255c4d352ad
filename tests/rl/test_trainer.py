"""RL training and Fig. 5 evaluation end to end on 2D navigation (fast: numpy environments)."""

import json
import signal

import numpy as np
import pytest

import experiments
import report
import rl.envs
import rl.trainer
import utils


def small(name, **changes):
  return experiments.get_rl(name).replace(**{'meta_batch_size': 4, 'per_task': 4, 'test_tasks': 3,
                                             'test_per_task': 2, 'checkpoint_every': 2, **changes})


def test_short_navigation_run_learns_to_adapt(tmp_path):
  """After 15 MAML-TRPO iterations (10 tasks x 10 trajectories) one policy-gradient step already
  helps: the post-update return beats the pre-update one by a clear margin (about 20 when it learns),
  and beats the first iteration's post-update return."""
  cfg = small('rl_navigation_maml', meta_batch_size=10, per_task=10, iterations=15)
  rl.trainer.train_rl(cfg, str(tmp_path))
  curve = json.loads((tmp_path / 'curve.json').read_text())
  assert [c['iteration'] for c in curve] == list(range(1, 16))
  last = curve[-5:]
  pre = np.mean([c['pre_return'] for c in last])
  post = np.mean([c['post_return'] for c in last])
  assert post > pre + 5, (pre, post)
  assert post > curve[0]['post_return'] + 5
  assert all(c['kl'] <= cfg.max_kl for c in curve)


def test_stop_request_saves_between_iterations_and_resumes_exactly(tmp_path, monkeypatch):
  """A signal during iteration 3 (checkpoints every 10) saves iteration 3 whole (theta, RNG, curve),
  and the resumed run equals an uninterrupted one."""
  cfg = small('rl_navigation_maml', iterations=4, checkpoint_every=10)
  rl.trainer.train_rl(cfg, str(tmp_path / 'a'))
  calls = []
  meta_batch = rl.trainer.meta_batch

  def signalled_on_third(*args):
    calls.append(1)
    if len(calls) == 3:
      utils.STOP(signal.SIGTERM)  # as main.py's handler, mid-iteration
    return meta_batch(*args)

  monkeypatch.setattr(rl.trainer, 'meta_batch', signalled_on_third)
  monkeypatch.setattr(utils, 'STOP', utils.StopRequest())
  assert rl.trainer.train_rl(cfg, str(tmp_path / 'b')) == 3
  assert (tmp_path / 'b' / 'ckpt-3.index').exists()
  monkeypatch.setattr(utils, 'STOP', utils.StopRequest())
  rl.trainer.train_rl(cfg, str(tmp_path / 'b'))
  a = json.loads((tmp_path / 'a' / 'curve.json').read_text())
  b = json.loads((tmp_path / 'b' / 'curve.json').read_text())
  assert a == b


@pytest.mark.parametrize('method', ['pretrained', 'oracle'])
def test_baselines_train_with_trpo_on_their_own_samples(tmp_path, method):
  cfg = small(f'rl_navigation_{method}', iterations=2)
  rl.trainer.train_rl(cfg, str(tmp_path))
  curve = json.loads((tmp_path / 'curve.json').read_text())
  assert len(curve) == 2 and all(c['post_return'] is None for c in curve)


def test_fig5_evaluation_and_report(tmp_path):
  """Every method evaluated after 0..3 steps (the oracle after 0), then the published-vs-reproduced
  table and plot; an untrained row is refused with the command that trains it."""
  for method in ('maml', 'pretrained', 'oracle'):
    cfg = small(f'rl_navigation_{method}', iterations=1)
    with pytest.raises(rl.trainer.RunError, match='train the row first'):
      rl.trainer.evaluate_rl(cfg, str(tmp_path / cfg.name))
    rl.trainer.train_rl(cfg, str(tmp_path / cfg.name))
  for method in experiments.RL_METHODS:
    cfg = small(f'rl_navigation_{method}', iterations=1 if method != 'random' else 0)
    result = rl.trainer.evaluate_rl(cfg, str(tmp_path / cfg.name))
    assert len(result['mean']) == (1 if method == 'oracle' else 4)
    assert np.array(result['per_task']).shape == (len(result['mean']), 3)
    assert result['published'] == list(cfg.published)
    if method == 'pretrained':  # its step size is tuned on validation tasks
      assert set(result['tuning']) == {f'{lr:g}' for lr in cfg.test_lr_grid}
      assert result['test_lr'] == max(cfg.test_lr_grid, key=lambda lr: result['tuning'][f'{lr:g}'])
  table = report.write_report('rl_navigation', str(tmp_path))
  assert table.count(' | 0..3 | ') == 3 and '-40.4 / -11.7 / -3.3 / -3.2' in table
  assert (tmp_path / 'figures' / 'fig5_navigation.png').exists()


def test_rl_rows_are_valid_and_round_trip():
  for cfg in experiments.RL_EXPERIMENTS.values():
    assert experiments.RLConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert len(cfg.published) == cfg.test_steps + 1
  with pytest.raises(experiments.ConfigError, match='random baseline'):
    experiments.get_rl('rl_navigation_random').replace(iterations=3)
  for eps in (0.0, -1.0, float('nan')):
    with pytest.raises(experiments.ConfigError, match='fd_hvp_eps'):
      experiments.get_rl('rl_navigation_maml').replace(fd_hvp_eps=eps)


@pytest.mark.parametrize('env', ['cheetah_vel', 'ant_dir'])
def test_mujoco_plumbing(tmp_path, env):
  """MAML-TRPO and the Fig. 5 evaluation run on the MuJoCo families (tiny batches: no learning)."""
  if rl.envs.mujoco is None:
    pytest.skip(f'the MuJoCo families need gymnasium[mujoco]: {rl.envs.MUJOCO_IMPORT_ERROR}')
  cfg = small(f'rl_{env}_maml', meta_batch_size=2, per_task=2, iterations=2, test_tasks=2)
  rl.trainer.train_rl(cfg, str(tmp_path))
  curve = json.loads((tmp_path / 'curve.json').read_text())
  assert len(curve) == 2
  assert all(np.isfinite(c['pre_return']) and np.isfinite(c['post_return']) for c in curve)
  assert all(c['kl'] <= cfg.max_kl for c in curve)
  result = rl.trainer.evaluate_rl(cfg, str(tmp_path))
  assert np.all(np.isfinite(result['mean'])) and len(result['mean']) == 4


def test_a_hand_picked_checkpoint_never_replaces_the_fig5_results(tmp_path):
  cfg = small('rl_navigation_maml', iterations=4, test_tasks=2)
  rl.trainer.train_rl(cfg, str(tmp_path))
  best = rl.trainer.evaluate_rl(cfg, str(tmp_path))
  read = lambda name: json.loads((tmp_path / 'results' / name).read_text())
  assert rl.trainer.evaluate_rl(cfg, str(tmp_path), test_iter=2)['iteration'] == 2
  assert rl.trainer.evaluate_rl(cfg, str(tmp_path), test_iter=-2)['iteration'] == 4
  assert read('fig5.json')['iteration'] == best['iteration']
  assert read('fig5.iter2.json')['iteration'] == 2 and read('fig5.iter4.json')['iteration'] == 4
  with pytest.raises(rl.trainer.RunError, match='no checkpoint of iteration 3'):
    rl.trainer.evaluate_rl(cfg, str(tmp_path), test_iter=3)


def test_resuming_with_another_configuration_is_refused(tmp_path):
  cfg = small('rl_navigation_maml', iterations=1)
  rl.trainer.train_rl(cfg, str(tmp_path))
  with pytest.raises(rl.trainer.RunError, match='another configuration'):
    rl.trainer.train_rl(cfg.replace(inner_lr=0.1, iterations=2), str(tmp_path))
