"""End to end (all `slow`): the scripts in quick mode and the paper's numbers at full settings."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import experiments
import trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sinusoid_script_quick_mode(tmp_path):
  """The sinusoid script end to end (2 minutes: nine TensorFlow processes); the default run checks
  every script's calls in seconds (test_scripts.py)."""
  env = dict(os.environ, PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(['bash', str(ROOT / 'scripts' / 'sinusoid.sh'), '--quick',
                         f'--logdir={tmp_path}'], capture_output=True, text=True, env=env,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  for name in ('fig2_sinusoid.png', 'fig3_sinusoid_k10.png', 'fig6_sinusoid.png',
               'table2_sinusoid.md'):
    assert (tmp_path / 'figures' / name).exists(), name
  assert '| MAML |' in proc.stdout and 'total wall time' in proc.stdout
  for row in experiments.SINUSOID_ROWS:
    result = json.loads((tmp_path / row / 'results' / 'test_K5.json').read_text())
    assert result['num_tasks'] == 50 and len(result['mean']) == 11


@pytest.mark.slow
def test_sinusoid_maml_reproduces_table2_at_full_settings(tmp_path):
  """70k iterations each (about 2 minutes on 2 cores): MAML within 20% of the published 0.35 after
  10 steps at K=5, and below the pretrained baseline after every step."""
  results = {}
  for name in ('sinusoid_maml', 'sinusoid_pretrained'):
    cfg = experiments.get(name)
    trainer.train(cfg, str(tmp_path / name))
    results[name] = trainer.evaluate(cfg, str(tmp_path / name), shots=(5,))[0]['mean']
  maml, pretrained = results['sinusoid_maml'], results['sinusoid_pretrained']
  assert abs(maml[10] - 0.35) / 0.35 <= 0.2, maml
  assert all(m < p for m, p in zip(maml[1:], pretrained[1:])), (maml, pretrained)


@pytest.mark.slow
@pytest.mark.parametrize('script', ['rl_navigation.sh', 'rl_cheetah.sh', 'rl_ant.sh'])
def test_rl_scripts_quick_mode(tmp_path, script):
  """Every RL script end to end in quick mode (2-3 TRPO iterations per trained row)."""
  env = dict(os.environ, PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(['bash', str(ROOT / 'scripts' / script), '--quick', f'--logdir={tmp_path}'],
                        capture_output=True, text=True, env=env, timeout=3600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'Not evaluated yet' not in proc.stdout and 'total wall time' in proc.stdout


@pytest.mark.slow
def test_compare_methods_script_quick_mode(tmp_path):
  """Every Omniglot method of the comparison trained and evaluated by the script, then one table
  over the very same test tasks and the bar plot."""
  data = pathlib.Path(os.environ.get('MAML_SHARED_DATA') or ROOT.parent / 'shared' / 'data')
  if not (data / 'omniglot').exists():
    pytest.skip(f'real data absent: {data / "omniglot"}')
  env = dict(os.environ, PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL='3',
             MAML_TFDS_DIR=str(tmp_path / 'tfds'))
  proc = subprocess.run(['bash', str(ROOT / 'scripts' / 'compare_methods.sh'), '--quick',
                         f'--logdir={tmp_path}', f'--data_omniglot={data / "omniglot"}'],
                        capture_output=True, text=True, env=env, timeout=3600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'All 10 test tasks identical' in proc.stdout
  for row in experiments.COMPARE_ROWS['omniglot']:
    assert f'`{row}`) |' in proc.stdout and (tmp_path / row / 'results').is_dir(), row
  assert (tmp_path / 'figures' / 'methods_omniglot.png').exists()
