"""What the report reads: the results files of evaluated runs, and the names its figures and tables share.

For the group 'sinusoid' the report reads, for every row of `experiments.SINUSOID_ROWS`, the files
`trainer.evaluate` writes with `python main.py --experiment=<row> --train=False --test_set=True
--logdir=<logdir>`:

  <logdir>/<row>/results/test_K<K>.json         query MSE after 0..10 steps, 95% CI, published values
  <logdir>/<row>/results/test_K<K>_curves.npz   predictions on a grid for a few fixed plotting tasks

as one `Result` per row and K (`load_results`). Published numbers come from the results files (which
copy them from experiments.py), never from the report.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np

import experiments
from experiments import ConfigError
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
