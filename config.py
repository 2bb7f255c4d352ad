"""The parts an experiment's configuration is made of, one small typed dataclass per concern.

`experiments.Config` composes these parts with the options each method defines in its own module
(methods/*.py, `Method.options`), so every field is defined once, here or there, with its default,
its doc and how the command line treats it:

  flag       main.py defines a flag of this name from the field (its type, doc and choices);
  resumable  a resumed run may change it (iteration counts, evaluation, speed): it leaves what was
             trained alone, so it is not part of a run's name and not compared on resume;
  choices    the values it may take (checked by `Config.validate`; a flag offers them).

Each part may define `check(self, bad)`, which `Config.validate` calls with the whole row as
`self` (a part may read other parts' fields) and `bad(field, why)` raising ConfigError.

Field names follow the original code's flags (cbfinn/maml), so its commands translate one to one;
docs give the paper's symbols. This module imports nothing of the project: every layer may use it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

DATASOURCES = ('sinusoid', 'omniglot', 'miniimagenet', 'folder')
NORMS = ('batch_norm', 'layer_norm', 'None')
CONV_HEADS = ('maml', 'flatten')
INNER_LOOPS = ('all', 'head')
METRICS = ('mse', 'accuracy')
TASK_PARALLELISM = ('vectorized_map', 'batched', 'map_fn', 'loop')
DISTRIBUTE = ('none', 'mirrored', 'multi_worker')

Bad = Callable[[str, str], None]  # bad(field, why) raises ConfigError naming the row and the field


class ConfigError(ValueError):
  """A configuration that cannot run; the message says which field and why."""


def option(default: Any, doc: str, *, flag: bool | str = False, resumable: bool = False,
           choices: tuple | None = None):
  """A config field: its default, its doc and how the command line treats it (module docstring).
  flag=True names the flag after the field; a string names it otherwise (RL rows)."""
  return dataclasses.field(default=default, metadata={
      'doc': doc, 'flag': flag, 'resumable': resumable, 'choices': choices})


def doc(cls, name: str) -> str:
  """The doc of field `name` of a config dataclass."""
  return cls.__dataclass_fields__[name].metadata.get('doc', '')


def at_least(cfg, bad: Bad, minimum: int, fields: tuple[str, ...]) -> None:
  """bad() for the first of `fields` below `minimum` (None counts as unset)."""
  for name in fields:
    value = getattr(cfg, name)
    if value is not None and value < minimum:
      bad(name, 'must be at least 1' if minimum == 1 else 'must not be negative')


@dataclasses.dataclass(frozen=True)
class Published:
  """One published number: `metric` after `step` inner steps at K = `shots`."""
  shots: int
  step: int
  value: float
  ci95: float | None = None
  source: str = ''
  transductive: bool = True  # False: each query predicted in a batch with the support set only


Part = dataclasses.dataclass(frozen=True, kw_only=True)


@Part
class Episodes:
  """The task distribution: what an episode is made of."""
  datasource: str = option(
      'sinusoid', "sinusoid, omniglot, miniimagenet, or folder (any folder of classes: data_dir, "
      'FolderData).', choices=DATASOURCES)
  num_classes: int = option(1, 'N, classes per task (N-way); 1 for regression.', flag=True)
  update_batch_size: int = option(
      10, 'K, support examples per class (points for sinusoid) at training.', flag=True)
  query_size: int | None = option(
      None, 'Query examples per class at training; None means K (the original).', flag=True)
  data_dir: str | None = option(
      None, 'Folder with the raw dataset files (zips, CSVs) of the image rows; the folder row: '
      'one sub-folder of images per class (docs/your-own-data.md).', flag=True, resumable=True)

  def check(self, bad: Bad) -> None:
    at_least(self, bad, 1, ('num_classes', 'update_batch_size', 'query_size'))


@Part
class FolderData:
  """How the folder datasource turns a user's images into the row's input (image_datasets.py).

  The images of every class are resized once to image_size x image_size (grey or RGB) into the
  prepared cache; the split fields apply only when the folder has neither train/ val/ test/
  sub-folders nor split CSVs. Other datasources keep these at their defaults (their preprocessing
  is the original code's).
  """
  image_size: int = option(84, 'Folder datasource: images are resized to this height and width.',
                           flag=True)
  grey: bool = option(False, 'Folder datasource: one grey channel (False: RGB).', flag=True)
  invert: bool = option(
      False, 'Folder datasource: feed 1 - x, so dark strokes on light paper become 1 as in '
      'Omniglot.', flag=True)
  train_fraction: float = option(
      0.64, 'Folder datasource without split folders or CSVs: fraction of the classes for '
      'meta-training (MiniImagenet: 64 of 100).', flag=True)
  val_fraction: float = option(
      0.16, 'Folder datasource without split folders or CSVs: fraction of the classes for '
      'meta-validation; the rest are test classes.', flag=True)
  split_seed: int = option(
      0, 'Folder datasource without split folders or CSVs: seed of the shuffle that splits the '
      'classes.', flag=True)

  def check(self, bad: Bad) -> None:
    if self.datasource != 'folder':
      for name, f in FolderData.__dataclass_fields__.items():
        if getattr(self, name) != f.default:
          bad(name, 'applies to the folder datasource only')
      return
    if not 4 <= self.image_size <= 1024:
      bad('image_size', 'must lie in 4..1024 pixels')
    if not (0 < self.train_fraction < 1 and 0 < self.val_fraction < 1
            and self.train_fraction + self.val_fraction < 1):
      bad('train_fraction', f'and val_fraction={self.val_fraction} must be positive and leave '
          'test classes (their sum below 1)')


@Part
class Network:
  """The model f_theta."""
  norm: str = option('None', "batch_norm, layer_norm or 'None' (the original's spelling).",
                     flag=True, choices=NORMS)
  hidden: tuple[int, ...] = option((40, 40), 'FC hidden widths.')
  num_filters: int = option(64, 'Conv filters per layer (image rows).', flag=True)
  conv: bool = option(True, 'False gives the FC "no conv" net (image rows).', flag=True)
  max_pool: bool = option(False, '2x2 max-pool instead of strided convs (image rows).', flag=True)
  conv_head: str = option(
      'maml', "Head of the strided conv4: 'maml' (average pooling, N(0, 1) weights, the original) "
      "or 'flatten' (flatten + Glorot, Reptile's).", flag=True, choices=CONV_HEADS)

  def check(self, bad: Bad) -> None:
    at_least(self, bad, 1, ('num_filters',))
    if any(h < 1 for h in self.hidden):
      bad('hidden', 'widths must be at least 1')


@Part
class InnerLoop:
  """Adaptation to a task: theta' = theta - alpha grad L_support(theta), num_updates times."""
  update_lr: float = option(0.001, 'alpha, the inner SGD step size.', flag=True)
  num_updates: int = option(1, 'Inner steps at meta-training.', flag=True)
  test_num_updates: int = option(
      10, 'Inner steps at meta-test (metrics after every step 0..this).', flag=True, resumable=True)
  stop_grad: bool = option(
      False, 'First-order MAML: stop_gradient on the inner gradients.', flag=True)
  adapt_norm: bool = option(
      False, 'Also adapt the normalization parameters in the inner loop.', flag=True)
  inner_loop: str = option(
      'all', "What the inner loop adapts: 'all' (MAML) or 'head' (only the last layer, ANIL).",
      flag=True, choices=INNER_LOOPS)

  def check(self, bad: Bad) -> None:
    at_least(self, bad, 0, ('num_updates', 'test_num_updates'))
    if not (math.isfinite(self.update_lr) and self.update_lr > 0):
      bad('update_lr', 'must be a positive number')


@Part
class MetaTraining:
  """The outer loop: which method meta-trains theta, on what, for how long."""
  method: str = option(
      'maml', 'The meta-learning method (methods/: its registered name); MAML\'s variants are '
      'options of maml.')  # its values: the registry's (experiments.METHODS)
  baseline: str | None = option(
      None, "'oracle' (sinusoid: the task's amplitude and phase are appended to the input), a "
      "classifier baseline (methods/baselines.py), or 'None'.", flag=True)  # experiments.BASELINES
  meta_batch_size: int = option(25, 'T, tasks per meta-update.', flag=True)
  meta_lr: float = option(
      1e-3, 'beta, the Adam step size of the meta-update (Reptile: epsilon, SGD, annealed to 0).',
      flag=True)
  min_meta_lr: float | None = option(
      None, 'MAML++ CA: cosine-anneal beta to this (None: constant).', flag=True)
  metatrain_iterations: int = option(70_000, 'Meta-updates (the MAML objective).', flag=True,
                                     resumable=True)
  pretrain_iterations: int = option(
      0, 'Plain multi-task updates of the pre-update loss (the baselines), run first.', flag=True,
      resumable=True)
  meta_grad_clip: float | None = option(
      None, 'Clip meta-gradients to [-c, c] (original: MiniImagenet, 10).', flag=True)
  seed: int = option(0, 'Seed of theta_0 and the training tasks (CPU runs are repeatable).',
                     flag=True)

  def check(self, bad: Bad) -> None:
    at_least(self, bad, 1, ('meta_batch_size',))
    at_least(self, bad, 0, ('metatrain_iterations', 'pretrain_iterations'))
    if not (math.isfinite(self.meta_lr) and self.meta_lr > 0):
      bad('meta_lr', 'must be a positive number')
    if self.meta_grad_clip is not None and not self.meta_grad_clip > 0:
      bad('meta_grad_clip', 'must be positive')
    if self.min_meta_lr is not None and not 0 < self.min_meta_lr <= self.meta_lr:
      bad('min_meta_lr', f'must lie in (0, meta_lr={self.meta_lr}]')


@Part
class Evaluation:
  """Meta-test and meta-validation: which tasks, which K, which step is reported."""
  metric: str = option('mse', "What `published` and the results report: 'mse' or 'accuracy'.",
                       choices=METRICS)
  eval_shots: tuple[int, ...] = option((5, 10, 20), 'K values evaluated at meta-test.',
                                       resumable=True)
  num_test_tasks: int = option(
      600, 'Tasks per evaluation (the paper\'s protocol and the original NUM_TEST_POINTS: 600).',
      flag=True, resumable=True)
  test_query_size: int | None = option(
      None, 'Query examples per class at meta-test; None means the test K.', flag=True,
      resumable=True)
  eval_chunk: int = option(100, 'Tasks per compiled evaluation call (memory, not results).',
                           resumable=True)
  test_update_lr: float | None = option(None, 'alpha at meta-test; None means update_lr.',
                                        resumable=True)
  test_update_lr_grid: tuple[float, ...] = option(
      (), 'If set, alpha at meta-test is tuned on validation tasks from these.', resumable=True)
  num_tune_tasks: int = option(100, 'Validation tasks used to tune the test step size.',
                               resumable=True)
  eval_seed: int = option(
      1, 'Seeds the test and validation tasks (original: np.random.seed(1)).', resumable=True)
  report_step: int = option(
      10, 'The step whose metric the paper reports (Omniglot 5-way: 3).', resumable=True)
  transductive: bool = option(
      True, 'Meta-test: predict a task\'s queries in one batch (False: each query in a batch with '
      'the support set only).', flag=True, resumable=True)
  val_every: int = option(0, 'Iterations between meta-validations (0: never).', flag=True,
                          resumable=True)
  num_val_tasks: int = option(
      100, 'Tasks per meta-validation (a run keeps one number: its curve compares checkpoints on '
      'the same tasks).', flag=True, resumable=True)

  def check(self, bad: Bad) -> None:
    at_least(self, bad, 1, ('num_test_tasks', 'num_tune_tasks', 'eval_chunk', 'num_val_tasks',
                            'test_query_size'))
    at_least(self, bad, 0, ('val_every',))
    if not 0 <= self.report_step <= self.test_num_updates:
      bad('report_step', f'must lie in 0..test_num_updates ({self.test_num_updates})')
    if self.test_update_lr is not None and not self.test_update_lr >= 0:
      bad('test_update_lr', 'must not be negative')
    if any(not lr > 0 for lr in self.test_update_lr_grid):
      bad('test_update_lr_grid', 'must hold positive step sizes')
    if not self.eval_shots or min(self.eval_shots) < 1:
      bad('eval_shots', 'must hold K values of at least 1')


@Part
class Runtime:
  """How a run executes: speed, devices, logging. Never part of the science."""
  # XLA for the training step pays for small MLPs on CPU. Evaluation never uses it: it traces once
  # per K and runs a few calls, so XLA's compile time never pays back (sinusoid, 600 tasks per K:
  # 4.6 s without, 7.7 s with).
  jit_compile: bool = option(
      True, 'Compile the training step with XLA (evaluation never uses it: its compile time does '
      'not pay back over a few calls).', flag=True, resumable=True)
  task_parallelism: str = option(
      'vectorized_map', 'How the forward pass maps over the tasks of a meta-batch (maml.py; speed '
      'only).', flag=True, resumable=True, choices=TASK_PARALLELISM)
  steps_per_call: int = option(1, 'Meta-updates per compiled call (a graph loop; speed only).',
                               flag=True, resumable=True)
  task_chunk: int | None = option(
      None, 'Meta-gradient C tasks at a time: the same update with the memory of C tasks, not T; '
      '0: the whole meta-batch at once; None: the largest C whose largest layer output fits '
      'models.CHUNK_ACTIVATIONS floats (rows with many or large images chunk, small ones not), or '
      'with chunks_in_flight P > 1 the largest C <= T/P within models.CHUNK_IN_FLIGHT_ACTIVATIONS.',
      flag=True, resumable=True)
  chunks_in_flight: int = option(
      1, 'Chunks of the meta-gradient computed at the same time, each op on one thread (so P '
      'chunks use P cores: intra_op_threads becomes 1 unless set); 1: one chunk after the other '
      'with multi-threaded ops. Chunking methods only (the MAML family); inert elsewhere.',
      flag=True, resumable=True)
  distribute: str = option(
      'none', 'Split each meta-batch over the GPUs of this machine (mirrored) or over machines '
      'named by TF_CONFIG (multi_worker); the updates equal those of one device.', flag=True,
      resumable=True, choices=DISTRIBUTE)
  intra_op_threads: int = option(0, 'Threads per TensorFlow op (0: TensorFlow\'s default, all '
                                 'cores).', flag=True, resumable=True)
  summary_every: int = option(100, 'Iterations between TensorBoard scalars (original: 100).',
                              resumable=True)
  print_every: int = option(1000, 'Iterations between progress lines (with it/s and ETA).',
                            flag=True, resumable=True)
  checkpoint_every: int = option(1000, 'Iterations between checkpoints (original: 1000).',
                                 flag=True, resumable=True)

  def check(self, bad: Bad) -> None:
    at_least(self, bad, 1, ('summary_every', 'print_every', 'checkpoint_every', 'steps_per_call',
                            'chunks_in_flight'))
    at_least(self, bad, 0, ('intra_op_threads',))
    if self.task_parallelism == 'vectorized_map' and self.datasource != 'sinusoid' and self.conv:
      bad('task_parallelism', "'vectorized_map' cannot map a convolution whose filter differs per "
          "task (TensorFlow's pfor); use 'batched' or 'map_fn' for conv rows")
    if self.task_chunk is not None and (
        self.task_chunk < 0 or (self.task_chunk and self.meta_batch_size % self.task_chunk)):
      bad('task_chunk', f'must be 0 or divide meta_batch_size ({self.meta_batch_size})')


@Part
class Provenance:
  """Where a row's numbers come from; a run takes these from the current table, never its own."""
  source: str = option('', 'The paper section and original code the row follows.')
  choices: tuple[str, ...] = option(
      (), 'Deliberate decisions where the paper and the code disagree.')
  published: tuple[Published, ...] = option((), 'The published numbers of this row.')
  model_from: str | None = option(
      None, 'The row whose trained run this row evaluates (it trains the same network; only '
      'evaluation differs): one classifier serves the four MiniImagenet baseline rows.')


# Before the method options (methods/*.py), in the order of a saved config.json.
CORE_PARTS = (Episodes, FolderData, InnerLoop, MetaTraining, Network, Evaluation, Runtime,
              Provenance)
