"""The report groups: `write_report(group, logdir)` prints a group's published-vs-reproduced table and
writes its figures to <logdir>/figures/ (`python main.py --report=<group> --logdir=<logdir>`).

The report only reads results; it never trains or evaluates. The group 'sinusoid' reads the files that
report/results.py describes and writes:

  fig2_sinusoid.png      paper Fig. 2: MAML and pretrained fits of one task after 0, 1 and 10 steps
  fig3_sinusoid_k10.png  paper Fig. 3: query MSE vs gradient steps at K = 10, with the oracle
  fig6_sinusoid.png      paper Fig. 6 (App. B): the same at K = 5, 10 and 20
  table2_sinusoid.md     paper App. C Table 2 (K = 5 MSE after 1, 5, 10 steps) and the target checks

The others: 'omniglot', 'miniimagenet' and one group per method's rows (paper Table 1 and the validation
curves), 'methods' (every method on the same tasks), 'rl_<env>' (paper Fig. 5), 'experiments' (the
experiments table), 'readme' (the README's results section, report/readme.py), 'speed' (the README's speed section
from results/speed/comparison.jsonl, report/speed.py) and one
per learned-optimizer row ('l2l_quadratic', 'l2l_mnist': Andrychowicz et al. 2016 Fig. 2/3).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Sequence

import numpy as np

import experiments
from experiments import ConfigError
import methods
from report import figures
from report.readme import readme_report
from report.speed import speed_report
from report.results import FIGURES_DIR, SINUSOID_SHOTS, SPLIT, load_results
from report.tables import curves_text, experiments_table, method_label, published_text, table2_markdown
import utils


def sinusoid_report(logdir: str) -> str:
  """Fig. 2, 3, 6 and App. C Table 2 of the sinusoid experiments; returns the table's markdown."""
  results = load_results(logdir, experiments.SINUSOID_ROWS, SINUSOID_SHOTS)
  out_dir = os.path.join(logdir, FIGURES_DIR)
  os.makedirs(out_dir, exist_ok=True)
  written = [figures.plot_fits(results, os.path.join(out_dir, 'fig2_sinusoid.png')),
             figures.plot_learning_curve(results, os.path.join(out_dir, 'fig3_sinusoid_k10.png')),
             figures.plot_learning_curves(results, os.path.join(out_dir, 'fig6_sinusoid.png'))]
  table = table2_markdown(results)
  table_path = os.path.join(out_dir, 'table2_sinusoid.md')
  with open(table_path, 'w') as f:
    f.write(table)
  written.append(table_path)
  print(curves_text(results), end='\n\n')
  print(table)
  print('wrote ' + ', '.join(written))
  return table


def table1_report(logdir: str, rows: Sequence[str], title: str) -> str:
  """Paper Table 1 for `rows`: accuracy at each row's report_step, reproduced ± 95% CI vs published.

  Rows or K values not evaluated yet show '—' (the image rows take hours each; any subset can be
  reported). Also lists the checkpoint evaluated, its iteration and the best validation accuracy, and
  draws the validation curves to <logdir>/figures/validation_<group>.png.
  """
  header = ('row', 'K', 'step', 'reproduced', 'published', 'iteration', 'best validation')
  lines = [f'# {title}', '', 'Accuracy (%) over the test tasks, mean ± 95% CI.', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  curves = {}
  for row in rows:
    cfg = experiments.EXPERIMENTS[row]
    val_path = os.path.join(logdir, row, 'validation.json')
    best = '—'
    if os.path.exists(val_path):
      curve = utils.read_json(val_path)['curve']
      curves[row] = sorted((int(k), v) for k, v in curve.items())
      best = f'{max(curve.values()):.2f}'
    for k in cfg.eval_shots:
      # The row's evaluation mode, then the other one if it was published or evaluated (Reptile).
      for transductive in (cfg.transductive, not cfg.transductive):
        path = os.path.join(logdir, row, 'results', utils.results_name(SPLIT, k, transductive))
        published = next((p for p in cfg.published if p.shots == k and p.step == cfg.report_step
                          and p.transductive == transductive), None)
        if transductive != cfg.transductive and published is None and not os.path.exists(path):
          continue
        pub = '—' if published is None else published_text(dataclasses.asdict(published))
        if os.path.exists(path):
          r = utils.read_json(path)
          step = cfg.report_step
          cells = [f'{r["mean"][step]:.2f} ± {r["ci95"][step]:.2f} ({r["num_tasks"]} tasks)',
                   pub, str(r['iteration'])]
        else:
          cells = ['—', pub, '—']
        label = f'`{row}`' + ('' if transductive else ' (non-transductive)')
        lines.append(f'| {label} | {k} | {cfg.report_step} | ' + ' | '.join(cells) + f' | {best} |')
  table = '\n'.join(lines) + '\n'
  if curves:
    out_dir = os.path.join(logdir, FIGURES_DIR)
    os.makedirs(out_dir, exist_ok=True)
    figures.plot_validation_curves(curves, title,
                                   os.path.join(out_dir, f'validation_{rows[0].split("_")[0]}.png'))
  print(table, end='')
  return table


def experiments_report(logdir: str) -> str:
  """Prints the experiments table (logdir unused: it reads experiments.py only)."""
  del logdir
  table = experiments_table()
  print(table, end='')
  return table


def rl_report(logdir: str, env: str) -> str:
  """Paper Fig. 5 for one task family: average return after 0..3 gradient steps of MAML, pretrained,
  random and oracle, reproduced ± 95% CI vs published, and the curves in <logdir>/figures/fig5_<env>.png.

  Methods not evaluated yet show '—' with the command that evaluates them.
  """
  header = ('method', 'steps', 'reproduced', 'published', 'iteration')
  lines = [f'# {env}: average return (paper Fig. 5)', '',
           'Mean over the test tasks ± 95% CI after 0, 1, 2, 3 policy-gradient steps.', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  curves, missing = [], []
  for method in experiments.RL_METHODS:
    name = f'rl_{env}_{method}'
    path = os.path.join(logdir, name, 'results', 'fig5.json')
    cfg = experiments.get_rl(name)
    published = ' / '.join(f'{v:g}' for v in cfg.published)
    if not os.path.exists(path):
      lines.append(f'| {method} | 0..{cfg.test_steps} | — | {published} | — |')
      missing.append(f'python main.py --experiment={name} --train=False --logdir={logdir}')
      curves.append((method, cfg.published, None, None))
      continue
    r = utils.read_json(path)
    mean, ci = np.array(r['mean']), np.array(r['ci95'])
    reproduced = ' / '.join(f'{m:.1f} ± {c:.1f}' for m, c in zip(mean, ci))
    lines.append(f'| {method} | 0..{len(mean) - 1} | {reproduced} | {published} | {r["iteration"]} |')
    curves.append((method, cfg.published, mean, ci))
  out_dir = os.path.join(logdir, FIGURES_DIR)
  os.makedirs(out_dir, exist_ok=True)
  written = figures.plot_fig5(env, curves, os.path.join(out_dir, f'fig5_{env}.png'))
  if missing:
    lines += ['', 'Not evaluated yet:'] + [f'- `{c}`' for c in missing]
  table = '\n'.join(lines) + '\n'
  print(table)
  print(f'wrote {written}')
  return table


L2L_LABELS = {'lstm': 'LSTM', 'sgd': 'SGD', 'rmsprop': 'RMSprop', 'adam': 'ADAM', 'nag': 'NAG'}


def l2l_report(run_dir: str) -> str:
  """A learned-optimizer run (Andrychowicz et al. 2016 Fig. 2/3): the mean loss of the LSTM and of
  each tuned baseline over the test problems at a few steps, and the curves in
  <logdir>/figures/<run>.png (logdir: run_dir's parent)."""
  path = os.path.join(run_dir, 'results', 'l2l.json')
  name = os.path.basename(os.path.normpath(run_dir))
  if not os.path.exists(path):
    raise ConfigError(f'no results in {path}: evaluate it first (python main.py --experiment='
                      f'{name.split(".")[0]} --train=False --test_set=True '
                      f'--logdir={os.path.dirname(run_dir) or "."})')
  r = utils.read_json(path)
  steps = sorted({0, r['steps'] // 4, r['steps'] // 2, r['steps']})
  header = ('optimizer', 'learning rate', *(f'step {t}' for t in steps))
  lines = [f'# {name}: optimizee loss (Andrychowicz et al. 2016)', '',
           f'Mean over {r["num_problems"]} test problems ± 95% CI; the LSTM meta-trained for '
           f'{r["iteration"]} optimizations, each baseline\'s learning rate tuned on '
           f'{r["tune_problems"]} other problems.', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  curves = {}
  for key in r['order']:  # the LSTM, then the baselines (the JSON's keys are sorted)
    o = r['optimizers'][key]
    label = L2L_LABELS.get(key, key)
    lr = f'{o["lr"]:g}' if 'lr' in o else 'learned'
    lines.append(f'| {label} | {lr} | ' + ' | '.join(
        f'{o["mean"][t]:.4g} ± {o["ci95"][t]:.2g}' for t in steps) + ' |')
    curves[label] = (np.array(o['mean']), np.array(o['ci95']))
  out_dir = os.path.join(os.path.dirname(run_dir), FIGURES_DIR)
  os.makedirs(out_dir, exist_ok=True)
  written = figures.plot_l2l(curves, f'{name}: loss vs steps ({r["num_problems"]} test problems)',
                             os.path.join(out_dir, f'{name}.png'))
  table = '\n'.join(lines) + '\n'
  print(table)
  print(f'wrote {written}')
  return table


def methods_report(logdir: str) -> str:
  """Every method of experiments.COMPARE_ROWS on the same 600 test tasks: one table per dataset
  (5-way 1-shot, accuracy at each row's reported step, ± 95% CI, published) and a bar plot with the
  CIs (<logdir>/figures/methods_<dataset>.png). Raises ConfigError if two evaluated rows of a
  dataset did not see the same tasks (their tasks_sha256 differ); rows not evaluated show '—'."""
  header = ('method (row)', 'step', 'reproduced', 'published', 'iteration')
  lines, written = [], []
  for dataset, rows in experiments.COMPARE_ROWS.items():
    lines += [f'# {dataset}: 5-way 1-shot, every method on the same test tasks', '',
              '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    bars, digests = [], {}
    for row in rows:
      cfg = experiments.EXPERIMENTS[row]
      path = os.path.join(logdir, row, 'results', utils.results_name(SPLIT, 1, cfg.transductive))
      published = next((p for p in cfg.published if p.shots == 1 and p.step == cfg.report_step
                        and p.transductive == cfg.transductive), None)
      pub = '—' if published is None else published_text(dataclasses.asdict(published))
      label = f'{method_label(cfg)}{"" if cfg.transductive else ", non-transductive"} (`{row}`)'
      if not os.path.exists(path):
        lines.append(f'| {label} | {cfg.report_step} | — | {pub} | — |')
        continue
      r = utils.read_json(path)
      digests[row] = (r.get('tasks_sha256'), r['num_tasks'])
      mean, ci = r['mean'][cfg.report_step], r['ci95'][cfg.report_step]
      bars.append((label.rsplit(' (`', 1)[0], mean, ci, None if published is None else published.value))
      lines.append(f'| {label} | {cfg.report_step} | {mean:.2f} ± {ci:.2f} ({r["num_tasks"]} tasks) '
                   f'| {pub} | {r["iteration"]} |')
    if len(set(digests.values())) > 1:
      raise ConfigError(f'{dataset}: the evaluated rows saw different test tasks '
                        f'({", ".join(f"{k}: {v[1]} tasks, {str(v[0])[:8]}" for k, v in digests.items())}); '
                        're-evaluate them with the same --num_test_tasks')
    if digests:
      lines += ['', f'All {next(iter(digests.values()))[1]} test tasks identical across rows '
                f'(sha256 of their images {str(next(iter(digests.values()))[0])[:12]}).']
    lines.append('')
    if bars:
      out_dir = os.path.join(logdir, FIGURES_DIR)
      os.makedirs(out_dir, exist_ok=True)
      written.append(figures.plot_method_bars(bars, dataset, os.path.join(out_dir, f'methods_{dataset}.png')))
  table = '\n'.join(lines)
  print(table)
  if written:
    print('wrote ' + ', '.join(written))
  return table


def _method_group(method: str, title: str):
  return lambda logdir: table1_report(logdir, experiments.METHOD_ROWS[method], title)


GROUPS: dict[str, Callable[[str], str]] = {
    'sinusoid': sinusoid_report,
    'omniglot': lambda logdir: table1_report(logdir, experiments.OMNIGLOT_ROWS,
                                             'Omniglot (paper Table 1)'),
    'miniimagenet': lambda logdir: table1_report(logdir, experiments.MINIIMAGENET_ROWS,
                                                 'MiniImagenet (paper Table 1)'),
    # one group per experiments.METHOD_ROWS key, titled by the method that declares it
    **{group: _method_group(group, title) for group, title in methods.report_groups().items()},
    'methods': methods_report,
    'experiments': experiments_report,
    'readme': readme_report,
    'speed': speed_report,
    **{f'rl_{env}': functools.partial(rl_report, env=env) for env in experiments.RL_ENVS},
    **{row: lambda logdir, row=row: l2l_report(os.path.join(logdir, row))
       for row in experiments.L2L_EXPERIMENTS},
}


def write_report(group: str, logdir: str) -> str:
  """Writes the figures and table of `group` under <logdir>/figures and prints them.

  Returns the markdown table. Raises ConfigError for an unknown group or a missing results file.
  """
  if group not in GROUPS:
    raise ConfigError(f'unknown report group {group!r}; choose one of: {", ".join(GROUPS)}')
  return GROUPS[group](logdir)
