"""The experiments table: every setting of the paper as one typed, named row.

This module is the single source of truth for hyperparameters. `main.py` picks a row with
`--experiment=<name>` and applies flag overrides with `Config.replace`; `scripts/`, the tests and the
README read the same rows. A row is a `Config`: the parts of config.py (episodes, network, inner
loop, meta-training, evaluation, runtime, provenance) composed with each method's own options
(methods/*.py), each field defined once with its doc. Field names follow the original code's flags
(cbfinn/maml), so the original commands translate one to one; docs give the paper's symbols.

Where the paper text and the original code disagree, the row states which one it follows in `choices`
and the other value stays reachable by a flag (see `DISCREPANCIES`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import config
from config import (CONV_HEADS, DATASOURCES, DISTRIBUTE, INNER_LOOPS, METRICS, NORMS,  # noqa: F401
                    TASK_PARALLELISM, ConfigError, Published)
import methods
import rundir

METHODS = methods.names('method')
BASELINES = (None, 'oracle') + methods.names('baseline')
PAPER = 'Finn, Abbeel, Levine 2017, arXiv 1703.03400v3'


@config.Part
class Row:
  """A row's name: the run directory and the results folder are named after it."""
  name: str = config.option('', 'The row\'s name (a key of EXPERIMENTS).')


# A saved config.json lists the fields in this order.
PARTS = (Row, *config.CORE_PARTS[:-1], *methods.option_parts(), config.Provenance)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(*reversed(PARTS)):  # dataclass fields come in reverse MRO order: PARTS' order
  """One experiment. Defaults are the sinusoid settings of the original code."""

  @classmethod
  def fields_where(cls, key: str) -> tuple[str, ...]:
    """The names of the fields whose metadata `key` is set ('flag', 'resumable'), in order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(key))

  @property
  def train_query_size(self) -> int:
    return self.query_size if self.query_size is not None else self.update_batch_size

  @property
  def val_shots(self) -> int:
    """K of meta-validation (the method's: the training K unless it says otherwise)."""
    return methods.get(self).val_shots

  @property
  def total_iterations(self) -> int:
    return self.pretrain_iterations + self.metatrain_iterations

  @property
  def selection_rule(self) -> str:
    """Which checkpoint is tested: fixed by the row's fields before any test run, and written next
    to every result (trainer._Validator applies it)."""
    if not self.val_every:
      return 'the final checkpoint (the row does not validate)'
    better = 'highest' if self.metric == 'accuracy' else 'lowest'
    return (f'{better} validation {self.metric} after {self.report_step} steps on {self.num_val_tasks} '
            f'fixed validation tasks (K={self.val_shots}), validated every {self.val_every} iterations; '
            'a tie goes to the later checkpoint')

  @property
  def input_dim(self) -> int:
    """x, plus amplitude and phase for the oracle."""
    return 3 if self.baseline == 'oracle' else 1

  def replace(self, **changes) -> 'Config':
    """A validated copy with `changes` applied; unknown fields raise ConfigError."""
    names = {f.name for f in dataclasses.fields(self)}
    unknown = sorted(set(changes) - names)
    if unknown:
      raise ConfigError(f'unknown config field(s): {", ".join(unknown)}')
    return dataclasses.replace(self, **changes).validate()

  def validate(self) -> 'Config':
    """Returns self, or raises ConfigError naming the first bad field: each field's choices, then
    each part's check (config.py, the methods' options)."""
    def bad(field, why):
      raise ConfigError(f'{self.name}: {field}={getattr(self, field)!r} {why}')
    if not self.name:
      bad('name', 'must name the row')
    for f in dataclasses.fields(self):
      choices = f.metadata.get('choices')
      if choices is not None and getattr(self, f.name) not in choices:
        bad(f.name, f'is not one of {choices}')
    if self.method not in METHODS:
      bad('method', f'is not one of {METHODS}')
    if self.baseline not in BASELINES:
      bad('baseline', f'is not one of {BASELINES}')
    if self.baseline == 'oracle' and self.datasource != 'sinusoid':
      bad('baseline', 'exists for sinusoid only')
    for part in PARTS:
      check = vars(part).get('check')
      if check is not None:
        check(self, bad)
    if self.task_chunk and (not methods.get(self).chunks_meta_gradient or self.distribute != 'none'):
      bad('task_chunk', 'chunks the MAML meta-gradient on one device only')
    if self.total_iterations == 0:
      bad('metatrain_iterations', 'and pretrain_iterations are both 0: nothing to train')
    return self

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def load(cls, run_dir: str) -> 'Config':
    """The config a run was trained with (its config.json), or RunError if run_dir holds none."""
    return cls.from_dict(rundir.read_config(run_dir))

  @classmethod
  def from_dict(cls, data: Mapping) -> 'Config':
    """Inverse of `to_dict` (JSON turns tuples into lists)."""
    data = dict(data)
    data['published'] = tuple(Published(**p) for p in data.get('published', ()))
    for f in dataclasses.fields(cls):
      if isinstance(data.get(f.name), list):
        data[f.name] = tuple(data[f.name])
    return cls(**data).validate()


# Where the numbers come from, not the experiment: a run takes them from the current table.
PROVENANCE_FIELDS = tuple(f.name for f in dataclasses.fields(config.Provenance))
# What a resumed run may change without starting a new experiment.
RUNTIME_FIELDS = Config.fields_where('resumable')
Config.PROVENANCE_FIELDS = PROVENANCE_FIELDS  # the names the trainer and main.py read
Config.RUNTIME_FIELDS = RUNTIME_FIELDS


# --- Sinusoid regression (paper §5.1, App. C) -------------------------------------------------------

_TABLE2 = 'paper App. C Table 2 (5-shot MSE after 1/5/10 steps)'
_ALPHA_CHOICE = (
    'alpha = 0.001, the original code\'s flag default, not the paper text\'s 0.01 (§5.1), since 0.001 '
    'reproduces App. C Table 2 and 0.01 makes the fine-tuning of some 5-shot tasks diverge; row '
    'sinusoid_maml_paper_alpha or --update_lr=0.01 keeps the paper\'s (docs/sinusoid.md#inner-step-size)')

_SINUSOID = Config(
    name='sinusoid_maml',
    source=f'{PAPER} §5.1; cbfinn/maml main.py docstring (--metatrain_iterations=70000 '
           '--norm=None --update_batch_size=10), meta-batch 25 and Adam 1e-3 from its flag defaults',
    choices=(
        _ALPHA_CHOICE,
        'FC weights truncated_normal(std=0.01), biases 0, as the original construct_fc_weights',
        'query MSE is reported at every step 0..10, so step 0 measures what steps 1..10 do (the '
        'original reported the support loss at step 0)',
    ),
    # A step takes microseconds: 100 updates per compiled call (same updates, 2-3x the speed), and
    # one thread per op (measured: XLA splitting these tiny ops over 2 cores made every other
    # process 40% slower).
    steps_per_call=100, intra_op_threads=1,
    published=(Published(5, 1, 0.67, source=_TABLE2), Published(5, 5, 0.38, source=_TABLE2),
               Published(5, 10, 0.35, source=_TABLE2)),
).validate()

EXPERIMENTS: dict[str, Config] = {c.name: c for c in (
    _SINUSOID,
    _SINUSOID.replace(
        name='sinusoid_maml_paper_alpha', update_lr=0.01,
        choices=('alpha = 0.01 as the paper text (§5.1), kept to compare with the code default '
                 '(docs/sinusoid.md#inner-step-size)',)
        + _SINUSOID.choices[1:]),
    _SINUSOID.replace(
        name='sinusoid_pretrained', pretrain_iterations=70_000, metatrain_iterations=0,
        # Fig. 2 names step sizes 0.01 and 0.02 for this baseline; the grid brackets them.
        test_update_lr_grid=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
        source=f'{PAPER} §5.1 "pretraining on all tasks ... fine-tuned with an automatically tuned '
               'step size"; cbfinn/maml README command (--pretrain_iterations=70000 '
               '--metatrain_iterations=0)',
        choices=('the test step size is chosen per K from the grid by the mean query MSE over '
                 'steps 1..10 on num_tune_tasks validation tasks (never the test tasks), as the paper '
                 'tunes it "automatically" (docs/sinusoid.md#pretrained-baseline)',)
        + _SINUSOID.choices[1:],
        published=(Published(5, 1, 2.41, source=_TABLE2), Published(5, 5, 2.23, source=_TABLE2),
                   Published(5, 10, 2.19, source=_TABLE2))),
    _SINUSOID.replace(
        name='sinusoid_oracle', baseline='oracle', pretrain_iterations=70_000,
        metatrain_iterations=0, test_update_lr=0.0,
        source=f'{PAPER} §5.1 oracle; cbfinn/maml README command (--baseline=oracle '
               '--pretrain_iterations=70000 --metatrain_iterations=0)',
        choices=('the oracle is given amplitude and phase and is not fine-tuned at test '
                 '(test_update_lr=0), so its curve is flat as in Fig. 3',) + _SINUSOID.choices[1:],
        published=()),
)}

# --- Few-shot classification (paper §5.2, Table 1, App. A.1) ------------------------------------------

_TABLE1 = 'paper Table 1'
_OMNI_SOURCE = (f'{PAPER} §5.2, App. A.1; cbfinn/maml main.py docstring (Omniglot commands, 60000 '
                'iterations since commit a7f45f1)')
_IMAGE_CHOICES = (
    'loss: softmax cross-entropy summed over the set and divided by K, as the original xent, so '
    'alpha means the original --update_lr (with a mean cross-entropy the same step is N * alpha)',
    'batch norm with the statistics of each batch at train and test, beta only, kept out of the '
    'inner loop (original tf.contrib batch_norm defaults); --adapt_norm=True adapts it too',
    'the model tested is the checkpoint with the best validation accuracy at report_step (the '
    'paper: early stopping on validation), fixed before any test run (selection_rule); --test_iter '
    'picks another (docs/image-classification.md#model-selection)',
)
_OMNIGLOT = Config(
    name='omniglot_5way_1shot', datasource='omniglot', metric='accuracy', num_classes=5,
    update_batch_size=1, update_lr=0.4, num_updates=1, test_num_updates=10, report_step=3,
    meta_batch_size=32, metatrain_iterations=60_000, norm='batch_norm', num_filters=64,
    hidden=(256, 128, 64, 64), eval_shots=(1, 5), num_test_tasks=600, eval_chunk=50,
    val_every=500, print_every=100, jit_compile=False, task_parallelism='batched',
    # Two chunks of the meta-gradient at once, one core each (2 cores; set it to yours): 1.2-1.3x
    # the speed of one chunk after the other on multi-threaded ops, in less memory (small chunks).
    chunks_in_flight=2,
    source=_OMNI_SOURCE,
    choices=_IMAGE_CHOICES + (
        'the 5-shot cell is the 1-shot model tested at K=5, as the original (cbfinn/maml issue #3); '
        'rows *_5shot train at K=5 as well (docs/image-classification.md#omniglot)',
        'accuracy reported after 3 steps for 5-way and 5 for 20-way (App. A.1); all of 0..10 are '
        'in the results',
        'character split 1100 train / 100 validation / 423 test, seeded as the original (the '
        'paper\'s "1200 for training" counts the validation characters)'),
    published=(Published(1, 3, 98.7, 0.4, _TABLE1), Published(5, 3, 99.9, 0.1, _TABLE1)),
).validate()

_MINI = _OMNIGLOT.replace(
    name='miniimagenet_5way_1shot', datasource='miniimagenet', update_lr=0.01, num_updates=5,
    report_step=10, meta_batch_size=4, query_size=15, num_filters=32, max_pool=True,
    chunks_in_flight=1,  # one task's activations are already 4x the chunk budget
    meta_grad_clip=10.0, eval_shots=(1,), eval_chunk=20, val_every=2000, num_val_tasks=600,
    source=f'{PAPER} §5.2, App. A.1; cbfinn/maml main.py docstring (MiniImagenet command) and its '
           'shipped checkpoint (cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm)',
    choices=_IMAGE_CHOICES + (
        'model selection on 600 validation tasks every 2,000 iterations (the test protocol, 1 query '
        'per class), since 100 tasks (a CI of about +-4.6 points) ranked checkpoints by noise; '
        '--num_val_tasks, --val_every (docs/image-classification.md#model-selection)',
        '15 query images per class at training, K at test (the original: update_batch_size*2 '
        'images per class at test, so 1 query per class for 1-shot); --test_query_size changes it',
        'meta-gradient clipped to [-10, 10] at the original\'s loss scale',
        'Ravi & Larochelle split CSVs: 64/16/20 classes (the paper text says 64/12/24)'),
    published=(Published(1, 10, 48.70, 1.84, _TABLE1),))

EXPERIMENTS.update({c.name: c for c in (
    _OMNIGLOT,
    _OMNIGLOT.replace(name='omniglot_5way_5shot', update_batch_size=5, eval_shots=(5,),
                      published=(Published(5, 3, 99.9, 0.1, _TABLE1),)),
    _OMNIGLOT.replace(
        name='omniglot_20way_1shot', num_classes=20, update_lr=0.1, num_updates=5, report_step=5,
        meta_batch_size=16, eval_chunk=20,
        published=(Published(1, 5, 95.8, 0.3, _TABLE1), Published(5, 5, 98.9, 0.2, _TABLE1))),
    _OMNIGLOT.replace(
        name='omniglot_20way_5shot', num_classes=20, update_lr=0.1, num_updates=5, report_step=5,
        meta_batch_size=16, update_batch_size=5, eval_shots=(5,), eval_chunk=10,
        published=(Published(5, 5, 98.9, 0.2, _TABLE1),)),
    _OMNIGLOT.replace(
        name='omniglot_5way_1shot_noconv', conv=False, task_parallelism='vectorized_map',
        chunks_in_flight=1,
        source=_OMNI_SOURCE + '; "MAML, no conv": --conv=False, FC 256-128-64-64 (App. A.1)',
        published=(Published(1, 3, 89.7, 1.1, _TABLE1), Published(5, 3, 97.5, 0.6, _TABLE1))),
    _OMNIGLOT.replace(
        name='omniglot_5way_5shot_noconv', conv=False, task_parallelism='vectorized_map',
        chunks_in_flight=1,
        update_batch_size=5, eval_shots=(5,),
        source=_OMNI_SOURCE + '; "MAML, no conv": --conv=False, FC 256-128-64-64 (App. A.1)',
        published=(Published(5, 3, 97.5, 0.6, _TABLE1),)),
    _MINI,
    _MINI.replace(
        name='miniimagenet_5way_5shot', update_batch_size=5, meta_batch_size=2, eval_shots=(5,),
        eval_chunk=10, choices=_MINI.choices + (
            'meta-batch 2 as the paper (App. A.1); the original README command keeps 4: '
            '--meta_batch_size=4',),
        published=(Published(5, 10, 63.11, 0.92, _TABLE1),)),
    _MINI.replace(name='miniimagenet_5way_1shot_first_order', stop_grad=True,
                  published=(Published(1, 10, 48.07, 1.75, _TABLE1),)),
    _MINI.replace(
        name='miniimagenet_5way_5shot_first_order', stop_grad=True, update_batch_size=5,
        meta_batch_size=2, eval_shots=(5,), eval_chunk=10,
        published=(Published(5, 10, 63.15, 0.91, _TABLE1),)),
)})

# --- Your own data: any folder of classes (docs/your-own-data.md) -----------------------------------

# A template a user copies with flags (--data_dir, --image_size, --grey, ...): the MiniImagenet
# row's conv4 and settings, which suit photos of a few hundred classes; no published numbers.
EXPERIMENTS['folder_5way_1shot'] = _MINI.replace(
    name='folder_5way_1shot', datasource='folder', image_size=84, grey=False, published=(),
    source=f'{PAPER} §5.2 with the MiniImagenet row\'s settings (miniimagenet_5way_1shot), on the '
           'classes of --data_dir (docs/your-own-data.md)',
    choices=_MINI.choices[:3] + (
        'the MiniImagenet row\'s conv4, alpha, steps, meta-batch, 15 queries per class at training '
        'and model selection, since a folder of photos is closest to MiniImagenet; a folder of '
        'drawings takes --image_size=28 --grey=True --invert=True (docs/your-own-data.md)',
        'classes split by the folder\'s train/ val/ test/ folders or split CSVs, else 64% / 16% / '
        '20% by a seeded shuffle (--train_fraction, --val_fraction, --split_seed)',
        'no rotations (Omniglot\'s augmentation): a folder\'s classes may not be rotation-free'))

_R_AND_L = 'paper Table 1 (from Ravi & Larochelle 2017)'
_BASELINE = _MINI.replace(
    name='miniimagenet_5way_1shot_finetune', baseline='finetune', metatrain_iterations=0,
    pretrain_iterations=30_000, meta_batch_size=64, val_every=0, print_every=500,
    test_update_lr=None, test_update_lr_grid=(0.001, 0.003, 0.01, 0.03, 0.1),
    source=f'{PAPER} Table 1 baselines, from Ravi & Larochelle 2017 (ICLR) §5',
    choices=('the classifier is the row\'s conv4 with one output per meta-training class, trained '
             'with Adam on batches of 64 images for pretrain_iterations (an epoch is 600 '
             'iterations), since Ravi & Larochelle\'s own settings are not in the reference '
             '(docs/image-classification.md#the-fine-tuning-and-nearest-neighbour-baselines)',
             'fine-tuning: a zero N-way head, every parameter but batch norm fine-tuned by SGD on '
             'the support set, alpha tuned per K on validation tasks, accuracy after 10 steps',
             'nearest neighbour: cosine distance between backbone features (the head\'s input), '
             'since the reference does not name R&L\'s distance and cosine matches their numbers '
             'while Euclidean does not; --nn_distance=euclidean keeps the other '
             '(docs/image-classification.md#the-fine-tuning-and-nearest-neighbour-baselines)',
             'one classifier serves the four baseline rows (model_from): the 1-shot fine-tuning '
             'row trains it, the others evaluate it'),
    published=(Published(1, 10, 28.86, 0.54, _R_AND_L),))
EXPERIMENTS.update({c.name: c for c in (
    _BASELINE,
    # One classifier for the four rows: it trains on single images, so K and the baseline's kind
    # change only the evaluation (model_from; checked by classifier_sharing_fields).
    _BASELINE.replace(name='miniimagenet_5way_5shot_finetune', update_batch_size=5,
                      eval_shots=(5,), model_from=_BASELINE.name,
                      published=(Published(5, 10, 49.79, 0.79, _R_AND_L),)),
    _BASELINE.replace(name='miniimagenet_5way_1shot_nearest_neighbor', baseline='nearest_neighbor',
                      test_num_updates=0, report_step=0, test_update_lr_grid=(),
                      model_from=_BASELINE.name, published=(Published(1, 0, 41.08, 0.70, _R_AND_L),)),
    _BASELINE.replace(name='miniimagenet_5way_5shot_nearest_neighbor', baseline='nearest_neighbor',
                      test_num_updates=0, report_step=0, test_update_lr_grid=(),
                      update_batch_size=5, eval_shots=(5,), model_from=_BASELINE.name,
                      published=(Published(5, 0, 51.04, 0.65, _R_AND_L),)),
)})

# --- ANIL (Raghu et al. 2020, "Rapid Learning or Feature Reuse?"): only the head adapts --------------

_ANIL = 'ANIL paper Table 2 (via the learn2learn ANIL tutorial)'
_ANIL_CHOICES = ('the original MAML rows\' settings with only the head in the inner loop (ANIL\'s '
                 'own runs followed MAML\'s hyperparameters)',)
ANIL_ROWS = ('omniglot_20way_1shot_anil', 'omniglot_20way_5shot_anil', 'miniimagenet_5way_1shot_anil',
             'miniimagenet_5way_5shot_anil')
EXPERIMENTS.update({
    f'{base}_anil': EXPERIMENTS[base].replace(
        name=f'{base}_anil', inner_loop='head', source=_ANIL,
        choices=EXPERIMENTS[base].choices + _ANIL_CHOICES, published=published)
    for base, published in (
        ('omniglot_20way_1shot', (Published(1, 5, 96.2, 0.5, _ANIL),)),
        ('omniglot_20way_5shot', (Published(5, 5, 98.0, 0.3, _ANIL),)),
        ('miniimagenet_5way_1shot', (Published(1, 10, 46.7, 0.4, _ANIL),)),
        ('miniimagenet_5way_5shot', (Published(5, 10, 61.5, 0.5, _ANIL),)))})

# --- The wider family: Reptile, Meta-SGD, MAML++, Prototypical and Matching networks -------

_REPTILE = 'Nichol, Achiam, Schulman 2018 (arXiv 1803.02999v3) Table 1/2'
_REPTILE_CHOICES = (
    'openai/supervised-reptile README commands: inner Adam (beta1 = 0, lr 1e-3) on minibatches of '
    '10 from 10 (Omniglot) / 15 (MiniImagenet) training shots per class, 5 / 8 inner steps, meta-'
    'batch 5, epsilon 1 annealed linearly to 0 over 100k iterations; at test 50 Adam steps on '
    'minibatches of at most 5 (Omniglot) / 15 (MiniImagenet) support examples',
    'one run serves K = 1 and 5 (the original trains both with the same command but --shots)',
    'the MAML row\'s conv4 ending as the original Reptile model (conv_head=flatten: flatten, '
    'Glorot-uniform dense head), since inner Adam barely moves the MAML Omniglot head; the MAML '
    'row\'s data (1100/100/423 characters, rotations per task, validation for model selection), '
    'not the original\'s 1200 rotated training characters (docs/family.md#reptile)',
    'inner Adam moments kept across tasks and into evaluation, as the original (the tasks of a '
    'meta-batch adapt side by side from the same moments, which then move to their mean), since a '
    'fresh Adam per task stalls training; normalization parameters adapted in the inner loop, as '
    'the original (docs/family.md#reptile)',
    'reported non-transductive (each query with the support set; the paper\'s main number); '
    '--transductive=True gives the transductive one (results file without the _nontransductive suffix)',
)
_METASGD = 'Li, Zhou, Chen, Li 2017 (arXiv 1707.09835)'
_METASGD_CHOICES = (
    'Meta-SGD: a meta-learned step size per parameter entry (initialized at alpha, as learn2learn; '
    'the paper draws them from U[0.005, 0.1]), one inner step at training and the reported test '
    'step; otherwise the MAML row\'s settings, since the paper\'s own meta-batch and iterations are '
    'not in the reference (docs/family.md#meta-sgd)',)
_MAMLPP = ('Antoniou, Edwards, Storkey 2019 (ICLR), Table 2; configs of '
           'AntreasAntoniou/HowToTrainYourMAMLPytorch')
_MAMLPP_CHOICES = (
    'every MAML++ trick on: multi-step loss (annealed over 10 / 15 epochs of 500 iterations), '
    'derivative-order annealing (first order for the first 50 of 100 epochs, the paper; the shipped '
    'configs stay second order: --first_order_iterations=0), per-step normalization parameters, '
    'learned per-layer per-step step sizes, cosine annealing of beta to 1e-5 (the Omniglot config; '
    'the shipped MiniImagenet config sets min_lr = meta_lr, i.e. off: --min_meta_lr=0.001)',
    'per-step batch-norm running statistics (BNRS) need no flag here: normalization always uses '
    'the current batch (the MAML++ code also evaluates with training=True), so each step already '
    'has its own statistics',
    'the MAML++ configs\' mean cross-entropy with alpha 0.1 (Omniglot) / 0.01 (MiniImagenet) is this '
    'repo\'s summed / K loss with alpha / N: 0.02 / 0.002',
    'conv4 with max-pooling, 64 (Omniglot) / 48 (MiniImagenet) filters, beta-only batch norm as '
    'the other rows; 5 steps at training and test; a single best-validated model, not the '
    'top-5 validation ensemble of the MAML++ code (docs/family.md#maml)',
)
_PROTO = 'Snell, Swersky, Zemel 2017 Table 1/2 (Omniglot; MiniImagenet ± from the paper)'
_MATCHING = ('Vinyals et al. 2016 (Omniglot); MiniImagenet: Ravi & Larochelle 2017\'s re-run (FCE), '
             'as paper Table 1')
_METRIC_CHOICES = (
    'the MAML row\'s conv4 without its head as the embedding and the MAML row\'s episodes (5-way '
    'at training too; Snell trained at a higher way: 60 Omniglot, 30/20 MiniImagenet), batch '
    'norm with the statistics of the support and query sets of each task embedded together',
    'Adam 1e-3, constant; 5 queries per class for Omniglot (Snell, Vinyals), 15 for MiniImagenet '
    '(docs/family.md#prototypical-networks)',
)


def _method_row(base: str, name: str, source: str, choices: tuple[str, ...], **fields) -> Config:
  """A row of another method on the data, model and evaluation of the MAML row `base`."""
  return EXPERIMENTS[base].replace(name=name, source=source,
                                   choices=EXPERIMENTS[base].choices + choices, **fields)


_REPTILE_FIELDS = dict(
    method='reptile', adapt_norm=True, conv_head='flatten', update_lr=1e-3, meta_lr=1.0,
    meta_batch_size=5,
    metatrain_iterations=100_000, query_size=1, test_num_updates=50, report_step=50,
    meta_grad_clip=None, eval_shots=(1, 5), val_every=2000, eval_chunk=20)
_METRIC_FIELDS = dict(num_updates=0, test_num_updates=0, report_step=0)
_MATCHING_CHOICES = _METRIC_CHOICES + (
    'attention softmax_i 10 * cos, not the paper\'s plain cosine (--cosine_scale=1), since on ReLU '
    'features cos lies in [0, 1] and the 5-way softmax stays nearly flat '
    '(docs/family.md#matching-networks)',)
_MAMLPP_MINI = dict(
    inner_lr='per_layer_per_step', per_step_norm=True, multi_step_loss_epochs=15,
    first_order_iterations=25_000, min_meta_lr=1e-5, num_filters=48, meta_batch_size=2,
    update_lr=0.002, test_num_updates=5, report_step=5, metatrain_iterations=50_000)
EXPERIMENTS.update({c.name: c for c in (
    _method_row('omniglot_5way_1shot', 'omniglot_5way_reptile', _REPTILE, _REPTILE_CHOICES,
                **_REPTILE_FIELDS, update_batch_size=10, num_updates=5, inner_batch_size=10,
                test_inner_batch_size=5, transductive=False,
                published=(Published(1, 50, 95.39, 0.09, _REPTILE, False),
                           Published(5, 50, 98.90, 0.10, _REPTILE, False),
                           Published(1, 50, 97.68, 0.04, _REPTILE), Published(5, 50, 99.48, 0.06, _REPTILE))),
    _method_row('miniimagenet_5way_1shot', 'miniimagenet_5way_reptile', _REPTILE, _REPTILE_CHOICES,
                **_REPTILE_FIELDS, update_batch_size=15, num_updates=8, inner_batch_size=10,
                test_inner_batch_size=15, transductive=False,
                published=(Published(1, 50, 47.07, 0.26, _REPTILE, False),
                           Published(5, 50, 62.74, 0.37, _REPTILE, False),
                           Published(1, 50, 49.97, 0.32, _REPTILE), Published(5, 50, 65.99, 0.58, _REPTILE))),
    _method_row('omniglot_5way_1shot', 'omniglot_5way_1shot_meta_sgd', _METASGD, _METASGD_CHOICES,
                inner_lr='per_parameter', report_step=1,
                published=(Published(1, 1, 99.53, None, _METASGD),)),  # its ± is unverified
    _method_row('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_meta_sgd', _METASGD,
                _METASGD_CHOICES, inner_lr='per_parameter', num_updates=1, report_step=1,
                published=(Published(1, 1, 50.47, 1.87, _METASGD),)),
    _method_row('miniimagenet_5way_5shot', 'miniimagenet_5way_5shot_meta_sgd', _METASGD,
                _METASGD_CHOICES, inner_lr='per_parameter', num_updates=1, report_step=1,
                published=(Published(5, 1, 64.03, 0.94, _METASGD),)),
    _method_row('omniglot_5way_1shot', 'omniglot_5way_1shot_maml_plus_plus', _MAMLPP, _MAMLPP_CHOICES,
                inner_lr='per_layer_per_step', per_step_norm=True, multi_step_loss_epochs=10,
                first_order_iterations=25_000, min_meta_lr=1e-5, max_pool=True, meta_batch_size=8,
                update_lr=0.02, num_updates=5, test_num_updates=5, report_step=5,
                metatrain_iterations=50_000, published=(Published(1, 5, 99.47, None, _MAMLPP),)),
    _method_row('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_maml_plus_plus', _MAMLPP,
                _MAMLPP_CHOICES, **_MAMLPP_MINI, published=(Published(1, 5, 52.15, 0.26, _MAMLPP),)),
    _method_row('miniimagenet_5way_5shot', 'miniimagenet_5way_5shot_maml_plus_plus', _MAMLPP,
                _MAMLPP_CHOICES, **_MAMLPP_MINI, published=(Published(5, 5, 68.32, 0.44, _MAMLPP),)),
    _method_row('omniglot_5way_1shot', 'omniglot_5way_1shot_protonet', _PROTO, _METRIC_CHOICES,
                method='protonet', **_METRIC_FIELDS, query_size=5, metatrain_iterations=10_000,
                published=(Published(1, 0, 98.8, None, _PROTO),)),
    *(_method_row(f'omniglot_{n}way_{k}shot', f'omniglot_{n}way_{k}shot_protonet', _PROTO,
                  _METRIC_CHOICES, method='protonet', **_METRIC_FIELDS, query_size=5,
                  metatrain_iterations=10_000, eval_shots=(k,),
                  published=(Published(k, 0, acc, None, _PROTO),))
      for n, k, acc in ((5, 5, 99.7), (20, 1, 96.0), (20, 5, 98.9))),
    _method_row('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_protonet', _PROTO,
                _METRIC_CHOICES, method='protonet', **_METRIC_FIELDS, meta_grad_clip=None,
                metatrain_iterations=30_000, published=(Published(1, 0, 49.42, 0.78, _PROTO),)),
    _method_row('miniimagenet_5way_5shot', 'miniimagenet_5way_5shot_protonet', _PROTO,
                _METRIC_CHOICES, method='protonet', **_METRIC_FIELDS, meta_grad_clip=None,
                metatrain_iterations=30_000, published=(Published(5, 0, 68.20, 0.66, _PROTO),)),
    _method_row('omniglot_5way_1shot', 'omniglot_5way_1shot_matching', _MATCHING, _MATCHING_CHOICES,
                method='matching', cosine_scale=10.0, **_METRIC_FIELDS, query_size=5,
                metatrain_iterations=10_000, published=(Published(1, 0, 98.1, None, _MATCHING),)),
    *(_method_row(f'omniglot_{n}way_{k}shot', f'omniglot_{n}way_{k}shot_matching', _MATCHING,
                  _MATCHING_CHOICES, method='matching', cosine_scale=10.0, **_METRIC_FIELDS,
                  query_size=5, metatrain_iterations=10_000, eval_shots=(k,),
                  published=(Published(k, 0, acc, None, _MATCHING),))
      for n, k, acc in ((5, 5, 98.9), (20, 1, 93.8), (20, 5, 98.5))),
    _method_row('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_matching', _MATCHING,
                _MATCHING_CHOICES, method='matching', full_context=True, cosine_scale=10.0,
                **_METRIC_FIELDS, meta_grad_clip=None, metatrain_iterations=30_000,
                published=(Published(1, 0, 43.56, 0.84, _MATCHING),)),
    _method_row('miniimagenet_5way_5shot', 'miniimagenet_5way_5shot_matching', _MATCHING,
                _MATCHING_CHOICES, method='matching', full_context=True, cosine_scale=10.0,
                **_METRIC_FIELDS, meta_grad_clip=None, metatrain_iterations=30_000,
                published=(Published(5, 0, 55.31, 0.73, _MATCHING),)),
)})

# --- Siamese networks (Koch et al. 2015) and Relation networks (Sung et al. 2018) -------------------

_SIAMESE = ('paper Table 1 (Siamese nets, Koch et al. 2015, on Vinyals et al.\'s 28x28 protocol), '
            'from Vinyals et al. 2016\'s table; which re-implementation produced these numbers is '
            'unverified')
_OMNI_SPLIT_CHOICE = _OMNIGLOT.choices[-1]  # the character split of every Omniglot row
_MODEL_SELECTION_CHOICE = _IMAGE_CHOICES[2]
_SIAMESE_CHOICES = (
    'training pairs from the row\'s own episode sampler (no second data pipeline): the N*Q queries '
    'of a training episode against its N*K support images, N*Q*K same-class and N*Q*(N-1)*K '
    'different-class pairs of the training characters (with the rows\' 90-degree rotations as new '
    'classes), the comparisons meta-test makes; 5 queries per class, T episodes per update (32 for '
    '5-way, 16 for 20-way, the MAML rows\'); Koch\'s affine distortions are not used '
    '(docs/siamese.md#decisions)',
    'same-class and different-class pairs weigh half of the loss each (siamese_balanced), as '
    'Koch\'s pair sets hold as many of each; --siamese_balanced=False weighs every pair alike',
    'the MAML rows\' conv4 without its head as the shared embedding (64-d), weighted L1 head '
    'Dense(1) with Keras\' default init, Adam 1e-3 constant, no L2 (Koch: SGD with per-layer rates '
    'and L2 chosen by Bayesian optimisation, on 105x105 images)',
    'a query takes the class of its most similar support image (K = 1) or of the highest mean '
    'similarity (K > 1); batch norm with the statistics of each task\'s support and queries '
    'embedded together (transductive, as the metric rows)',
    _MODEL_SELECTION_CHOICE, _OMNI_SPLIT_CHOICE)
_SIAMESE_FIELDS = dict(method='siamese', **_METRIC_FIELDS, query_size=5, metatrain_iterations=10_000)

_RELATION = ('Sung et al. 2018 (CVPR) Table 1/2, as quoted by secondary sources (unverified against '
             'the paper\'s tables); settings of the official code floodsung/LearningToCompare_FSL')
_RELATION_CHOICES = (
    'the official networks (methods/relation.py): embedding 4 x 64-filter conv blocks, the first '
    'two VALID with max-pool; relation module 2 conv blocks + FC 8 + FC 1 sigmoid on the class '
    'features (summed over K) concatenated with the query\'s; the official init; the rows\' batch '
    'norm (beta only, batch statistics at train and test; the official BN has gamma too and never '
    'leaves training mode)',
    'Adam 1e-3 halved every 100,000 iterations, each network\'s gradient clipped to norm 0.5, one '
    'episode per update, the official code\'s queries per class at training; MSE against one-hot',
    'the MAML rows\' episodes (rotation per class, not per episode as the official code; its own '
    'split has 1200 training characters and no validation), tested on the same 600 test tasks '
    'with K queries per class (the official MiniImagenet test: 15; --test_query_size=15)',
    _MODEL_SELECTION_CHOICE)
_RELATION_OMNIGLOT = _RELATION_CHOICES + (
    'Omniglot: 100,000 iterations, not the official 1,000,000 (about 0.17 s each on 2 CPU '
    'cores; --metatrain_iterations)', _OMNI_SPLIT_CHOICE)
_RELATION_MINI = _RELATION_CHOICES + (
    'MiniImagenet: 100,000 iterations, not the official 500,000 (a partial run on a CPU; '
    '--metatrain_iterations)',)
_RELATION_FIELDS = dict(method='relation', **_METRIC_FIELDS, meta_batch_size=1, meta_lr=1e-3,
                        meta_grad_clip=None, metatrain_iterations=100_000)


def _row(base: str, name: str, source: str, choices: tuple[str, ...], **fields) -> Config:
  """A row of another method on the data and evaluation of the MAML row `base`, with its own
  choices only (the MAML rows' inner-loop choices do not apply)."""
  return EXPERIMENTS[base].replace(name=name, source=source, choices=choices, **fields)


EXPERIMENTS.update({c.name: c for c in (
    _row('omniglot_5way_1shot', 'omniglot_5way_1shot_siamese', _SIAMESE, _SIAMESE_CHOICES,
         **_SIAMESE_FIELDS, eval_shots=(1,), published=(Published(1, 0, 97.3, None, _SIAMESE),)),
    _row('omniglot_5way_5shot', 'omniglot_5way_5shot_siamese', _SIAMESE, _SIAMESE_CHOICES,
         **_SIAMESE_FIELDS, eval_shots=(5,), published=(Published(5, 0, 98.4, None, _SIAMESE),)),
    _row('omniglot_20way_1shot', 'omniglot_20way_1shot_siamese', _SIAMESE, _SIAMESE_CHOICES,
         **_SIAMESE_FIELDS, eval_shots=(1,), published=(Published(1, 0, 88.2, None, _SIAMESE),)),
    _row('omniglot_20way_5shot', 'omniglot_20way_5shot_siamese', _SIAMESE, _SIAMESE_CHOICES,
         **_SIAMESE_FIELDS, eval_shots=(5,), published=(Published(5, 0, 97.0, None, _SIAMESE),)),
    _row('omniglot_5way_1shot', 'omniglot_5way_1shot_relation', _RELATION, _RELATION_OMNIGLOT,
         **_RELATION_FIELDS, query_size=19, eval_shots=(1,),
         published=(Published(1, 0, 99.6, 0.2, _RELATION),)),
    _row('omniglot_5way_5shot', 'omniglot_5way_5shot_relation', _RELATION, _RELATION_OMNIGLOT,
         **_RELATION_FIELDS, query_size=15, eval_shots=(5,),
         published=(Published(5, 0, 99.8, 0.1, _RELATION),)),
    _row('omniglot_20way_1shot', 'omniglot_20way_1shot_relation', _RELATION, _RELATION_OMNIGLOT,
         **_RELATION_FIELDS, query_size=10, eval_shots=(1,),
         published=(Published(1, 0, 97.6, 0.2, _RELATION),)),
    _row('omniglot_20way_5shot', 'omniglot_20way_5shot_relation', _RELATION, _RELATION_OMNIGLOT,
         **_RELATION_FIELDS, query_size=5, eval_shots=(5,),
         published=(Published(5, 0, 99.1, 0.1, _RELATION),)),
    _row('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_relation', _RELATION, _RELATION_MINI,
         **_RELATION_FIELDS, num_filters=64, query_size=15, eval_shots=(1,),
         published=(Published(1, 0, 50.44, 0.82, _RELATION),)),
    _row('miniimagenet_5way_5shot', 'miniimagenet_5way_5shot_relation', _RELATION, _RELATION_MINI,
         **_RELATION_FIELDS, num_filters=64, query_size=10, eval_shots=(5,),
         published=(Published(5, 0, 65.32, 0.70, _RELATION),)),
)})

# --- The meta-learner LSTM (Ravi & Larochelle 2017) ---------------------------------------------------

_META_LSTM = ('Ravi & Larochelle 2017 (ICLR) Table 1, as paper Table 1; settings of the official '
              'code twitter-research/meta-learning-lstm (config/lstm/train-imagenet-{1,5}shot.lua)')
_META_LSTM_CHOICES = (
    'learner: the MAML row\'s conv4 (32 filters, max-pool), its batch norm (beta only, eps 1e-3, '
    'the statistics of each batch at training and test); the official learner\'s batch norm also '
    'learns gamma and predicts meta-test queries with running statistics (momentum 0.9 / 0.95) '
    'gathered over the support-set updates (docs/meta-lstm.md#decisions)',
    'meta-learner as the official code: layer 1 an LSTM of 20 units on the preprocessed (p = 10) '
    'loss and gradient, the cI cell over every learner parameter (batch norm\'s beta too), '
    'weights U(-0.01, 0.01), b_F ~ U(4, 5), b_I ~ U(-5, -4); its gates read back i_{t-1}, f_{t-1} '
    'as the paper (the official code reads their pre-sigmoid values: '
    '--meta_lstm_gate_input=logit)',
    'the learner\'s mean cross-entropy on the whole support set at each update (the official '
    'batch sizes 5 / 25 are the support sets), its gradient divided by the support size once '
    'more as the official feval; loss and gradient are inputs (tf.stop_gradient, no second '
    'derivatives, as the paper)',
    'Adam 1e-3, the meta-gradient clipped to global norm 0.25, one episode per update, 15 queries '
    'per class, 75,000 (1-shot) / 50,000 (5-shot) episodes: the official settings',
    'model selection on 600 validation tasks every 2,000 iterations at the reported step (the '
    'official code validates 100 episodes every 1,000 and tests its last snapshot)',
    'tested on the MAML rows\' 600 test tasks with K queries per class, predicted in one batch '
    '(the official test: 15 queries per class, --test_query_size=15)',
)
_META_LSTM_FIELDS = dict(method='meta_lstm', meta_batch_size=1, meta_lr=1e-3, meta_grad_clip=None,
                         query_size=15)
EXPERIMENTS.update({c.name: c for c in (
    _row('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_meta_lstm', _META_LSTM,
         _META_LSTM_CHOICES, **_META_LSTM_FIELDS, num_updates=12, test_num_updates=12,
         report_step=12, metatrain_iterations=75_000, eval_shots=(1,),
         published=(Published(1, 12, 43.44, 0.77, _R_AND_L),)),
    _row('miniimagenet_5way_5shot', 'miniimagenet_5way_5shot_meta_lstm', _META_LSTM,
         _META_LSTM_CHOICES, **_META_LSTM_FIELDS, num_updates=8, test_num_updates=8,
         report_step=8, metatrain_iterations=50_000, eval_shots=(5,),
         published=(Published(5, 8, 60.60, 0.71, _R_AND_L),)),
)})

# --- Meta Networks (Munkhdalai & Yu 2017) ------------------------------------------------------------

_METANET = ('Munkhdalai & Yu 2017 (ICML), as quoted by secondary sources (unverified against the '
            'paper\'s tables); settings of the official Chainer code tsendeemts/metanet')
_METANET_CHOICES = (
    'networks (methods/metanet.py): b and u are this repository\'s max-pooling conv4 + FC 1 (H, '
    'ReLU) + FC 2 (N), not the official 5 conv blocks; the last metanet_fast_convs conv blocks and '
    'both FCs are layer-augmented, without bias or normalization, as the official augmented layers '
    '(docs/metanet.md#decisions)',
    'meta learner as the official code: per-example support gradients of b -> MLP m (2-20-20-1) '
    '-> memory of fast weights; representation-loss gradients of u on 5 equal chunks of the '
    'support set -> LSTM d (20 units) -> u\'s fast weights; log-and-sign preprocessing with k = 7; '
    'gradients enter as inputs (no second derivatives); attention softmax of cosine similarity',
    'objective: the query cross-entropy summed over the task\'s queries (official x_loss), Adam '
    '1e-3, meta-gradient clipped to global norm 10 (official GradientClipping(10)), one episode '
    'per update',
    'the MAML rows\' episodes and 600 test tasks with K queries per class; model selection on '
    'validation tasks (the official scripts report the test accuracy of the best dev epoch)',
    _MODEL_SELECTION_CHOICE)
_METANET_OMNIGLOT = _METANET_CHOICES + (
    'Omniglot: every block layer-augmented and no normalization (official MetaNetFull), FC 1 of '
    '64 units (the official width), 10 queries per class at training (official)',
    'iterations that fit about 3 hours on 2 CPU cores (5-way 10,000 at ~0.9 s, 20-way 2,000 at '
    '~5 s), since the paper\'s count is not in the reference and the official loop runs until '
    'stopped; --metatrain_iterations (docs/metanet.md#decisions)', _OMNI_SPLIT_CHOICE)
_METANET_MINI = _METANET_CHOICES + (
    'MiniImagenet: trains 5-way, as it tests (the official script trains 10-way and tests 5-way '
    'with a second, untrained output layer; and its test generator draws 3 support images per '
    'class): the episodes here have one N (docs/metanet.md#decisions)',
    'MiniImagenet: the last 2 conv blocks layer-augmented (official MetaNetPartial: the last 2 '
    'of 5), the first 2 with batch norm; FC 1 of 64 units, not the official 288 (conv4 features '
    'are 800-d, and 800 x 800 fast weights per support example do not fit a CPU); 15 queries per '
    'class at training (official); 3,000 iterations (~3.4 s each on 2 CPU cores: about 3 hours), '
    'validated on 600 tasks every 1,000 (docs/metanet.md#decisions)')
_METANET_FIELDS = dict(method='metanet', **_METRIC_FIELDS, meta_batch_size=1, meta_lr=1e-3,
                       meta_grad_clip=None, max_pool=True, eval_shots=(1,))
EXPERIMENTS.update({c.name: c for c in (
    _row('omniglot_5way_1shot', 'omniglot_5way_1shot_metanet', _METANET, _METANET_OMNIGLOT,
         **_METANET_FIELDS, norm='None', query_size=10, metatrain_iterations=10_000,
         published=(Published(1, 0, 98.95, None, _METANET),)),
    _row('omniglot_20way_1shot', 'omniglot_20way_1shot_metanet', _METANET, _METANET_OMNIGLOT,
         **_METANET_FIELDS, norm='None', query_size=10, metatrain_iterations=2_000,
         published=(Published(1, 0, 97.00, None, _METANET),)),
    _row('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_metanet', _METANET, _METANET_MINI,
         **_METANET_FIELDS, metanet_fast_convs=2, query_size=15, metatrain_iterations=3_000,
         val_every=1000,
         published=(Published(1, 0, 49.21, 0.96, _METANET),)),
)})

# --- MANN (Santoro et al. 2016) and its LSTM baseline -----------------------------------------------

_MANN_MAML = ('paper Table 1 ("MANN, no conv", Santoro et al. 2016); these equal Santoro et al.\'s '
              'Table 1 accuracies at the 2nd and 5th presentation of a class, read here as 1-shot and '
              '5-shot (an interpretation, unverified)')
_MANN_SANTORO = ('Santoro et al. 2016 (ICML) Table 1, LSTM row, 2nd and 5th presentation of a '
                 'class, read as 1-shot and 5-shot as MAML\'s table reads the MANN row (an '
                 'interpretation, unverified)')
_MANN_CHOICES = (
    'training sequences from the rows\' own sampler: a training episode\'s N*(K+Q) = 5 x (1 + 9) '
    'images of the training characters (with the rows\' 90-degree rotations), shown in a '
    'pseudo-random order (a hash of the images), every step scored: Santoro\'s 5 classes x 10 '
    'instances; Santoro\'s translation augmentation is not used (docs/mann.md#decisions)',
    'the rows\' 28x28 images flattened, not Santoro\'s 20x20; one-hot labels one step late',
    'meta-test on the 600 test tasks of every row: the N*K support images as the sequence, then each '
    'query one more step from its end (independent of the other queries); one model serves K = 1, 5 '
    'and 10, and the accuracy at every presentation of a class is in each result '
    '(extra_metrics.instance_accuracy: Santoro\'s Table 1 at K = 10)',
    'memory written with a separate add vector a_t (the re-implementations tristandeleu/ntm-one-shot '
    'and snowkylin/ntm), not the key k_t the paper\'s eq. 8 adds; w^lu marks the H least used slots '
    '(eq. 6 with n = H, snowkylin), the least used slot zeroed before writing; initial state as '
    'tristandeleu\'s (docs/mann.md#decisions)',
    'batch 16 episodes, Adam 1e-4, 100,000 iterations, no gradient clipping (re-implementations; the '
    'paper\'s optimizer settings are unverified); Keras\' default LSTM and dense initializers',
    _MODEL_SELECTION_CHOICE, _OMNI_SPLIT_CHOICE)
_MANN_FIELDS = dict(method='mann', **_METRIC_FIELDS, update_batch_size=1, query_size=9,
                    meta_batch_size=16, meta_lr=1e-4, meta_grad_clip=None,
                    metatrain_iterations=100_000, eval_shots=(1, 5, 10), eval_chunk=50)
# Santoro et al.'s Table 1: accuracy (%) at the n-th presentation of a class, 5-way one-hot labels;
# this repo's numbers: results/<row>/test_K10.json, extra_metrics.instance_accuracy (index n - 1).
MANN_INSTANCES = (1, 2, 3, 4, 5, 10)
MANN_SANTORO_TABLE1 = {
    'omniglot_5way_1shot_mann': (36.4, 82.8, 91.0, 92.6, 94.9, 98.1),
    'omniglot_5way_1shot_mann_lstm': (24.4, 49.5, 55.3, 61.0, 63.6, 62.5),
}
EXPERIMENTS.update({c.name: c for c in (
    _row('omniglot_5way_1shot', 'omniglot_5way_1shot_mann', _MANN_MAML, _MANN_CHOICES,
         **_MANN_FIELDS, published=(Published(1, 0, 82.8, None, _MANN_MAML),
                                    Published(5, 0, 94.9, None, _MANN_MAML))),
    _row('omniglot_5way_1shot', 'omniglot_5way_1shot_mann_lstm', _MANN_SANTORO,
         _MANN_CHOICES[:3] + _MANN_CHOICES[4:], **_MANN_FIELDS, mann_memory=False,
         published=(Published(1, 0, 49.5, None, _MANN_SANTORO),
                    Published(5, 0, 63.6, None, _MANN_SANTORO))),
)})
METHOD_ROWS = {
    'reptile': ('omniglot_5way_reptile', 'miniimagenet_5way_reptile'),
    'meta_sgd': ('omniglot_5way_1shot_meta_sgd', 'miniimagenet_5way_1shot_meta_sgd',
                 'miniimagenet_5way_5shot_meta_sgd'),
    'maml_plus_plus': ('omniglot_5way_1shot_maml_plus_plus', 'miniimagenet_5way_1shot_maml_plus_plus',
                       'miniimagenet_5way_5shot_maml_plus_plus'),
    'protonet': ('omniglot_5way_1shot_protonet', 'omniglot_5way_5shot_protonet',
                 'omniglot_20way_1shot_protonet', 'omniglot_20way_5shot_protonet',
                 'miniimagenet_5way_1shot_protonet', 'miniimagenet_5way_5shot_protonet'),
    'matching': ('omniglot_5way_1shot_matching', 'omniglot_5way_5shot_matching',
                 'omniglot_20way_1shot_matching', 'omniglot_20way_5shot_matching',
                 'miniimagenet_5way_1shot_matching', 'miniimagenet_5way_5shot_matching'),
    'anil': ANIL_ROWS,
    'siamese': ('omniglot_5way_1shot_siamese', 'omniglot_5way_5shot_siamese',
                'omniglot_20way_1shot_siamese', 'omniglot_20way_5shot_siamese'),
    'relation': ('omniglot_5way_1shot_relation', 'omniglot_5way_5shot_relation',
                 'omniglot_20way_1shot_relation', 'omniglot_20way_5shot_relation',
                 'miniimagenet_5way_1shot_relation', 'miniimagenet_5way_5shot_relation'),
    'meta_lstm': ('miniimagenet_5way_1shot_meta_lstm', 'miniimagenet_5way_5shot_meta_lstm'),
    'metanet': ('omniglot_5way_1shot_metanet', 'omniglot_20way_1shot_metanet',
                'miniimagenet_5way_1shot_metanet'),
    'mann': ('omniglot_5way_1shot_mann', 'omniglot_5way_1shot_mann_lstm'),
}
_FAMILY = {row for rows in METHOD_ROWS.values() for row in rows}
OMNIGLOT_ROWS = tuple(n for n, c in EXPERIMENTS.items()
                      if c.datasource == 'omniglot' and n not in _FAMILY)
MINIIMAGENET_ROWS = tuple(n for n, c in EXPERIMENTS.items()
                          if c.datasource == 'miniimagenet' and n not in _FAMILY)
# scripts/compare_methods.sh: one row per method on the same test tasks (5-way 1-shot).
COMPARE_ROWS = {
    'omniglot': ('omniglot_5way_1shot', 'omniglot_5way_1shot_meta_sgd', 'omniglot_5way_1shot_maml_plus_plus',
                 'omniglot_5way_reptile', 'omniglot_5way_1shot_protonet', 'omniglot_5way_1shot_matching',
                 'omniglot_5way_1shot_siamese', 'omniglot_5way_1shot_relation',
                 'omniglot_5way_1shot_metanet', 'omniglot_5way_1shot_mann'),
    'miniimagenet': ('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_first_order',
                     'miniimagenet_5way_1shot_anil', 'miniimagenet_5way_1shot_meta_sgd',
                     'miniimagenet_5way_1shot_maml_plus_plus', 'miniimagenet_5way_reptile',
                     'miniimagenet_5way_1shot_protonet', 'miniimagenet_5way_1shot_matching',
                     'miniimagenet_5way_1shot_relation', 'miniimagenet_5way_1shot_meta_lstm',
                     'miniimagenet_5way_1shot_metanet'),
}

# Named groups the scripts and the report use: the figures show the first three; the table adds
# MAML with the paper text's alpha.
SINUSOID_FIGURE_ROWS = ('sinusoid_maml', 'sinusoid_pretrained', 'sinusoid_oracle')
SINUSOID_ROWS = SINUSOID_FIGURE_ROWS + ('sinusoid_maml_paper_alpha',)

DISCREPANCIES = {
    'sinusoid alpha': _ALPHA_CHOICE,
}


# --- Reinforcement learning (paper §5.3, Fig. 5) -----------------------------------------------------

RL_METHODS = ('maml', 'pretrained', 'random', 'oracle')
RL_ENVS = ('navigation', 'cheetah_vel', 'cheetah_dir', 'ant_vel', 'ant_dir')
_FIG5 = ('paper Fig. 5, values from the original icml/*_results_*.pkl files (mean over 40 test '
         'tasks)')


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """One RL experiment: a method trained on a task family, then evaluated as Fig. 5."""
  name: str
  env: str                            # a family of rl.envs.ENV_NAMES
  method: str                         # 'maml' | 'pretrained' (TRPO, no inner step) | 'random' | 'oracle'
  inner_lr: float = 0.1               # alpha of the inner policy-gradient step (maml)
  seed: int = config.option(0, 'Seed of the policy and the tasks.', flag=True)
  meta_batch_size: int = config.option(40, 'Tasks per outer TRPO step.', flag=True)
  per_task: int = 20                  # trajectories per task and update (the "fast batch")
  iterations: int = config.option(500, 'Outer TRPO steps (0: the random baseline).',
                                  flag='metatrain_iterations')
  max_kl: float = config.option(0.01, 'delta, the largest mean KL of a TRPO meta-update.',
                                flag=True)
  cg_iters: int = 10
  cg_damping: float = 1e-5
  fd_hvp_eps: float | None = config.option(
      None, "TRPO's curvature products by the original's finite differences of grad KL with step "
      'fd_hvp_eps / ||theta|| (its code: 1) instead of exact ones (None).', flag=True)
  backtrack_ratio: float = 0.8
  max_backtracks: int = 15
  gamma: float = 0.99                 # discount; GAE lambda is 1
  hidden: tuple[int, ...] = (100, 100)
  # Evaluation (Fig. 5): test tasks drawn with test_seed, test_steps plain gradient steps, the first
  # of size test_lr and the later ones test_lr * test_later_lr_factor.
  test_tasks: int = config.option(40, 'Test tasks of the Fig. 5 evaluation.',
                                  flag='num_test_tasks')
  test_per_task: int = 20
  test_steps: int = 3
  test_lr: float = 0.1
  test_later_lr_factor: float = 0.5
  test_seed: int = 1
  # If set, test_lr is chosen from this grid by the mean return after 1..test_steps steps on
  # tune_tasks validation tasks (drawn with tune_seed, never the test tasks).
  test_lr_grid: tuple[float, ...] = ()
  tune_tasks: int = 20
  tune_seed: int = 100
  # Runtime.
  checkpoint_every: int = config.option(10, 'Iterations between checkpoints.', flag=True)
  print_every: int = config.option(1, 'Iterations between progress lines.', flag=True)
  env_workers: int = config.option(
      0, 'Processes that step the MuJoCo envs (speed only: the same trajectories with any number; '
      '0: one per core, at most 8).', flag=True)
  # Provenance: published average return after 0..test_steps gradient steps.
  published: tuple[float, ...] = ()
  source: str = _FIG5
  choices: tuple[str, ...] = ()

  RUNTIME_FIELDS = ('iterations', 'checkpoint_every', 'print_every', 'env_workers', 'test_tasks',
                    'test_per_task', 'test_steps', 'test_lr', 'test_later_lr_factor', 'test_seed',
                    'test_lr_grid', 'tune_tasks', 'tune_seed')

  @property
  def oracle(self) -> bool:
    return self.method == 'oracle'

  @property
  def inner_steps(self) -> int:
    return 1 if self.method == 'maml' else 0

  @property
  def selection_rule(self) -> str:
    """Which checkpoint is tested (the paper's choice), fixed before any test run."""
    if self.method == 'random':
      return 'none (the random policy is not trained)'
    return ('the highest average training return (post-update for MAML) over the run, as the '
            'paper evaluates; a tie goes to the earlier iteration')

  def replace(self, **changes) -> 'RLConfig':
    names = {f.name for f in dataclasses.fields(self)}
    unknown = sorted(set(changes) - names)
    if unknown:
      raise ConfigError(f'unknown config field(s) for an RL row: {", ".join(unknown)}')
    return dataclasses.replace(self, **changes).validate()

  def validate(self) -> 'RLConfig':
    def bad(field, why):
      raise ConfigError(f'{self.name}: {field}={getattr(self, field)!r} {why}')
    if self.env not in RL_ENVS:
      bad('env', f'is not one of {RL_ENVS}')
    if self.method not in RL_METHODS:
      bad('method', f'is not one of {RL_METHODS}')
    for field in ('meta_batch_size', 'per_task', 'cg_iters', 'max_backtracks', 'test_tasks',
                  'test_per_task', 'checkpoint_every', 'print_every'):
      if getattr(self, field) < 1:
        bad(field, 'must be at least 1')
    if self.env_workers < 0:
      bad('env_workers', 'must not be negative (0: one per core)')
    for field in ('iterations', 'test_steps'):
      if getattr(self, field) < 0:
        bad(field, 'must not be negative')
    if (self.method == 'random') != (self.iterations == 0):
      bad('iterations', 'must be 0 exactly for the random baseline')
    for field in ('inner_lr', 'max_kl', 'test_lr'):
      if not (math.isfinite(getattr(self, field)) and getattr(self, field) > 0):
        bad(field, 'must be a positive number')
    if self.fd_hvp_eps is not None and not (math.isfinite(self.fd_hvp_eps) and self.fd_hvp_eps > 0):
      bad('fd_hvp_eps', 'must be None (exact curvature products) or a positive number')
    if any(not lr > 0 for lr in self.test_lr_grid):
      bad('test_lr_grid', 'must hold positive step sizes')
    if self.test_lr_grid and self.tune_seed == self.test_seed:
      bad('tune_seed', 'must differ from test_seed: step sizes are never tuned on the test tasks')
    if not 0 < self.backtrack_ratio < 1 or not 0 < self.gamma <= 1:
      bad('backtrack_ratio', 'must lie in (0, 1), and gamma in (0, 1]')
    return self

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: Mapping) -> 'RLConfig':
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(data).items()}
    return cls(**data).validate()


def _rl_rows(env: str, maml: dict, pretrained: dict, random: dict, oracle: dict, **common):
  """The four Fig. 5 curves of one task family."""
  base = RLConfig(name='', env=env, method='maml', **common)
  return [base.replace(name=f'rl_{env}_{method}', method=method, **settings)
          for method, settings in (('maml', maml), ('pretrained', pretrained), ('random', random),
                                   ('oracle', oracle))]


_NAV_CHOICES = (
    'inner alpha 0.5, the original code\'s and its ICML checkpoint\'s (flr_0.5), not App. A.2\'s 0.1, '
    'since the published numbers come from the original\'s runs (docs/rl.md#decisions)',
    '100 meta-iterations as the original script (n_itr=100); the paper trained "up to 500"',
    'reward -||s - g|| (Euclidean, the code) not the text\'s squared distance: the published numbers '
    'come from the code',
    'the pretrained baseline is trained with TRPO on its own samples (no inner step), like the '
    'locomotion ones; the original nav run used Adam on the pre-update surrogate',
    'the pretrained baseline\'s test step size is tuned on 20 validation tasks from a grid around '
    'the original\'s hand-picked one, since TRPO shrinks its std and the original\'s step overshoots '
    '(docs/rl.md#2d-navigation)',
    'the model evaluated is the one with the best average training return (post-update for MAML), '
    'as the paper; --test_iter=-2 evaluates the last')
_LOCO_CHOICES = _NAV_CHOICES[3:]
# The published cheetah curves come from the ICML checkpoints that test_maml_cheetah*.py load, whose
# settings differ from the launcher's defaults (cluster_maml_trpo_cheetah.py: fast batch 20, delta 0.01).
_CHEETAH_VEL_CHOICE = ('fast batch 10 trajectories per task, the ICML checkpoint\'s '
                       '(maml1_fbs10_mbs40_flr_0.1_mlr0.01/itr_475.pkl), not the launcher\'s 20, '
                       'since the published curve comes from it (docs/rl.md#decisions)')
_CHEETAH_DIR_CHOICE = ('delta = 0.02, the ICML checkpoint\'s (maml1_fbs20_mbs40_flr_0.1_mlr0.02/'
                       'itr_100.pkl), not the launcher\'s 0.01, since the published curve comes '
                       'from it; --max_kl=0.01 trains the other (docs/rl.md#decisions)')
_PRETRAINED_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)

RL_EXPERIMENTS: dict[str, RLConfig] = {c.name: c for c in (
    _rl_rows('navigation', inner_lr=0.5, meta_batch_size=20, iterations=100, test_per_task=40,
             test_lr=0.5, choices=_NAV_CHOICES,
             maml=dict(published=(-40.4, -11.7, -3.3, -3.2)),
             pretrained=dict(test_lr_grid=_PRETRAINED_GRID,
                             published=(-40.8, -19.7, -11.7, -8.5)),
             random=dict(iterations=0, published=(-82.7, -58.0, -53.8, -46.8)),
             oracle=dict(test_steps=0, published=(-2.3,)))
    + _rl_rows('cheetah_vel', choices=_LOCO_CHOICES,
               maml=dict(per_task=10, choices=(_CHEETAH_VEL_CHOICE,) + _LOCO_CHOICES,
                         published=(-129.5, -78.6, -66.6, -60.8)),
               pretrained=dict(test_lr=0.02, test_lr_grid=_PRETRAINED_GRID,
                               published=(-158.0, -135.4, -128.5, -133.6)),
               random=dict(iterations=0, published=(-254.8, -254.3, -246.8, -230.8)),
               oracle=dict(test_steps=0, published=(-54.5,)))
    + _rl_rows('cheetah_dir', choices=_LOCO_CHOICES,
               maml=dict(max_kl=0.02, choices=(_CHEETAH_DIR_CHOICE,) + _LOCO_CHOICES,
                         published=(-50.7, 293.2, 313.5, 315.7)),
               pretrained=dict(test_lr=0.2, test_lr_grid=_PRETRAINED_GRID,
                               published=(-43.0, -24.8, -12.9, 19.6)),
               random=dict(iterations=0, test_lr=0.5, published=(-35.7, 21.8, 62.3, 86.2)),
               oracle=dict(test_steps=0, published=(442.7,)))
    + _rl_rows('ant_vel', choices=_LOCO_CHOICES,
               maml=dict(published=(30.6, 96.7, 100.1, 101.4)),
               pretrained=dict(test_lr=0.2, test_lr_grid=_PRETRAINED_GRID,
                               published=(-1.8, 6.1, 8.5, 9.5)),
               random=dict(iterations=0, test_lr=1.0, published=(-78.6, -62.8, -48.6, -35.6)),
               oracle=dict(test_steps=0, published=(107.9,)))
    # Ant direction: 40 trajectories per task ("40 rollouts for ant fwd/bwd"), later test steps at
    # 0.01 x the first, test tasks drawn with seed 2 (the original test script).
    + _rl_rows('ant_dir', per_task=40, test_per_task=40, test_later_lr_factor=0.01, test_seed=2,
               choices=_LOCO_CHOICES,
               maml=dict(published=(8.7, 499.2, 500.7, 499.1)),
               pretrained=dict(test_lr=0.2, test_lr_grid=_PRETRAINED_GRID,
                               published=(3.2, 1.3, 6.5, 6.9)),
               random=dict(iterations=0, test_lr=1.0, published=(3.1, 9.3, 16.0, 26.1)),
               oracle=dict(test_steps=0, published=(524.8,)))
)}


# --- Learning to learn by gradient descent by gradient descent (Andrychowicz et al. 2016) -----------

L2L_PROBLEMS = ('quadratic', 'mnist')
_L2L_PAPER = 'Andrychowicz et al. 2016 (NeurIPS), arXiv 1606.04474'
# Half-decades around AdrienLE's grid (1 .. 1e-5), widened to 100: f averages 128 functions, so the
# quadratic's gradients are small and plain SGD wants rates above 1.
_L2L_LR_GRID = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4, 3e-5, 1e-5)


@dataclasses.dataclass(frozen=True)
class L2LConfig:
  """One learned-optimizer experiment: meta-train the LSTM optimizer on a family of problems, then
  compare it with tuned hand-designed optimizers on fresh test problems (paper Fig. 2, 3)."""
  name: str
  problem: str                        # 'quadratic' | 'mnist' (L2L_PROBLEMS)
  seed: int = config.option(0, 'Seed of phi_0 and of the meta-training problems.', flag=True)
  # The optimizer m(g; phi).
  hidden: tuple[int, ...] = (20, 20)  # LSTM layers, shared by every coordinate
  preprocess: bool = config.option(
      True, 'LSTM optimizer input: the gradient preprocessed as (log|g|/p, sign g) or (-1, e^p g) '
      '(paper App. A) if True, the raw gradient if False.', flag=True)
  preprocess_p: float = 10.0          # p of the preprocessing
  output_scale: float = config.option(
      0.1, 'LSTM optimizer: the factor of its linear output (the update is scale * W h + b).',
      flag=True)
  # Meta-training: Adam on the sum of the optimizee's losses, truncated BPTT.
  iterations: int = config.option(
      2000, 'Meta-training optimizations (each optimizes a fresh problem for optimization_steps '
      'steps, one Adam step on phi per unroll).', flag='metatrain_iterations')
  meta_lr: float = config.option(0.003, 'Adam learning rate of phi.', flag=True)
  optimization_steps: int = 100       # T, the steps of one optimization (training and test)
  unroll: int = 20                    # truncated BPTT: one meta-gradient step every `unroll` steps
  second_derivatives: bool = config.option(
      False, 'LSTM optimizer: backpropagate through the optimizee\'s gradient too (the paper and '
      'this repo drop these second derivatives).', flag=True)
  # Problems.
  quadratic_dims: int = 10
  quadratic_functions: int = 128      # functions per problem (one batch)
  quadratic_init: str = config.option(
      'uniform', 'Quadratic problems: W and y uniform on [0, 1) (official code) or gaussian (the '
      'paper\'s text).', flag=True, choices=('uniform', 'gaussian'))
  mnist_path: str | None = config.option(
      None, 'MNIST rows: Keras\' mnist.npz (x_train, y_train, x_test, y_test).', flag=True)
  mnist_hidden: int = 20              # sigmoid units of the MNIST MLP
  mnist_batch_size: int = 128
  # Evaluation: every optimizer on the same test_problems instances (drawn with test_seed); the
  # learning rate of each baseline of compared_with is the one of lr_grid with the lowest mean loss
  # over steps 0..T on tune_problems other instances (tune_seed; MNIST: training images), never on
  # the test problems.
  compared_with: tuple[str, ...] = ('sgd', 'rmsprop', 'adam', 'nag')
  lr_grid: tuple[float, ...] = _L2L_LR_GRID
  test_problems: int = config.option(100, 'Test problems of the evaluation.', flag='num_test_tasks')
  test_seed: int = 1
  tune_problems: int = 20
  tune_seed: int = 2
  # Runtime.
  checkpoint_every: int = config.option(50, 'Iterations between checkpoints.', flag=True)
  print_every: int = config.option(10, 'Iterations between progress lines.', flag=True)
  # Provenance: the paper gives curves, no numbers.
  source: str = _L2L_PAPER
  choices: tuple[str, ...] = ()

  RUNTIME_FIELDS = ('iterations', 'checkpoint_every', 'print_every', 'mnist_path', 'test_problems',
                    'test_seed', 'tune_problems', 'tune_seed', 'lr_grid', 'compared_with')

  @property
  def selection_rule(self) -> str:
    return 'the last meta-training iteration (the LSTM optimizer is not validated)'

  def replace(self, **changes) -> 'L2LConfig':
    names = {f.name for f in dataclasses.fields(self)}
    unknown = sorted(set(changes) - names)
    if unknown:
      raise ConfigError(f'unknown config field(s) for an L2L row: {", ".join(unknown)}')
    return dataclasses.replace(self, **changes).validate()

  def validate(self) -> 'L2LConfig':
    def bad(field, why):
      raise ConfigError(f'{self.name}: {field}={getattr(self, field)!r} {why}')
    if self.problem not in L2L_PROBLEMS:
      bad('problem', f'is not one of {L2L_PROBLEMS}')
    if self.quadratic_init not in ('uniform', 'gaussian'):
      bad('quadratic_init', 'is not one of (\'uniform\', \'gaussian\')')
    for field in ('optimization_steps', 'unroll', 'quadratic_dims', 'quadratic_functions',
                  'mnist_hidden', 'mnist_batch_size', 'test_problems', 'tune_problems',
                  'checkpoint_every', 'print_every'):
      if getattr(self, field) < 1:
        bad(field, 'must be at least 1')
    if self.iterations < 0:
      bad('iterations', 'must not be negative')
    if not self.hidden or min(self.hidden) < 1:
      bad('hidden', 'must list at least one LSTM layer of at least 1 unit')
    if self.optimization_steps % self.unroll:
      bad('unroll', f'must divide optimization_steps ({self.optimization_steps})')
    for field in ('meta_lr', 'output_scale', 'preprocess_p'):
      if not (math.isfinite(getattr(self, field)) and getattr(self, field) > 0):
        bad(field, 'must be a positive number')
    if not self.lr_grid or any(not lr > 0 for lr in self.lr_grid):
      bad('lr_grid', 'must hold positive learning rates')
    if set(self.compared_with) - {'sgd', 'rmsprop', 'adam', 'nag'}:
      bad('compared_with', 'may hold sgd, rmsprop, adam, nag only')
    if self.tune_seed == self.test_seed:
      bad('tune_seed', 'must differ from test_seed: learning rates are never tuned on the test problems')
    if self.problem != 'mnist' and self.mnist_path is not None:
      bad('mnist_path', 'is read by the MNIST rows only')
    return self

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: Mapping) -> 'L2LConfig':
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(data).items()}
    return cls(**data).validate()


_L2L_CHOICES = (
    'the update rule is theta + output_scale * (W h + b) with output_scale 0.1, as re-implementations '
    'read the paper\'s text (the official code: 1.0 quadratic, 0.01 MNIST); --output_scale '
    '(docs/l2l.md#decisions)',
    'meta-loss: the sum of f(theta_t) over each unroll of 20 steps (t = 0..20, as the official '
    'meta.py; f(theta_0) of an unroll adds no gradient), one Adam step per unroll, the optimizee '
    'gradient an input (tf.stop_gradient; --second_derivatives=True keeps them)',
    'baselines with Torch7 optim\'s other settings, as the paper (NAG momentum 0.9, RMSprop decay '
    '0.99, Adam 0.9/0.999, eps 1e-8); each learning rate chosen from a half-decade grid 100 .. 1e-5 by '
    'the mean loss over the 100 steps on 20 tuning problems drawn apart from the test problems',
    'the optimizer tested is the last one meta-trained (no validation-based selection; the '
    'official code and AdrienLE\'s notebook keep the best by evaluation loss)',
)
L2L_EXPERIMENTS: dict[str, L2LConfig] = {c.name: c.validate() for c in (
    L2LConfig(
        name='l2l_quadratic', problem='quadratic', preprocess=True, meta_lr=0.003, iterations=2000,
        source=f'{_L2L_PAPER} §3.1, Fig. 2 (left); google-deepmind/learning-to-learn util.py '
               '(quadratic: batch 128, 10 dims, 100 steps, unroll 20); meta lr 0.003 and 2,000 '
               'optimizations (100 epochs of 20) from AdrienLE/learning_by_grad_by_grad_repro',
        choices=(
            'W, y uniform on [0, 1) and theta_0 ~ N(0, 0.01^2), the official problems.quadratic; '
            'the paper\'s text says Gaussian: --quadratic_init=gaussian (docs/l2l.md#decisions)',
            'f is the mean over the batch of 128 functions of ||W x - y||^2 (the official code), so '
            'each function\'s gradient is 1/128 of its own',
            'the gradient preprocessed as App. A (p = 10), not raw as the official quadratic config '
            'and AdrienLE, since in short trials (500 optimizations) only the preprocessed input '
            'got below tuned Adam; --preprocess=False') + _L2L_CHOICES),
    L2LConfig(
        name='l2l_mnist', problem='mnist', preprocess=True, meta_lr=0.01, iterations=1000,
        source=f'{_L2L_PAPER} §3.2, Fig. 3 (left); google-deepmind/learning-to-learn problems.mnist '
               '(one hidden layer of 20 sigmoid units, batch 128, N(0, 0.01^2) init); meta lr 0.01 '
               'and 1,000 optimizations (50 epochs of 20) from AdrienLE/learning_by_grad_by_grad_repro',
        choices=(
            'meta-training and the baselines\' tuning draw minibatches from the 60,000 training '
            'images, the test problems from the 10,000 test images (the official mode="test")',
            'preprocessing as the paper\'s App. A with p = 10 (the official LogAndSign: k = 5 and a '
            'clamp, not the same formula)') + _L2L_CHOICES),
)}


def get_l2l(name: str) -> L2LConfig:
  """The learned-optimizer row `name`, or ConfigError listing them."""
  if name not in L2L_EXPERIMENTS:
    raise ConfigError(f'unknown L2L experiment {name!r}; choose one of: {", ".join(L2L_EXPERIMENTS)}')
  return L2L_EXPERIMENTS[name]


def default_experiment(datasource: str) -> str:
  """The row used when only --datasource is given (the original CLI had no --experiment)."""
  defaults = {'sinusoid': 'sinusoid_maml', 'omniglot': 'omniglot_5way_1shot',
              'miniimagenet': 'miniimagenet_5way_1shot', 'folder': 'folder_5way_1shot'}
  if datasource not in defaults:
    raise ConfigError(f'unknown datasource {datasource!r}; choose one of {sorted(defaults)}')
  return defaults[datasource]


# What a row with model_from may change from the row it takes its model from: evaluation only. Only
# the classifier baselines share (their classifier trains on single images, so neither K nor the
# baseline's kind reaches training).
SHARED_MODEL_FIELDS = frozenset(
    {'name', 'baseline', 'update_batch_size', *Config.RUNTIME_FIELDS, *Config.PROVENANCE_FIELDS})


def shared_model_fields(row: Config) -> dict:
  """For a row with model_from: {field: value} where it differs from that row, all of them fields
  that leave training alone (else ConfigError). Its evaluation is the trained run's config with
  these applied."""
  source = get(row.model_from)
  classifiers = ('finetune', 'nearest_neighbor')
  if source.model_from or row.baseline not in classifiers or source.baseline not in classifiers:
    raise ConfigError(f'{row.name}: model_from={row.model_from!r} must name a classifier baseline row '
                      'that trains its own model, from a classifier baseline row')
  diff = {f.name: getattr(row, f.name) for f in dataclasses.fields(Config)
          if getattr(row, f.name) != getattr(source, f.name)}
  if set(diff) - SHARED_MODEL_FIELDS:
    raise ConfigError(f'{row.name}: differs from {row.model_from} in what it trains '
                      f'({", ".join(sorted(set(diff) - SHARED_MODEL_FIELDS))}), so it cannot share its model')
  return diff


def get(name: str) -> Config:
  """The supervised row `name`, or ConfigError listing the rows that exist."""
  if name not in EXPERIMENTS:
    raise ConfigError(f'unknown experiment {name!r}; choose one of: '
                      f'{", ".join([*EXPERIMENTS, *RL_EXPERIMENTS, *L2L_EXPERIMENTS])}')
  return EXPERIMENTS[name]


def config_type(name: str) -> type:
  """The config type of row `name`: RLConfig, L2LConfig or Config (what its config.json loads into)."""
  return RLConfig if name in RL_EXPERIMENTS else L2LConfig if name in L2L_EXPERIMENTS else Config


def get_rl(name: str) -> RLConfig:
  """The RL row `name`, or ConfigError listing the RL rows."""
  if name not in RL_EXPERIMENTS:
    raise ConfigError(f'unknown RL experiment {name!r}; choose one of: {", ".join(RL_EXPERIMENTS)}')
  return RL_EXPERIMENTS[name]
