"""Published-vs-reproduced text: the sinusoid's App. C Table 2 with the reproduction targets, its MSE
curves for the terminal, the experiments table, and the cells the group and README tables share
(`published_text`, `number_text`, `method_label`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

import experiments
from experiments import ConfigError
import methods
from report.results import (LABELS, MAML_ROW, PRETRAINED_ROW, SINUSOID_SHOTS, TABLE2_ROWS, TABLE2_SHOTS,
                            TARGET_STEP, TARGET_TOLERANCE, Results)


def published_text(p: Mapping | None) -> str:
  """A published entry as a cell: 'value ± ci95', 'value' without a CI, '—' without an entry."""
  if p is None:
    return '—'
  return f'{p["value"]:g}' + (f' ± {p["ci95"]:g}' if p.get('ci95') is not None else '')


def number_text(v: float, digits: int) -> str:
  """Fixed digits, or scientific where that would be wider than a table column (a diverged task)."""
  return f'{v:.{digits}f}' if abs(v) < 1e4 else f'{v:.{digits}e}'


def method_label(cfg: experiments.Config) -> str:
  """A short name of a row's method (MAML variants by their fields): its method's label()."""
  return methods.get(cfg).label()


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
      cells += [f'{number_text(r.mean[s], 3)} ± {number_text(r.ci95[s], 3)}', published_text(r.published(s))]
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
      lines.append(LABELS[row].ljust(width) + ''.join(f'{number_text(v, 3):>11}' for v in results[row, k].mean))
    blocks.append('\n'.join(lines))
  return '\n\n'.join(blocks)


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
  header = ('learned-optimizer row', 'problem', 'input', 'output scale', 'beta', 'optimizations',
            'steps (unroll)', 'test problems', 'baselines (learning rate tuned on)')
  lines += ['', '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for cfg in experiments.L2L_EXPERIMENTS.values():
    lines.append(f'| `{cfg.name}` | {cfg.problem} | '
                 f'{f"preprocessed (p = {cfg.preprocess_p:g})" if cfg.preprocess else "gradient"} | '
                 f'{cfg.output_scale:g} | {cfg.meta_lr:g} | {cfg.iterations:,} | '
                 f'{cfg.optimization_steps} ({cfg.unroll}) | {cfg.test_problems} | '
                 f'{", ".join(cfg.compared_with)} ({cfg.tune_problems} problems) |')
  return '\n'.join(lines) + '\n'
