"""The committed results/: every row's folder is complete, its tested model re-evaluates to its
numbers, and the README's results tables are the ones generated from it."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import experiments
import report
import run_queue
import trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'results'
DONE = sorted(p.parent.name for p in RESULTS.glob('*/run.json')
              if json.loads(p.read_text())['done'])
SHARED = pathlib.Path(os.environ.get('MAML_SHARED_DATA') or ROOT.parent / 'shared' / 'data')
# Fields of a results file that name the machine's run, not the measurement.
RUN_FIELDS = ('commit', 'checkpoint')


def config_of(row):
  return experiments.config_type(row).from_dict(json.loads((RESULTS / row / 'config.json').read_text()))


def test_the_readme_tables_are_generated_from_results(capsys):
  readme = (ROOT / 'README.md').read_text()
  assert report.readme_section(readme) == report.readme_report(str(RESULTS)), (
      'README.md\'s results tables are out of date: replace the part between the markers with the '
      'output of python main.py --report=readme --logdir=results')


def test_the_readme_speed_section_is_generated_from_the_committed_comparison(capsys):
  readme = (ROOT / 'README.md').read_text()
  assert report.speed_section(readme) == report.speed_report(str(RESULTS)), (
      'README.md\'s speed section is out of date: replace the part between its markers with the '
      'output of python main.py --report=speed --logdir=results')


def test_the_sinusoid_rows_are_committed():
  assert set(experiments.SINUSOID_ROWS) <= set(DONE)


@pytest.mark.parametrize('row', DONE)
def test_a_done_row_holds_its_config_results_curve_and_tested_weights(row):
  folder = RESULTS / row
  info = json.loads((folder / 'run.json').read_text())
  assert info['trained_iterations'] == info['target_iterations'] == run_queue.target_iterations(row)
  assert not (folder / run_queue.SNAPSHOT_DIR).exists()
  cfg = config_of(row) if (folder / 'config.json').exists() else None
  random_policy = run_queue.is_rl(row) and experiments.get_rl(row).method == 'random'
  if not random_policy:
    assert cfg is not None and getattr(cfg, 'data_dir', None) is None  # no machine's path
    assert info['selection_rule'] == cfg.selection_rule
    assert (folder / 'train.csv').read_text().count('\n') > 1
    assert run_queue._latest_iteration(str(folder / run_queue.MODEL_DIR)) == info['tested_iteration']
  files = sorted((folder / 'results').glob('*.json'))
  assert files
  for path in files:
    result = json.loads(path.read_text())
    assert result['iteration'] == (info['tested_iteration'] or 0), path
    if not random_policy:
      assert result['selection_rule'] == info['selection_rule'], path
  # weights only: no optimizer slots, so a few hundred KB at most for the rows committed so far
  assert sum(f.stat().st_size for f in folder.rglob('*') if f.is_file()) < 2_000_000


def _reevaluate(tmp_path, row, *flags):
  """The README's re-evaluation command, on a copy of results/<row> (the committed files stay)."""
  shutil.copytree(RESULTS / row, tmp_path / row)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, 'main.py', f'--experiment={row}', '--train=False',
                         '--test_set=True', f'--logdir={tmp_path}', *flags], cwd=ROOT,
                        capture_output=True, text=True, env=env, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp_path / row / 'results'


@pytest.mark.parametrize('row', [r for r in experiments.SINUSOID_ROWS if r in DONE])
def test_a_committed_sinusoid_model_reevaluates_to_its_committed_results(tmp_path, row):
  out = _reevaluate(tmp_path, row)
  for path in sorted((RESULTS / row / 'results').glob('*.json')):
    committed, again = json.loads(path.read_text()), json.loads((out / path.name).read_text())
    for key in set(committed) | set(again):
      if key not in RUN_FIELDS:
        assert again.get(key) == committed.get(key), (path.name, key)


def test_a_committed_omniglot_model_reevaluates_to_its_numbers_on_the_first_tasks(tmp_path):
  rows = [r for r in DONE if r.startswith('omniglot_')]
  if not rows:
    pytest.skip('no Omniglot row in results/ yet')
  if not (SHARED / 'omniglot' / 'images_evaluation.zip').exists():
    pytest.skip(f'real data absent: {SHARED / "omniglot"} (set MAML_SHARED_DATA)')
  row, tasks = rows[0], 20
  cfg = config_of(row)
  out = _reevaluate(tmp_path, row, f'--num_test_tasks={tasks}', f'--data_dir={SHARED / "omniglot"}')
  for k in cfg.eval_shots:
    name = f'test_K{k}.json'
    committed = json.loads((RESULTS / row / 'results' / name).read_text())
    again = json.loads((out / f'test_K{k}.tasks{tasks}.json').read_text())
    first = committed['per_task'][:tasks]
    # the first tasks of the 600 are the same tasks; accuracy may differ by a rounding-level flip
    assert again['per_task'] == pytest.approx(first, abs=1e-4), name
    assert again['iteration'] == committed['iteration']


@pytest.mark.parametrize('row', [r for r in experiments.L2L_EXPERIMENTS if r in DONE])
def test_a_committed_lstm_optimizer_reevaluates_to_its_committed_curves(tmp_path, row):
  """The committed phi, restored from results/<row>/model/, and the baselines retuned give the
  committed mean loss of every optimizer at every step."""
  out = _reevaluate(tmp_path, row)
  committed = json.loads((RESULTS / row / 'results' / 'l2l.json').read_text())
  again = json.loads((out / 'l2l.json').read_text())
  assert again['order'] == committed['order']
  for name in committed['order']:
    assert again['optimizers'][name].get('lr') == committed['optimizers'][name].get('lr'), name
    assert again['optimizers'][name]['mean'] == pytest.approx(committed['optimizers'][name]['mean'],
                                                              rel=1e-4), name
