"""Reptile (Nichol et al. 2018) as a method: the learner is reptile.Reptile (top-level reptile.py).

Meta-training: phi_i = theta after num_updates inner Adam steps on task i, then
theta <- theta + epsilon (mean_i phi_i - theta), epsilon annealed linearly to 0 (an SGD
meta-optimizer on theta - mean_i phi_i). Meta-test: test_num_updates inner Adam steps of size lr.
The inner Adam's moments persist from task to task, so the checkpoint keeps them.
"""

from __future__ import annotations

import keras

import methods
from methods.maml_family import maml_options
from reptile import Reptile
import utils


@methods.register('reptile')
class ReptileMethod(methods.Method):
  report_groups = {'reptile': 'Reptile (Nichol et al. 2018)'}

  def build(self, model: keras.Model) -> Reptile:
    cfg = self.cfg
    loss_fn, metric_fn = utils.loss_and_metric(cfg)
    return Reptile(model, loss_fn, metric_fn, **maml_options(cfg, model, cfg.num_updates),
                   inner_batch=cfg.inner_batch_size, eval_batch=cfg.test_inner_batch_size,
                   seed=cfg.seed)

  def make_optimizer(self) -> keras.optimizers.Optimizer:
    """SGD whose step size epsilon falls linearly from meta_lr to 0 over the meta-training."""
    cfg = self.cfg
    return keras.optimizers.SGD(keras.optimizers.schedules.PolynomialDecay(
        cfg.meta_lr, cfg.metatrain_iterations, end_learning_rate=0.0))

  def saved_variables(self, learner: Reptile) -> dict[str, list]:
    """Besides MAML's: the inner Adam's second moments and step count ('learner_state')."""
    return {**super().saved_variables(learner), 'learner_state': learner.state_variables}

  def label(self) -> str:
    return 'Reptile'
