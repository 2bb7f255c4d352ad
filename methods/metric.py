"""Prototypical and Matching networks as methods: the learner is metric_learning.MetricLearner.

No inner loop: the queries of an episode are classified by comparing their embeddings with the
support set's, and meta-training is one optimizer step on the mean query cross-entropy. So a step
logs one query loss, and meta-test adapts nothing (test_num_updates = 0, lr ignored).
"""

from __future__ import annotations

import keras

import methods
from metric_learning import MetricLearner


class MetricMethod(methods.Method):
  """The metric learners' hooks; a subclass names its kind (its registered name) and label."""
  inner_loop = False
  LABEL = ''

  def build(self, model: keras.Model) -> MetricLearner:
    cfg = self.cfg
    return MetricLearner(model, self.name, full_context=cfg.full_context,
                         cosine_scale=cfg.cosine_scale, task_parallelism=cfg.task_parallelism,
                         batched_forward=methods.batched_forward(cfg, model),
                         transductive=cfg.transductive)

  def log_losses(self, values: dict[str, float]) -> str:
    return 'query loss %.4f' % values['loss']

  def label(self) -> str:
    return self.LABEL + (' (FCE)' if self.cfg.full_context else '')


@methods.register('protonet')
class ProtoNet(MetricMethod):
  """logits_n = -||f_phi(x) - c_n||^2, c_n the mean embedding of class n's support examples."""
  LABEL = 'ProtoNet'
  report_groups = {'protonet': 'Prototypical networks (Snell et al. 2017)'}


@methods.register('matching')
class Matching(MetricMethod):
  """p(n | x) = sum_{i: y_i = n} softmax_i s cos(f(x, S), g(x_i, S)); FCE with full_context."""
  LABEL = 'Matching'
  report_groups = {'matching': 'Matching networks (Vinyals et al. 2016)'}
