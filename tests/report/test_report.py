"""The sinusoid report on fake results files: figures written, Table 2 numbers, PASS/FAIL, errors."""

import dataclasses
import os
import pathlib
import re

import numpy as np
import pytest

import experiments
from experiments import ConfigError
import report
import utils

SHOTS = (5, 10, 20)
STEPS = list(range(11))
MAML, PRETRAINED, ORACLE, PAPER_ALPHA = experiments.SINUSOID_ROWS
# K=5 MSE after 1, 5 and 10 steps, distinct from every published value so the table shows which is which.
MAML_K5 = {1: 0.712, 5: 0.402, 10: 0.361}
PRETRAINED_K5 = {1: 2.468, 5: 2.251, 10: 2.205}


def curve(start: float, points: dict[int, float]) -> list[float]:
  """MSE after 0..10 steps: `start` at step 0, then through `points`, linear in between."""
  known = {0: start, **points}
  return np.interp(STEPS, sorted(known), [known[s] for s in sorted(known)]).tolist()


def write_results(logdir, row: str, shots: int, mean: list[float], update_lr: float = 0.01) -> None:
  """One evaluated run at one K, with the schema trainer.evaluate writes."""
  out = os.path.join(logdir, row, 'results')
  os.makedirs(out, exist_ok=True)
  ci95 = [0.01 * (s + 1) for s in STEPS]
  cfg = experiments.EXPERIMENTS[row]
  utils.write_json(os.path.join(out, f'test_K{shots}.json'), {
      'experiment': row, 'shots': shots, 'num_tasks': 600, 'metric': 'mse', 'update_lr': update_lr,
      'steps': STEPS, 'mean': mean, 'ci95': ci95, 'iteration': 70000,
      'published': [dict(dataclasses.asdict(p), reproduced=mean[p.step], reproduced_ci95=ci95[p.step])
                    for p in cfg.published if p.shots == shots]})
  rng = np.random.default_rng(shots)  # the plotting tasks depend on K only, as in data_generator
  x = np.linspace(-5, 5, 50)
  task = np.stack([rng.uniform(0.1, 5, 4), rng.uniform(0, np.pi, 4)], -1)
  y = task[:, :1] * np.sin(x - task[:, 1:])
  support_x = rng.uniform(-5, 5, (4, shots))
  np.savez(os.path.join(out, f'test_K{shots}_curves.npz'), x=x, y=y, support_x=support_x,
           support_y=task[:, :1] * np.sin(support_x - task[:, 1:]),
           pred=np.stack([y * s / 10 for s in STEPS]), task=task)


def write_all(logdir, maml_k5: dict[int, float] = MAML_K5, maml_start: float = 2.5,
              skip: str | None = None) -> None:
  """Fake results of every figure row at K = 5, 10, 20; MAML's K=5 curve passes through maml_k5."""
  for k in SHOTS:
    curves = {MAML: curve(maml_start, maml_k5) if k == 5 else curve(2.8, {10: 0.1 * k}),
              PRETRAINED: curve(2.9, PRETRAINED_K5) if k == 5 else curve(2.9, {10: 2.0}),
              ORACLE: [0.05] * len(STEPS), PAPER_ALPHA: curve(2.7, {10: 0.5})}
    lrs = {MAML: 0.001, PRETRAINED: 0.02, ORACLE: 0.0, PAPER_ALPHA: 0.01}
    for row in experiments.SINUSOID_ROWS:
      if row != skip:
        write_results(logdir, row, k, curves[row], lrs[row])


def target(table: str, tag: str) -> str:
  """The one target line of the table that holds `tag`, e.g. '(a)' or '(b) K=5'."""
  lines = [l for l in table.splitlines() if tag in l]
  assert len(lines) == 1, table
  return lines[0]


def test_report_writes_figures_and_table_with_reproduced_and_published_numbers(tmp_path, capsys):
  write_all(tmp_path)
  table = report.write_report('sinusoid', str(tmp_path))

  figures = tmp_path / 'figures'
  for name in ('fig2_sinusoid.png', 'fig3_sinusoid_k10.png', 'fig6_sinusoid.png'):
    data = (figures / name).read_bytes()
    assert data.startswith(b'\x89PNG') and len(data) > 10_000, name
  assert (figures / 'table2_sinusoid.md').read_text() == table
  for value in list(MAML_K5.values()) + list(PRETRAINED_K5.values()):
    assert f'{value:.3f} ± ' in table
  for row in (MAML, PRETRAINED):
    for p in experiments.EXPERIMENTS[row].published:
      assert f'| {p.value:g} |' in table, p
  assert re.search(r'\| MAML \| 0\.712 ± 0\.020 \| 0\.67 \|', table), table
  assert '| 0.35 |' in table
  out = capsys.readouterr().out
  assert table in out
  assert re.search(r'MAML +2\.500 +0\.712', out), out  # the per-K curves on the terminal


@pytest.mark.parametrize('after_10,verdict', [(0.361, 'PASS'), (0.41, 'PASS'), (0.29, 'PASS'),
                                              (0.43, 'FAIL'), (0.27, 'FAIL'), (0.7, 'FAIL')])
def test_target_a_is_maml_after_10_steps_within_20_percent_of_published(tmp_path, after_10, verdict):
  write_all(tmp_path, maml_k5={**MAML_K5, 10: after_10})
  line = target(report.write_report('sinusoid', str(tmp_path)), '(a)')
  assert line.startswith(f'- {verdict} (a)') and f'{after_10:.3f}' in line and '0.35' in line, line


def test_target_b_passes_when_maml_is_below_pretrained_at_every_step(tmp_path):
  write_all(tmp_path)
  table = report.write_report('sinusoid', str(tmp_path))
  assert target(table, '(b) K=5').startswith('- PASS (b) K=5')
  assert target(table, 'K=10:').startswith('- PASS')
  assert target(table, 'K=20:').startswith('- FAIL')  # fake MAML reaches 2.0 = pretrained at step 10


def test_target_b_fails_when_maml_is_not_below_pretrained_after_one_step(tmp_path):
  write_all(tmp_path, maml_k5={**MAML_K5, 1: PRETRAINED_K5[1]})
  line = target(report.write_report('sinusoid', str(tmp_path)), '(b) K=5')
  assert line.startswith('- FAIL (b) K=5') and 'step(s) 1 (2.468 vs 2.468)' in line, line


def test_target_b_does_not_judge_step_0_before_adaptation(tmp_path):
  write_all(tmp_path, maml_start=3.0)  # above pretrained's 2.9 before the update
  line = target(report.write_report('sinusoid', str(tmp_path)), '(b) K=5')
  assert line.startswith('- PASS (b) K=5') and '(step 0, before adaptation: 3.000 vs 2.900)' in line


def test_diverged_fine_tuning_fails_the_targets_and_is_reported(tmp_path):
  write_all(tmp_path)
  mean = curve(2.5, MAML_K5)[:8] + [float('inf')] * 3
  write_results(tmp_path, MAML, 5, mean, update_lr=0.01)
  path = tmp_path / MAML / 'results' / 'test_K5.json'
  summary = utils.read_json(path)
  summary.update(num_nonfinite=[0] * 8 + [2, 3, 3], median=[0.3] * 11)
  utils.write_json(str(path), summary)
  table = report.write_report('sinusoid', str(tmp_path))
  assert target(table, '(a)').startswith('- FAIL (a)')
  assert target(table, '(b) K=5').startswith('- FAIL (b) K=5')
  assert target(table, 'WARNING').startswith('- WARNING MAML K=5: fine-tuning diverged on 3 of 600 '
                                             'test tasks from step 8 on')


def test_missing_results_name_the_run_and_the_command(tmp_path):
  write_all(tmp_path, skip=PRETRAINED)
  with pytest.raises(ConfigError) as error:
    report.write_report('sinusoid', str(tmp_path))
  message = str(error.value)
  assert '\n' not in message
  assert PRETRAINED in message
  assert (f'python main.py --experiment={PRETRAINED} --train=False --test_set=True '
          f'--logdir={tmp_path}') in message
  assert not (tmp_path / 'figures').exists()  # nothing half-written


def test_unknown_group_lists_the_known_ones(tmp_path):
  with pytest.raises(ConfigError, match=r"unknown report group 'cifar'; choose one of: sinusoid, "):
    report.write_report('cifar', str(tmp_path))


def test_docs_embed_the_generated_experiments_table():
  page = (pathlib.Path(__file__).resolve().parents[2] / 'docs' / 'experiments.md').read_text()
  start, end = '<!-- experiments-table:start -->\n', '<!-- experiments-table:end -->'
  embedded = page.split(start, 1)[1].split(end, 1)[0]
  assert embedded == report.experiments_table(), (
      'docs/experiments.md is out of date: paste the output of python main.py --report=experiments')
  for name in experiments.EXPERIMENTS:
    assert f'`{name}`' in embedded


def write_accuracy(logdir, row: str, shots: int, accuracy: float, digest: str = 'abc',
                   transductive: bool | None = None) -> None:
  """A classification results file as trainer.evaluate writes it (accuracy flat over the steps)."""
  cfg = experiments.EXPERIMENTS[row]
  transductive = cfg.transductive if transductive is None else transductive
  out = os.path.join(logdir, row, 'results')
  os.makedirs(out, exist_ok=True)
  steps = cfg.test_num_updates + 1
  utils.write_json(os.path.join(out, utils.results_name('test', shots, transductive)), {
      'experiment': row, 'shots': shots, 'num_tasks': 600, 'metric': 'accuracy', 'iteration': 5,
      'mean': [accuracy] * steps, 'ci95': [0.5] * steps, 'tasks_sha256': digest,
      'transductive': transductive})


def test_methods_report_tables_every_method_and_draws_bars(tmp_path, capsys):
  rows = experiments.COMPARE_ROWS['omniglot']
  for i, row in enumerate(rows[:-1]):  # the last one not evaluated yet
    write_accuracy(tmp_path, row, 1, 90.0 + i)
  table = report.write_report('methods', str(tmp_path))
  for i, row in enumerate(rows[:-1]):
    line = next(l for l in table.splitlines() if f'`{row}`' in l)
    assert f'{90.0 + i:.2f} ± 0.50 (600 tasks)' in line
  published = experiments.get(rows[-1]).published[0].value  # the last row: published, not run
  assert re.search(rf'`{rows[-1]}`\) \| 0 \| — \| {published:g}', table)
  assert 'Meta-SGD (`omniglot_5way_1shot_meta_sgd`)' in table and 'All 600 test tasks identical' in table
  assert (tmp_path / 'figures' / 'methods_omniglot.png').stat().st_size > 10_000
  write_accuracy(tmp_path, rows[1], 1, 91.0, digest='other')
  with pytest.raises(ConfigError, match='saw different test tasks'):
    report.write_report('methods', str(tmp_path))


def test_reptile_report_shows_both_evaluation_modes_with_their_published_numbers(tmp_path):
  write_accuracy(tmp_path, 'omniglot_5way_reptile', 1, 95.0)                     # non-transductive
  write_accuracy(tmp_path, 'omniglot_5way_reptile', 1, 97.0, transductive=True)
  table = report.write_report('reptile', str(tmp_path))
  lines = [l for l in table.splitlines() if '`omniglot_5way_reptile`' in l and '| 1 |' in l]
  assert len(lines) == 2
  assert '(non-transductive)' in lines[0] and '95.00 ± 0.50' in lines[0] and '95.39' in lines[0]
  assert '(non-transductive)' not in lines[1] and '97.00 ± 0.50' in lines[1] and '97.68' in lines[1]
