"""Figures and the published-vs-reproduced table of a group of evaluated runs: `write_report`.

The report only reads results; it never trains or evaluates. For the group 'sinusoid' it reads, for
every row of `experiments.SINUSOID_ROWS`, the files `trainer.evaluate` writes with
`python main.py --experiment=<row> --train=False --test_set=True --logdir=<logdir>`:

  <logdir>/<row>/results/test_K<K>.json         query MSE after 0..10 steps, 95% CI, published values
  <logdir>/<row>/results/test_K<K>_curves.npz   predictions on a grid for a few fixed plotting tasks

and writes to <logdir>/figures/:

  fig2_sinusoid.png      paper Fig. 2: MAML and pretrained fits of one task after 0, 1 and 10 steps
  fig3_sinusoid_k10.png  paper Fig. 3: query MSE vs gradient steps at K = 10, with the oracle
  fig6_sinusoid.png      paper Fig. 6 (App. B): the same at K = 5, 10 and 20
  table2_sinusoid.md     paper App. C Table 2 (K = 5 MSE after 1, 5, 10 steps) and the target checks

Published numbers come from the results files (which copy them from experiments.py), never from here.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
from typing import Callable, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

import benchmark
import experiments
from experiments import ConfigError
import methods
import utils

SPLIT = 'test'
FIGURES_DIR = 'figures'
SINUSOID_SHOTS = (5, 10, 20)     # every K the sinusoid report reads (Fig. 6)
FIG2_SHOTS = (5, 10)             # Fig. 2 columns
FIG3_SHOTS = 10                  # Fig. 3
TABLE2_SHOTS = 5                 # App. C Table 2
TARGET_STEP = 10                 # target (a): MAML after this many steps...
TARGET_TOLERANCE = 0.2           # ...within this relative distance of the published MSE
PLOT_TASK = 0                    # the plotting task of Fig. 2 (the same task for every model)
SUPPORT_COLOR = 'purple'
MAML_ROW, PRETRAINED_ROW, ORACLE_ROW, PAPER_ALPHA_ROW = experiments.SINUSOID_ROWS
TABLE2_ROWS = (MAML_ROW, PAPER_ALPHA_ROW, PRETRAINED_ROW)
LABELS = {MAML_ROW: 'MAML', PRETRAINED_ROW: 'pretrained', ORACLE_ROW: 'oracle',
          PAPER_ALPHA_ROW: 'MAML, paper alpha'}
COLORS = {MAML_ROW: 'tab:red', PRETRAINED_ROW: 'tab:blue', ORACLE_ROW: 'tab:gray'}


@dataclasses.dataclass(frozen=True)
class Result:
  """One evaluated run at one K: the results JSON (`summary`) and the plotting curves (npz arrays)."""
  row: str
  shots: int
  summary: Mapping
  curves: Mapping[str, np.ndarray]

  @property
  def steps(self) -> np.ndarray:
    return np.asarray(self.summary['steps'])

  @property
  def mean(self) -> np.ndarray:
    return np.asarray(self.summary['mean'], dtype=np.float64)

  @property
  def ci95(self) -> np.ndarray:
    return np.asarray(self.summary['ci95'], dtype=np.float64)

  @property
  def update_lr(self) -> float:
    return float(self.summary['update_lr'])

  def published(self, step: int) -> Mapping | None:
    """The published entry for `step` at this K, or None if the paper gives none."""
    for p in self.summary['published']:
      if p['shots'] == self.shots and p['step'] == step:
        return p
    return None


Results = Mapping[tuple[str, int], Result]


def eval_command(row: str, logdir: str) -> str:
  return f'python main.py --experiment={row} --train=False --test_set=True --logdir={logdir}'


def load_result(logdir: str, row: str, shots: int) -> Result:
  """Reads <logdir>/<row>/results/test_K<shots>{.json,_curves.npz}; ConfigError says how to make them."""
  results_dir = os.path.join(logdir, row, 'results')
  paths = [os.path.join(results_dir, f'{SPLIT}_K{shots}.json'),
           os.path.join(results_dir, f'{SPLIT}_K{shots}_curves.npz')]
  for path in paths:
    if not os.path.exists(path):
      raise ConfigError(f'missing {path}: evaluate run {row} first with: {eval_command(row, logdir)}')
  with np.load(paths[1]) as npz:
    curves = {k: npz[k] for k in npz.files}
  return Result(row, shots, utils.read_json(paths[0]), curves)


def load_results(logdir: str, rows: Sequence[str], shots: Sequence[int]) -> dict[tuple[str, int], Result]:
  """Every (row, K) result, read before anything is drawn so a missing run fails fast."""
  return {(row, k): load_result(logdir, row, k) for row in rows for k in shots}


# --- figures ------------------------------------------------------------------------------------

def _save(fig: Figure, path: str) -> str:
  # An explicit Agg canvas: headless, and no pyplot global state to leak figures between calls.
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  return path


def plot_fits(results: Results, path: str) -> str:
  """Paper Fig. 2: a 2x2 grid, MAML (top) and pretrained (bottom) at K = 5 and 10 (columns).

  Each panel shows, for plotting task PLOT_TASK, the ground truth, the prediction before the update
  (step 0), after 1 and after the last (10) gradient steps, and the K support points (purple
  triangles). The title gives the test step size. All panels show the same task at a given K,
  because the plotting tasks depend only on the evaluation seed and K.
  """
  fig = Figure(figsize=(10, 7.5))
  axes = fig.subplots(2, len(FIG2_SHOTS), sharex=True, squeeze=False)
  for col, k in enumerate(FIG2_SHOTS):
    tasks = {row: results[row, k].curves['task'][PLOT_TASK] for row in (MAML_ROW, PRETRAINED_ROW)}
    if not np.allclose(tasks[MAML_ROW], tasks[PRETRAINED_ROW]):
      raise ConfigError(f'the K={k} plotting tasks of {MAML_ROW} and {PRETRAINED_ROW} differ '
                        f'({tasks[MAML_ROW]} vs {tasks[PRETRAINED_ROW]}): evaluate both with the same '
                        'eval_seed')
    for row_index, row in enumerate((MAML_ROW, PRETRAINED_ROW)):
      r, ax = results[row, k], axes[row_index, col]
      c = r.curves
      last = c['pred'].shape[0] - 1
      ax.plot(c['x'], c['y'][PLOT_TASK], color='red', lw=2, label='ground truth')
      ax.plot(c['x'], c['pred'][0, PLOT_TASK], ':', color='limegreen', lw=2, label='pre-update')
      ax.plot(c['x'], c['pred'][1, PLOT_TASK], '--', color='tab:green', lw=1.5, label='1 grad step')
      ax.plot(c['x'], c['pred'][last, PLOT_TASK], '--', color='darkgreen', lw=2,
              label=f'{last} grad steps')
      ax.plot(c['support_x'][PLOT_TASK], c['support_y'][PLOT_TASK], '^', color=SUPPORT_COLOR,
              markersize=9, linestyle='none', label='used for grad')
      amp, phase = c['task'][PLOT_TASK]
      ax.set_title(f'{LABELS[row]}, K={k}, step size {r.update_lr:g}\n'
                   f'task A={amp:.2f}, phase={phase:.2f}', fontsize=10)
      ax.grid(alpha=0.3)
  axes[0, 0].legend(loc='best', fontsize=8)
  fig.suptitle('Sinusoid regression: few-shot adaptation of MAML and the pretrained model (paper Fig. 2)')
  return _save(fig, path)


def _plot_mse_curves(ax, results: Results, shots: int) -> None:
  """Query MSE vs gradient steps of every model at K = `shots`, with 95% CI bands."""
  for row in experiments.SINUSOID_FIGURE_ROWS:
    r = results[row, shots]
    step_size = f'step size {r.update_lr:g}' if r.update_lr else 'not fine-tuned'
    ax.plot(r.steps, r.mean, 'o-', color=COLORS[row], markersize=4, label=f'{LABELS[row]}, {step_size}')
    ax.fill_between(r.steps, r.mean - r.ci95, r.mean + r.ci95, color=COLORS[row], alpha=0.2)
  ax.set_title(f'K={shots} ({results[MAML_ROW, shots].summary["num_tasks"]} test tasks)')
  ax.set_xlabel('number of gradient steps')
  ax.set_ylabel('mean squared error')
  ax.set_ylim(bottom=-0.03 * ax.get_ylim()[1])  # lifts the oracle's near-zero curve off the axis line
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)


def plot_learning_curve(results: Results, path: str) -> str:
  """Paper Fig. 3: query MSE after 0..10 gradient steps at K = 10, MAML vs pretrained vs oracle."""
  fig = Figure(figsize=(6, 4.5))
  ax = fig.subplots()
  _plot_mse_curves(ax, results, FIG3_SHOTS)
  fig.suptitle('Sinusoid: MSE vs gradient steps at meta-test (paper Fig. 3)')
  return _save(fig, path)


def plot_learning_curves(results: Results, path: str) -> str:
  """Paper Fig. 6 (App. B): the Fig. 3 curves for K = 5, 10 and 20 side by side."""
  fig = Figure(figsize=(5 * len(SINUSOID_SHOTS), 4.5))
  axes = fig.subplots(1, len(SINUSOID_SHOTS), squeeze=False)[0]
  for ax, k in zip(axes, SINUSOID_SHOTS):
    _plot_mse_curves(ax, results, k)
  fig.suptitle('Sinusoid: MSE vs gradient steps for K = 5, 10, 20 (paper Fig. 6)')
  return _save(fig, path)


# --- tables -------------------------------------------------------------------------------------

def _published_text(p: Mapping | None) -> str:
  if p is None:
    return '—'
  return f'{p["value"]:g}' + (f' ± {p["ci95"]:g}' if p.get('ci95') is not None else '')


def table2_markdown(results: Results) -> str:
  """Paper App. C Table 2: MAML and pretrained MSE at K = 5 after the published numbers of steps.

  Columns are the steps that have published values; each holds the reproduced mean ± 95% CI and,
  next to it, the published value. Below come the target checks (`target_lines`).
  """
  rows = TABLE2_ROWS
  steps = sorted({p['step'] for row in rows for p in results[row, TABLE2_SHOTS].summary['published']
                  if p['shots'] == TABLE2_SHOTS})
  if not steps:
    raise ConfigError(f'the K={TABLE2_SHOTS} results of {", ".join(rows)} hold no published values; '
                      're-evaluate them with the current experiments.py')
  maml = results[MAML_ROW, TABLE2_SHOTS]
  header = ['model'] + [f'{s} step{"s" * (s != 1)}: {name}' for s in steps
                        for name in ('reproduced', 'published')]
  lines = [
      f'# Sinusoid regression, K={TABLE2_SHOTS}: query MSE (paper App. C Table 2)',
      '',
      f'Reproduced: mean ± 95% CI over {maml.summary["num_tasks"]} test tasks. '
      + '; '.join(f'{LABELS[row]}: checkpoint iteration {results[row, TABLE2_SHOTS].summary["iteration"]}, '
                  f'test step size {results[row, TABLE2_SHOTS].update_lr:g}' for row in rows) + '.',
      '',
      '| ' + ' | '.join(header) + ' |',
      '|' + '---|' * len(header),
  ]
  for row in rows:
    r = results[row, TABLE2_SHOTS]
    cells = [LABELS[row]]
    for s in steps:
      cells += [f'{_num(r.mean[s], 3)} ± {_num(r.ci95[s], 3)}', _published_text(r.published(s))]
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', '## Targets', ''] + target_lines(results) + ['']
  warnings = divergence_lines(results)
  if warnings:
    lines += ['## Warnings', ''] + warnings + ['']
  return '\n'.join(lines)


def target_lines(results: Results) -> list[str]:
  """The reproduction targets, each a markdown bullet starting with PASS or FAIL.

  (a) MAML's K=5 MSE after TARGET_STEP steps is within TARGET_TOLERANCE (relative) of the published
      value. (b) MAML's MSE is below pretrained's after every gradient step 1..10, at K=5 (the target)
      and, for information, at the other K. Step 0 (no adaptation yet) is shown but not judged: both
      models then predict about the mean over tasks, and their MSEs tie within the CI.
  """
  maml = results[MAML_ROW, TABLE2_SHOTS]
  published = maml.published(TARGET_STEP)
  if published is None:
    raise ConfigError(f'{MAML_ROW} K={TABLE2_SHOTS} results hold no published value for step '
                      f'{TARGET_STEP}; re-evaluate it with the current experiments.py')
  value, reproduced = published['value'], maml.mean[TARGET_STEP]
  relative = abs(reproduced - value) / value
  lines = [f'- {_verdict(relative <= TARGET_TOLERANCE)} (a) MAML K={TABLE2_SHOTS} MSE after '
           f'{TARGET_STEP} steps {reproduced:.3f} vs published {value:g}: off by {relative:.1%} '
           f'(tolerance {TARGET_TOLERANCE:.0%})']
  for k in SINUSOID_SHOTS:
    m, p = results[MAML_ROW, k], results[PRETRAINED_ROW, k]
    if not np.array_equal(m.steps, p.steps):
      raise ConfigError(f'K={k}: {MAML_ROW} and {PRETRAINED_ROW} were evaluated for different steps '
                        f'({m.steps.tolist()} vs {p.steps.tolist()}); re-evaluate them alike')
    worse = [f'{s} ({a:.3f} vs {b:.3f})' for s, a, b in zip(m.steps, m.mean, p.mean)
             if s > 0 and not a < b]
    detail = (f'MAML below pretrained after every step 1..{m.steps[-1]}' if not worse else
              f'MAML not below pretrained at step(s) {", ".join(worse)}')
    detail += f' (step 0, before adaptation: {m.mean[0]:.3f} vs {p.mean[0]:.3f})'

    tag = '(b)' if k == TABLE2_SHOTS else '(b, for information)'
    lines.append(f'- {_verdict(not worse)} {tag} K={k}: {detail}')
  return lines


def divergence_lines(results: Results) -> list[str]:
  """A warning for every run whose fine-tuning diverged (NaN/Inf MSE) on some test tasks."""
  lines = []
  for (row, k), r in results.items():
    counts = r.summary.get('num_nonfinite')  # absent from results written before it was recorded
    if counts and max(counts):
      first = next(s for s, n in zip(r.steps, counts) if n)
      lines.append(f'- WARNING {LABELS[row]} K={k}: fine-tuning diverged on {max(counts)} of '
                   f'{r.summary["num_tasks"]} test tasks from step {first} on, so the mean is not '
                   f'finite there (median after {r.steps[-1]} steps: {r.summary["median"][-1]:.3f})')
  return lines


def _verdict(ok: bool) -> str:
  return 'PASS' if ok else 'FAIL'


def curves_text(results: Results) -> str:
  """The MSE after 0..10 steps of every model and K as plain-text tables (for the terminal)."""
  width = max(len(label) for label in LABELS.values()) + 2
  blocks = []
  for k in SINUSOID_SHOTS:
    first = results[MAML_ROW, k]
    lines = [f'K={k}: query MSE after 0..{first.steps[-1]} gradient steps '
             f'({first.summary["num_tasks"]} test tasks)',
             'step'.ljust(width) + ''.join(f'{s:>11d}' for s in first.steps)]
    for row in experiments.SINUSOID_ROWS:
      # fixed-width columns, scientific where a diverged task makes the mean too wide for them
      lines.append(LABELS[row].ljust(width) + ''.join(f'{_num(v, 3):>11}' for v in results[row, k].mean))
    blocks.append('\n'.join(lines))
  return '\n\n'.join(blocks)


# --- groups -------------------------------------------------------------------------------------

def sinusoid_report(logdir: str) -> str:
  """Fig. 2, 3, 6 and App. C Table 2 of the sinusoid experiments; returns the table's markdown."""
  results = load_results(logdir, experiments.SINUSOID_ROWS, SINUSOID_SHOTS)
  out_dir = os.path.join(logdir, FIGURES_DIR)
  os.makedirs(out_dir, exist_ok=True)
  written = [plot_fits(results, os.path.join(out_dir, 'fig2_sinusoid.png')),
             plot_learning_curve(results, os.path.join(out_dir, 'fig3_sinusoid_k10.png')),
             plot_learning_curves(results, os.path.join(out_dir, 'fig6_sinusoid.png'))]
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
        pub = '—' if published is None else _published_text(dataclasses.asdict(published))
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
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for row, points in curves.items():
      ax.plot(*zip(*points), label=row)
    ax.set_xlabel('meta-training iteration')
    ax.set_ylabel('validation accuracy (%)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f'{title}: validation accuracy during training')
    _save(fig, os.path.join(out_dir, f'validation_{rows[0].split("_")[0]}.png'))
  print(table, end='')
  return table


def experiments_table() -> str:
  """The experiments table as markdown, one line per row (the README embeds it; a test keeps them equal)."""
  header = ('row', 'method', 'N', 'K train (test)', 'alpha', 'steps train/test', 'meta-batch',
            'beta', 'iterations', 'first order', 'published')
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for cfg in experiments.EXPERIMENTS.values():
    iterations = (f'{cfg.pretrain_iterations:,} pretrain' if cfg.pretrain_iterations else '')
    iterations += (' + ' if cfg.pretrain_iterations and cfg.metatrain_iterations else '')
    iterations += f'{cfg.metatrain_iterations:,} meta' if cfg.metatrain_iterations else ''
    if cfg.model_from:
      iterations = f'the model of `{cfg.model_from}`'
    alpha = f'{cfg.update_lr:g}'
    if cfg.test_update_lr_grid:
      alpha = 'tuned at test from ' + ', '.join(f'{a:g}' for a in cfg.test_update_lr_grid)
    elif cfg.test_update_lr is not None:
      alpha = f'{cfg.test_update_lr:g} at test'
    if not methods.get(cfg).inner_loop:  # no inner loop, no step size
      alpha, steps = '—', '— / —'
    elif not cfg.metatrain_iterations:
      steps = f'— / {cfg.test_num_updates}'
    else:
      steps = f'{cfg.num_updates} / {cfg.test_num_updates}'
    published = '; '.join(
        f'K={k}: ' + ' / '.join(f'{p.value:g}' + ('' if p.transductive else ' (non-transductive)')
                                for p in cfg.published if p.shots == k) + ' after '
        + '/'.join(str(p.step) for p in cfg.published if p.shots == k) + ' steps'
        for k in sorted({p.shots for p in cfg.published})) or '—'
    shots = ', '.join(map(str, cfg.eval_shots))
    lines.append(f'| `{cfg.name}` | {method_label(cfg)} | {cfg.num_classes} | '
                 f'{cfg.update_batch_size} ({shots}) | {alpha} | '
                 f'{steps} | {cfg.meta_batch_size} | {cfg.meta_lr:g} | {iterations} | '
                 f'{"yes" if cfg.stop_grad else "no"} | {published} |')
  header = ('RL row', 'alpha (inner)', 'meta-batch', 'trajectories per task', 'TRPO delta',
            'TRPO iterations', 'test: tasks x trajectories, step sizes',
            'published return after 0..3 steps')
  lines += ['', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for cfg in experiments.RL_EXPERIMENTS.values():
    alpha = f'{cfg.inner_lr:g}' if cfg.method == 'maml' else '—'
    later = f', then {cfg.test_lr * cfg.test_later_lr_factor:g}' if cfg.test_steps > 1 else ''
    first = (f'tuned from {", ".join(f"{lr:g}" for lr in cfg.test_lr_grid)}' if cfg.test_lr_grid
             else f'{cfg.test_lr:g}{later}')
    test = f'{cfg.test_tasks} x {cfg.test_per_task}, ' + (first if cfg.test_steps else 'no step')
    trpo = f'{cfg.max_kl:g}' if cfg.iterations else '—'
    lines.append(f'| `{cfg.name}` | {alpha} | {cfg.meta_batch_size} | {cfg.per_task} | {trpo} | '
                 f'{cfg.iterations or "—"} | {test} | '
                 f'{" / ".join(f"{v:g}" for v in cfg.published)} |')
  return '\n'.join(lines) + '\n'


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
  fig = Figure(figsize=(5, 3.5))
  ax = fig.add_subplot()
  missing = []
  for i, method in enumerate(experiments.RL_METHODS):
    color = f'C{i}'  # one colour per method for its curve and its published one
    name = f'rl_{env}_{method}'
    path = os.path.join(logdir, name, 'results', 'fig5.json')
    cfg = experiments.get_rl(name)
    published = ' / '.join(f'{v:g}' for v in cfg.published)
    if len(cfg.published) == 1:
      ax.axhline(cfg.published[0], color=color, linestyle='--', linewidth=1)
    elif cfg.published:
      ax.plot(range(len(cfg.published)), cfg.published, color=color, linestyle='--', marker='x',
              linewidth=1)
    if not os.path.exists(path):
      lines.append(f'| {method} | 0..{cfg.test_steps} | — | {published} | — |')
      missing.append(f'python main.py --experiment={name} --train=False --logdir={logdir}')
      continue
    r = utils.read_json(path)
    mean, ci = np.array(r['mean']), np.array(r['ci95'])
    reproduced = ' / '.join(f'{m:.1f} ± {c:.1f}' for m, c in zip(mean, ci))
    lines.append(f'| {method} | 0..{len(mean) - 1} | {reproduced} | {published} | {r["iteration"]} |')
    steps = np.arange(len(mean))
    if len(mean) == 1:  # the oracle is evaluated once and drawn flat, as Fig. 5
      ax.axhline(mean[0], color=color, label=method)
    else:
      ax.plot(steps, mean, color=color, marker='o', label=method)
      ax.fill_between(steps, mean - ci, mean + ci, color=color, alpha=0.2)
  ax.set_xlabel('number of gradient steps')
  ax.set_xticks(range(4))
  ax.set_ylabel('average return')
  ax.set_title(f'{env}: this repo (± 95% CI) and published (dashed)', fontsize='medium')
  handles, _ = ax.get_legend_handles_labels()
  ax.legend(handles=handles + [Line2D([], [], color='black', linestyle='--', marker='x', linewidth=1,
                                      label='published')], fontsize='small')
  out_dir = os.path.join(logdir, FIGURES_DIR)
  os.makedirs(out_dir, exist_ok=True)
  written = _save(fig, os.path.join(out_dir, f'fig5_{env}.png'))
  if missing:
    lines += ['', 'Not evaluated yet:'] + [f'- `{c}`' for c in missing]
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
      pub = '—' if published is None else _published_text(dataclasses.asdict(published))
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
      fig = Figure(figsize=(1.2 * len(bars) + 2, 4))
      ax = fig.subplots()
      x = np.arange(len(bars))
      ax.bar(x, [b[1] for b in bars], yerr=[b[2] for b in bars], capsize=4, label='this repo')
      pubs = [(i, b[3]) for i, b in enumerate(bars) if b[3] is not None]
      if pubs:
        ax.scatter(*zip(*pubs), color='tab:red', marker='D', s=30, zorder=3, label='published')
      ax.set_xticks(x, [b[0] for b in bars], rotation=20, fontsize=8)
      ax.set_ylabel('test accuracy (%)')
      low = min(b[1] - b[2] for b in bars)
      ax.set_ylim(max(0.0, low - 10), 100)
      ax.legend(fontsize=8)
      ax.set_title(f'{dataset}, 5-way 1-shot: mean ± 95% CI')
      out_dir = os.path.join(logdir, FIGURES_DIR)
      os.makedirs(out_dir, exist_ok=True)
      written.append(_save(fig, os.path.join(out_dir, f'methods_{dataset}.png')))
  table = '\n'.join(lines)
  print(table)
  if written:
    print('wrote ' + ', '.join(written))
  return table


def method_label(cfg: experiments.Config) -> str:
  """A short name of a row's method (MAML variants by their fields): its method's label()."""
  return methods.get(cfg).label()


# --- the README's results tables, generated from results/ ---------------------------------------

NOT_KEPT = 'not_kept.csv'  # results/: cells measured before results/ existed, whose models are gone
README_BEGIN = '<!-- results: generated by python main.py --report=readme --logdir=results; do not edit by hand -->'
README_END = '<!-- /results -->'


def _overlap(mean: float, ci: float, value: float, value_ci: float | None) -> bool:
  """Do the reproduced and published 95% CIs overlap (a published number without CI: a point)?"""
  return abs(mean - value) <= ci + (value_ci or 0.0)


def _num(v: float, digits: int) -> str:
  """Fixed digits, or scientific where that would be wider than a table column (a diverged task)."""
  return f'{v:.{digits}f}' if abs(v) < 1e4 else f'{v:.{digits}e}'


def _measured(values, cis, published, digits: int) -> str:
  """'m ± c / ...' with each value bold where its CI overlaps the published one's."""
  cells = []
  for i, (m, c) in enumerate(zip(values, cis)):
    text = f'{_num(m, digits)} ± {_num(c, digits)}'
    p = published[i] if published and i < len(published) else None
    cells.append(f'**{text}**' if p is not None and np.isfinite(m) and _overlap(m, c, *p) else text)
  return ' / '.join(cells)


def _kilo(n: int | None) -> str:
  return '—' if n is None else f'{n / 1000:g}k' if n >= 1000 else str(n)


class _Evidence:
  """What results/ holds for a row: its run.json, result JSONs, or a cell whose model was not kept."""

  def __init__(self, results_dir: str):
    self.dir = results_dir
    self.not_kept = {}
    path = os.path.join(results_dir, NOT_KEPT)
    if os.path.exists(path):
      with open(path, newline='') as f:
        for r in csv.DictReader(f):
          self.not_kept[r['row'], r['shots'], r['transductive']] = r

  def run(self, row: str) -> Mapping | None:
    path = os.path.join(self.dir, row, 'run.json')
    return utils.read_json(path) if os.path.exists(path) else None

  def result(self, row: str, name: str) -> Mapping | None:
    run = self.run(row)
    path = os.path.join(self.dir, row, 'results', name)
    return utils.read_json(path) if run and run.get('done') and os.path.exists(path) else None

  def trained(self, row: str, target: int, legacy: Mapping | None = None) -> str:
    run = self.run(row)
    if run and run.get('done'):
      return f'{_kilo(run["trained_iterations"])} of {_kilo(target)}'
    if legacy:
      rerun = f'; rerun at {_kilo(run["trained_iterations"])}' if run else ''
      return f'{_kilo(int(legacy["trained"]))} of {_kilo(target)}{rerun}'
    if run:  # a run in progress: how far its committed snapshot got
      return f'in progress ({_kilo(run["trained_iterations"])} of {_kilo(target)})'
    return f'— of {_kilo(target)}'

  def link(self, row: str, legacy: Mapping | None = None) -> str:
    if self.run(row) and self.run(row).get('done'):
      return f'[results/{row}](results/{row}/)'
    if legacy:
      return f'model not kept ({legacy["commit"]}{", " + legacy["note"] if legacy["note"] else ""})'
    return 'not run yet'


def _image_lines(ev: _Evidence, rows: Sequence[str]) -> list[str]:
  header = ('benchmark', 'method', 'row', 'published', 'this repo', 'trained (iterations of the paper\'s)',
            'evidence')
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for row in rows:
    cfg = experiments.EXPERIMENTS[row]
    for p in cfg.published:
      if p.step != cfg.report_step:
        continue
      bench = (f'{"Omniglot" if cfg.datasource == "omniglot" else "MiniImagenet"} '
               f'{cfg.num_classes}-way {p.shots}-shot')
      method = method_label(cfg) + ('' if p.transductive else ', non-transductive')
      method += f', after {p.step} step{"s" * (p.step != 1)}' if p.step else ''
      if cfg.update_batch_size != p.shots:
        method += f' (trained at K={cfg.update_batch_size})'
      published = _published_text(dataclasses.asdict(p))
      r = ev.result(row, utils.results_name(SPLIT, p.shots, p.transductive))
      legacy = None if r else ev.not_kept.get((row, str(p.shots), str(p.transductive)))
      if r:
        repo = _measured([r['mean'][p.step]], [r['ci95'][p.step]], [(p.value, p.ci95)], 2)
      elif legacy:
        repo = _measured([float(legacy['mean'])], [float(legacy['ci95'])], [(p.value, p.ci95)], 2)
      else:
        repo = '—'
      lines.append(f'| {bench} | {method} | `{row}` | {published} | {repo} | '
                   f'{ev.trained(row, cfg.total_iterations, legacy)} | {ev.link(row, legacy)} |')
  return lines


def _sinusoid_lines(ev: _Evidence) -> list[str]:
  header = ('model', 'row', 'published', 'this repo', 'trained (iterations of the paper\'s)', 'evidence')
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for row in TABLE2_ROWS:
    cfg = experiments.EXPERIMENTS[row]
    pubs = [p for p in cfg.published if p.shots == TABLE2_SHOTS]
    r = ev.result(row, utils.results_name(SPLIT, TABLE2_SHOTS))
    repo = '—' if r is None else _measured(
        [r['mean'][p.step] for p in pubs], [r['ci95'][p.step] for p in pubs],
        [(p.value, p.ci95) for p in pubs], 3)
    label = LABELS[row] + (f' (α = {r["update_lr"]:g})' if r else '')
    lines.append(f'| {label} | `{row}` | {" / ".join(f"{p.value:g}" for p in pubs)} | {repo} | '
                 f'{ev.trained(row, cfg.total_iterations)} | {ev.link(row)} |')
  return lines


def _rl_lines(ev: _Evidence, envs: Sequence[str]) -> list[str]:
  header = ('task', 'method', 'published', 'this repo', 'trained (iterations of the paper\'s)', 'evidence')
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for env in envs:
    for method in experiments.RL_METHODS:
      row = f'rl_{env}_{method}'
      cfg = experiments.get_rl(row)
      r = ev.result(row, 'fig5.json')
      legacy = None if r else ev.not_kept.get((row, '', ''))
      pubs = [(v, None) for v in cfg.published]
      if r:
        repo = _measured(r['mean'], r['ci95'], pubs, 1)
      elif legacy:
        repo = _measured([float(v) for v in legacy['mean'].split('/')],
                         [float(v) for v in legacy['ci95'].split('/')], pubs, 1)
      else:
        repo = '—'
      trained = '—' if method == 'random' else ev.trained(row, cfg.iterations, legacy)
      lines.append(f'| {env.replace("_", " ")} | {method} | {" / ".join(f"{v:g}" for v in cfg.published)} '
                   f'| {repo} | {trained} | {ev.link(row, legacy)} |')
  return lines


def readme_report(results_dir: str) -> str:
  """The README's results tables from results/ (the part between README_BEGIN and README_END)."""
  ev = _Evidence(results_dir)
  family = [r for rows in experiments.METHOD_ROWS.values() for r in rows]
  text = [
      README_BEGIN, '',
      'Mean ± 95% CI over 600 test tasks (RL: 40 test tasks), the model picked by each row\'s selection '
      'rule (`selection_rule` in every results file); **bold**: the reproduced and published 95% CIs '
      'overlap. "model not kept": a number measured before models were committed, kept with the '
      'commit that measured it; re-run the row to check it.', '',
      f'**Sinusoid regression**, K = {TABLE2_SHOTS}, query MSE after 1 / 5 / 10 steps (App. C Table 2):', '',
      *_sinusoid_lines(ev), '',
      '**Few-shot classification**, accuracy % (Table 1):', '',
      *_image_lines(ev, experiments.OMNIGLOT_ROWS + experiments.MINIIMAGENET_ROWS), '',
      '**The wider family**, accuracy % on the same data and episodes:', '',
      *_image_lines(ev, family), '',
      '**Reinforcement learning**, average return after 0 / 1 / 2 / 3 policy-gradient steps (Fig. 5; '
      'the oracle is not adapted):', '',
      *_rl_lines(ev, experiments.RL_ENVS), '',
      README_END]
  table = '\n'.join(text) + '\n'
  print(table, end='')
  return table


def readme_section(readme: str) -> str:
  """The generated part of a README text (markers included); ConfigError if the markers are missing."""
  start, end = readme.find(README_BEGIN), readme.find(README_END)
  if start < 0 or end < start:
    raise ConfigError(f'README.md lacks the markers {README_BEGIN} ... {README_END}')
  return readme[start:end + len(README_END)] + '\n'


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
    'benchmark': benchmark.report_table,
    **{f'rl_{env}': functools.partial(rl_report, env=env) for env in experiments.RL_ENVS},
}


def write_report(group: str, logdir: str) -> str:
  """Writes the figures and table of `group` under <logdir>/figures and prints them.

  Returns the markdown table. Raises ConfigError for an unknown group or a missing results file.
  """
  if group not in GROUPS:
    raise ConfigError(f'unknown report group {group!r}; choose one of: {", ".join(GROUPS)}')
  return GROUPS[group](logdir)
