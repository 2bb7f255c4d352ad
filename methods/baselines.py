"""The paper's MiniImagenet baselines as methods (Table 1, from Ravi & Larochelle 2017); the
pieces live in the top-level baselines.py.

Both train the row's network as an ordinary classifier over the meta-training classes (the
'pretrain' objective on batches of single images, no episodes), and differ at meta-test only:
fine-tuning gives the backbone a zero N-way head and takes test_num_updates SGD steps of size alpha
on the support set; nearest neighbour labels each query like its nearest support example in the
backbone's feature space, with no steps and nothing to tune.
"""

from __future__ import annotations

import tensorflow as tf

import baselines
from maml import MAML
import methods
from methods.maml_family import MAMLFamily, maml_learner


@methods.register('finetune')
class FineTuning(MAMLFamily):
  """The classifier, fine-tuned at meta-test by MAML's evaluation step (alpha tunable). Its
  learner is a MAML over the classifier, whose variables the optimizer updates."""

  def train_sampler(self) -> baselines.ClassificationSampler:
    """Batches (images [B, H, W, C], labels [B]) of cfg.meta_batch_size training images."""
    return baselines.ClassificationSampler(self.cfg)

  def make_train_step(self, learner: MAML, optimizer, objective, steps_per_call=1, strategy=None):
    """The classifier update: (images, labels) -> {'loss', 'pre_loss': the cross-entropy,
    'post_loss': the batch error rate (%)}."""
    if objective != methods.PRETRAIN or steps_per_call != 1 or strategy is not None:
      raise ValueError(f'{self.cfg.name}: a classifier baseline trains the pretrain objective only, '
                       'one step per call on one device')
    return baselines.make_classify_step(learner.model, optimizer, self.cfg.jit_compile)

  def make_eval_fn(self, learner: MAML, steps: int, return_outputs: bool = False):
    """MAML's evaluation step on an N-way copy of the classifier (baselines.task_model)."""
    model = baselines.task_model(learner.model, self.cfg)
    return maml_learner(self.cfg, model, learner.loss_fn, learner.metric_fn,
                        num_updates=0).make_eval_step(steps, return_outputs=return_outputs)

  def label(self) -> str:
    return 'fine-tuning'


@methods.register('nearest_neighbor')
class NearestNeighbor(FineTuning):
  """The classifier's backbone as a feature space: each query gets the label of the nearest
  support example (cfg.nn_distance). Training is FineTuning's."""

  @property
  def tunes_step_size(self) -> bool:
    return False

  def make_eval_fn(self, learner: MAML, steps: int, return_outputs: bool = False):
    """fn(*episode, lr) -> {'loss': zeros, 'metric': accuracy (%)} [1, T]; steps and lr unused."""
    if return_outputs:
      raise ValueError('nearest neighbour records no outputs')
    features = baselines.backbone(learner.model)

    def nearest(*episode):
      metric = baselines.nearest_neighbor_accuracy(features, episode, self.cfg.nn_distance)[None]
      return {'loss': tf.zeros_like(metric), 'metric': tf.constant(metric)}
    return nearest

  def label(self) -> str:
    return 'nearest neighbour'
