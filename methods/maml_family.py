"""MAML (Finn et al. 2017) and its variants, which are MAML with options (maml.MAML's arguments):

  first-order MAML   stop_grad: the inner gradients are constants in the meta-gradient.
  Meta-SGD           inner_lr='per_parameter': alpha is a learned tensor per adapted variable.
  MAML++             inner_lr='per_layer_per_step', per_step_norm, multi_step_loss_epochs,
                     first_order_iterations (derivative-order annealing: a 'first_order' phase
                     first), min_meta_lr (cosine annealing of beta).
  ANIL               inner_loop='head': only the head adapts (models.inner_loop_mask).

The sinusoid baselines train the same network with the 'pretrain' objective (the pre-update loss
of every task, no inner step) and fine-tune it at meta-test like MAML: 'pretrained', and 'oracle',
whose input carries the task's amplitude and phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

import config
from config import option
from maml import MAML
import methods
import models
import utils

if TYPE_CHECKING:
  from experiments import Config

INNER_LRS = ('fixed', 'per_parameter', 'per_layer_per_step')


@config.Part
class MAMLOptions:
  """The options of MAML's variants (module docstring); their defaults are plain MAML."""
  inner_lr: str = option(
      'fixed', "Inner step sizes: 'fixed' alpha, learned 'per_parameter' (Meta-SGD) or "
      "'per_layer_per_step' (MAML++ LSLR), initialized at alpha.", flag=True, choices=INNER_LRS)
  per_step_norm: bool = option(
      False, 'MAML++ BNWB: normalization parameters learned per inner step.', flag=True)
  multi_step_loss_epochs: int = option(
      0, 'MAML++ MSL: epochs of the annealed multi-step loss (0: off).', flag=True)
  epoch_iterations: int = option(
      500, "MAML++'s epoch, in meta-iterations (MSL weights change per epoch).")
  first_order_iterations: int = option(
      0, 'MAML++ DA: first-order meta-gradients for this many meta-iterations before second order '
      '(derivative-order annealing).', flag=True)

  def check(self, bad: config.Bad) -> None:
    config.at_least(self, bad, 0, ('multi_step_loss_epochs', 'first_order_iterations'))
    config.at_least(self, bad, 1, ('epoch_iterations',))
    if self.multi_step_loss_epochs and self.num_updates < 1:
      bad('multi_step_loss_epochs', 'needs num_updates >= 1')
    if self.per_step_norm and (self.norm == 'None' or self.adapt_norm):
      bad('per_step_norm', 'needs a norm that the inner loop does not adapt (norm set, adapt_norm False)')
    if self.method != MAMLFamily.name:  # the variants, the baselines' objective: MAML's alone
      variants = {f: getattr(self, f) for f in (*_VARIANT_FIELDS, 'stop_grad', 'adapt_norm')
                  if getattr(self, f) != type(self).__dataclass_fields__[f].default}
      if self.baseline is not None or self.pretrain_iterations:
        bad('method', 'trains no baseline and no pretrain objective')
      if self.inner_loop != 'all' or (variants and variants != {'adapt_norm': True}):
        bad('method', f'has none of MAML\'s variants ({", ".join(variants) or "inner_loop"})')


_VARIANT_FIELDS = ('inner_lr', 'per_step_norm', 'multi_step_loss_epochs', 'first_order_iterations')


def maml_options(cfg: Config, model: keras.Model, num_updates: int) -> dict:
  """maml.MAML's keyword arguments that Reptile shares: alpha, the inner steps, which variables
  adapt, meta-gradient clipping, how the forward maps over tasks, transductive evaluation."""
  batched = methods.batched_forward(cfg, model)
  return dict(update_lr=cfg.update_lr, num_updates=num_updates, first_order=cfg.stop_grad,
              adapt_mask=models.inner_loop_mask(model, cfg.adapt_norm, cfg.inner_loop),
              meta_grad_clip=cfg.meta_grad_clip, task_parallelism=cfg.task_parallelism,
              batched_forward=batched, transductive=cfg.transductive)


def maml_learner(cfg: Config, model: keras.Model, loss_fn, metric_fn, num_updates: int) -> MAML:
  """The row's MAML over `model`, with its variants' options."""
  return MAML(model, loss_fn, metric_fn, **maml_options(cfg, model, num_updates),
              inner_lr=cfg.inner_lr,
              per_step_mask=models.norm_mask(model) if cfg.per_step_norm else None,
              multi_step_loss_epochs=cfg.multi_step_loss_epochs,
              epoch_iterations=cfg.epoch_iterations, task_chunk=task_chunk(cfg, model),
              chunks_in_flight=chunks_in_flight(cfg))


def chunks_in_flight(cfg: Config) -> int:
  """The chunks of the meta-gradient computed at once: the row's chunks_in_flight for a chunking
  method on one device, else 1."""
  if not methods.get(cfg).chunks_meta_gradient or cfg.distribute != 'none':
    return 1
  return cfg.chunks_in_flight


def task_chunk(cfg: Config, model: keras.Model) -> int:
  """The row's task_chunk; None picks it from the episode's size (models.auto_task_chunk), one
  device only (a distributed step splits the meta-batch over devices instead)."""
  if cfg.task_chunk is not None:
    return cfg.task_chunk
  if cfg.distribute != 'none':
    return 0
  examples = cfg.num_classes * (cfg.update_batch_size + cfg.train_query_size)
  in_flight = chunks_in_flight(cfg)
  if in_flight > 1:
    return models.auto_task_chunk(model, cfg.meta_batch_size, examples,
                                  models.CHUNK_IN_FLIGHT_ACTIVATIONS, in_flight)
  return models.auto_task_chunk(model, cfg.meta_batch_size, examples)


@methods.register('maml')
class MAMLFamily(methods.Method):
  """MAML and its variants; the learner is a maml.MAML.

  Meta-training: theta <- theta - beta grad_theta sum_i L_Ti(f_theta'_i), theta'_i after
  num_updates inner steps of size alpha on task i's support set (maml.MAML.make_train_step).
  Meta-test: test_num_updates steps of size alpha (tunable, or the learned step sizes).
  """
  options = MAMLOptions
  chunks_meta_gradient = True
  report_groups = {
      'anil': 'ANIL: only the head adapts (Raghu et al. 2020)',
      'meta_sgd': 'Meta-SGD: learned per-parameter step sizes (Li et al. 2017)',
      'maml_plus_plus': 'MAML++ (Antoniou et al. 2019)',
  }

  def build(self, model: keras.Model) -> MAML:
    loss_fn, metric_fn = utils.loss_and_metric(self.cfg)
    return maml_learner(self.cfg, model, loss_fn, metric_fn, self.cfg.num_updates)

  def phases(self) -> list[tuple[str, int]]:
    """'pretrain', then MAML++'s first-order phase (derivative-order annealing), then 'maml'."""
    cfg = self.cfg
    return methods.schedule([
        (methods.PRETRAIN, cfg.pretrain_iterations),
        ('first_order', cfg.pretrain_iterations + cfg.first_order_iterations),
        (methods.META, cfg.total_iterations)])

  def make_train_step(self, learner: MAML, optimizer, objective, steps_per_call=1, strategy=None):
    if objective == 'first_order':  # the meta-objective with first-order meta-gradients
      return learner.make_train_step(optimizer, methods.META, self.cfg.jit_compile, steps_per_call,
                                     strategy, first_order=True)
    return super().make_train_step(learner, optimizer, objective, steps_per_call, strategy)

  @property
  def tunes_step_size(self) -> bool:
    return self.cfg.inner_lr == 'fixed'  # learned step sizes ignore lr

  def reported_step_size(self, lr: float) -> float | str:
    return lr if self.cfg.inner_lr == 'fixed' else 'learned'

  def label(self) -> str:
    cfg = self.cfg
    if cfg.baseline == 'oracle':
      return 'oracle'
    if cfg.pretrain_iterations and not cfg.metatrain_iterations:
      return 'pretrained'
    if cfg.per_step_norm or cfg.multi_step_loss_epochs:
      return 'MAML++'
    if cfg.inner_lr == 'per_parameter':
      return 'Meta-SGD'
    if cfg.inner_loop == 'head':
      return 'ANIL'
    name = 'first-order MAML' if cfg.stop_grad else 'MAML'
    return name + ('' if cfg.conv or cfg.datasource == 'sinusoid' else ', no conv')
