"""The report's matplotlib figures, each drawn on its own Figure and written as a PNG (headless Agg).

  plot_fits               paper Fig. 2: MAML and pretrained fits of one sinusoid task after 0, 1 and 10 steps
  plot_learning_curve     paper Fig. 3: sinusoid query MSE vs gradient steps at K = 10, with the oracle
  plot_learning_curves    paper Fig. 6 (App. B): the same at K = 5, 10 and 20
  plot_validation_curves  the validation accuracy of image rows during training
  plot_method_bars        every method on one dataset: test accuracy ± 95% CI, and the published numbers
  plot_fig5               paper Fig. 5: average return after 0..3 policy-gradient steps on one RL task family
  plot_l2l                Andrychowicz et al. 2016 Fig. 2/3: a learned optimizer's loss curve vs tuned baselines'
"""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

import experiments
from experiments import ConfigError
from report.results import (COLORS, FIG2_SHOTS, FIG3_SHOTS, LABELS, MAML_ROW, PLOT_TASK, PRETRAINED_ROW,
                            SINUSOID_SHOTS, SUPPORT_COLOR, Results)


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


def plot_validation_curves(curves: Mapping[str, Sequence[tuple[int, float]]], title: str, path: str) -> str:
  """The validation accuracy of image rows during training: curves {row: [(iteration, accuracy)]}."""
  fig = Figure(figsize=(7, 4.5))
  ax = fig.subplots()
  for row, points in curves.items():
    ax.plot(*zip(*points), label=row)
  ax.set_xlabel('meta-training iteration')
  ax.set_ylabel('validation accuracy (%)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.suptitle(f'{title}: validation accuracy during training')
  return _save(fig, path)


def plot_method_bars(bars: Sequence[tuple[str, float, float, float | None]], dataset: str, path: str) -> str:
  """Every method on one dataset, 5-way 1-shot: test accuracy ± 95% CI as bars and the published
  numbers as diamonds. bars: (label, mean, ci95, published value or None) per method."""
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
  return _save(fig, path)


def plot_fig5(env: str, curves: Sequence[tuple[str, Sequence[float], np.ndarray | None, np.ndarray | None]],
              path: str) -> str:
  """Paper Fig. 5 for one task family: every method's average return after 0..3 policy-gradient steps
  (± 95% CI) and its published curve (dashed).

  curves: (method, published returns, mean and ci95 [steps] or None if not evaluated yet) for every
  method of experiments.RL_METHODS, in that order (method i is drawn in colour Ci).
  """
  fig = Figure(figsize=(5, 3.5))
  ax = fig.add_subplot()
  for i, (method, published, mean, ci) in enumerate(curves):
    color = f'C{i}'  # one colour per method for its curve and its published one
    if len(published) == 1:
      ax.axhline(published[0], color=color, linestyle='--', linewidth=1)
    elif published:
      ax.plot(range(len(published)), published, color=color, linestyle='--', marker='x',
              linewidth=1)
    if mean is None:
      continue
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
  return _save(fig, path)


def plot_l2l(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, path: str) -> str:
  """Andrychowicz et al. 2016 Fig. 2/3: the optimizee's mean loss vs steps (log scale, ± 95% CI) of
  the learned optimizer (solid, first) and of each tuned baseline (dashed). curves: {label: (mean
  [T + 1], ci95 [T + 1])}."""
  fig = Figure(figsize=(6, 4.5))
  ax = fig.subplots()
  for i, (label, (mean, ci)) in enumerate(curves.items()):
    steps = np.arange(len(mean))
    ax.plot(steps, mean, color=f'C{i}', linestyle='-' if i == 0 else '--', label=label)
    ax.fill_between(steps, np.maximum(mean - ci, mean * 1e-3), mean + ci, color=f'C{i}', alpha=0.15)
  ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.set_ylabel('loss')
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize='medium')
  return _save(fig, path)
