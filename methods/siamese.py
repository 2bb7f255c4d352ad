"""Siamese networks (Koch, Zemel, Salakhutdinov 2015) on MAML's episodes, as MAML's Table 1 reports
them (Vinyals et al.'s 28x28 Omniglot protocol).

A shared embedding f_phi (the row's conv4 without its head) maps both images of a pair; their
similarity is the weighted L1 distance passed through a sigmoid,

  p(x1, x2) = sigmoid(z),  z = sum_d w_d |f_phi(x1)_d - f_phi(x2)_d| + b,

trained by binary cross-entropy on same-class (target 1) and different-class (target 0) pairs.
An N-way K-shot query x is labelled with the class whose support images are the most similar:
for K = 1 the single most similar support image, for K > 1 the class of highest mean similarity
(1/K) sum_{i: y_i = n} p(x, x_i).

Pairs come from the row's own episode sampler (one data pipeline for every method): the training
pairs of an episode are its N*Q queries against its N*K support images, N*Q*K same-class and
N*Q*(N-1)*K different-class pairs, the very comparisons meta-test makes. With `siamese_balanced`
(the rows) each kind weighs half of the loss, as Koch's pair sets hold as many same as different
pairs; otherwise every pair weighs alike (different pairs then outnumber same ones N-1 to 1).

As the other metric learners (methods/metric.py), each task is embedded on its own through a MAML
with no inner steps, so batch norm uses the statistics of the task's own batch: support and queries
together at training and in transductive evaluation, else the support set alone and each query in a
batch with it. The head (w [D], b) is a meta-learned variable besides theta, saved under 'extras'.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import config
from config import option
from maml import MAML, compile_update
import methods
from methods.metric import TaskEmbedder
import models
import utils


class SiameseLearner(TaskEmbedder):
  """The Siamese network over a Keras embedding (x [M, ...] -> features [M, D]).

  Args:
    embedding: a built Keras model; its trainable variables are phi (theta of the checkpoint).
    balanced: the same-class and different-class pairs of an episode weigh half each in the loss.
    task_parallelism, batched_forward: how the embedding maps over tasks, as MAML's.
    transductive: evaluation only (training always embeds support and queries together).
  """

  def __init__(self, embedding: keras.Model, *, balanced: bool = True,
               task_parallelism: str = 'vectorized_map', batched_forward: Callable | None = None,
               transductive: bool = True):
    if task_parallelism == 'batched' and len(embedding.output_shape) != 2:
      raise ValueError("task_parallelism='batched' needs an embedding with flat [M, D] features")
    self.model = embedding
    self.balanced = balanced
    self.transductive = transductive
    self.metric_fn = utils.accuracy
    # MAML's per-task forward pass and non-transductive prediction; no inner step is ever taken, so
    # its loss (utils.xent) is never called.
    self._maml = MAML(embedding, utils.xent, utils.accuracy, update_lr=0.0, num_updates=0,
                      task_parallelism=task_parallelism, batched_forward=batched_forward,
                      transductive=False)
    self.dim = int(np.prod(embedding.output_shape[1:]))  # D
    dtype = embedding.outputs[0].dtype
    # The weighted L1 head: z = w . |f(x1) - f(x2)| + b (Keras' defaults: Glorot-uniform w, b = 0).
    self.head = keras.layers.Dense(1, dtype=dtype, name='siamese_head')
    self.head.build((None, self.dim))
    self.extra_variables = list(self.head.trainable_variables)

  @property
  def variables(self) -> list:
    """Everything the optimizer learns: phi, then the head's w and b."""
    return list(self.model.trainable_variables) + self.extra_variables

  # --- functional pieces -------------------------------------------------------------------------

  def pair_logits(self, support: tf.Tensor, query: tf.Tensor) -> tf.Tensor:
    """z [T, Q, S] = w . |f(x_q) - f(x_s)| + b for every query q and support item s.

    support [T, S, D], query [T, Q, D] embeddings."""
    w, b = self.head.kernel, self.head.bias                         # [D, 1], [1]
    distance = tf.abs(query[:, :, None] - support[:, None])         # [T, Q, S, D]
    return tf.einsum('tqsd,d->tqs', distance, w[:, 0]) + b[0]

  @staticmethod
  def class_scores(z: tf.Tensor, support_y: tf.Tensor) -> tf.Tensor:
    """log((1/K_n) sum_{i: y_i = n} sigmoid(z_i)) [T, Q, N]: the log mean similarity per class.

    z [T, Q, S] pair logits; support_y one-hot [T, S, N]. For K = 1 the arg-max is the most similar
    support image. Taken in log space (log-sum-exp of log-sigmoids), so similarities that round to
    1 in float32 still rank.
    """
    member = tf.transpose(support_y, [0, 2, 1])[:, None] > 0        # [T, 1, N, S]
    logp = tf.math.log_sigmoid(z)[:, :, None]                        # [T, Q, 1, S]
    masked = tf.where(member, logp, tf.constant(-1e30, z.dtype))
    counts = tf.reduce_sum(support_y, 1)[:, None]                   # [T, 1, N]
    return tf.reduce_logsumexp(masked, -1) - tf.math.log(counts)

  def pair_loss(self, z: tf.Tensor, support_y: tf.Tensor, query_y: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy of the pairs [T]; a pair's target is 1 if the query and the support
    item share their class. balanced: (mean over same pairs + mean over different pairs) / 2."""
    same = tf.einsum('tqn,tsn->tqs', query_y, support_y)            # [T, Q, S] in {0, 1}
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=same, logits=z)
    if not self.balanced:
      return tf.reduce_mean(bce, [1, 2])
    mean_over = lambda mask: tf.math.divide_no_nan(tf.reduce_sum(bce * mask, [1, 2]),
                                                   tf.reduce_sum(mask, [1, 2]))
    return 0.5 * (mean_over(same) + mean_over(1.0 - same))

  def episode_outputs(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor,
                      query_y: tf.Tensor, joint: bool | None = None):
    """(pair loss [T], class scores [T, N*Q, N]) of an episode; joint None follows transductive."""
    joint = self.transductive if joint is None else joint
    support, query = self.embed_episode(support_x, query_x, joint)
    support_y, query_y = (tf.cast(y, support.dtype) for y in (support_y, query_y))
    z = self.pair_logits(support, query)
    return self.pair_loss(z, support_y, query_y), self.class_scores(z, support_y)

  # --- compiled steps ----------------------------------------------------------------------------

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = 'maml',
                      jit_compile: bool = False, steps_per_call: int = 1, strategy=None):
    """A compiled update on the pairs of an episode -> {'loss', 'pre_loss', 'post_loss'}, all the
    mean pair loss over the T tasks ([S] each for steps_per_call = S > 1, as MAML's)."""
    if objective != methods.META:
      raise ValueError(f'objective={objective!r}: Siamese networks train on pairs only '
                       f'({methods.META!r})')
    if strategy is not None:
      raise ValueError('Siamese networks do not support a tf.distribute strategy')
    variables = self.variables

    def update(episode):
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(self.episode_outputs(*episode, joint=True)[0])
      grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
      optimizer.apply(grads, variables)
      return {'loss': loss, 'pre_loss': loss, 'post_loss': loss}

    return compile_update(update, variables[0].dtype, steps_per_call, jit_compile)

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """fn(support_x, support_y, query_x, query_y, lr) -> {'loss': pair loss, 'metric': accuracy}
    [1, T] (and 'outputs' [1, T, N*Q, N], the class scores); lr is ignored, steps must be 0."""

    def task(support_x, support_y, query_x, query_y):
      loss, scores = self.episode_outputs(support_x, support_y, query_x, query_y)
      return {'loss': loss, 'metric': self.metric_fn(query_y, scores), 'outputs': scores}

    return methods.stepless_eval_step(task, 'Siamese networks', steps, jit_compile=jit_compile,
                                      return_outputs=return_outputs,
                                      reduce_retracing=self._maml.task_parallelism != 'loop')


@config.Part
class SiameseOptions:
  """Siamese networks' options (Koch et al. 2015)."""
  siamese_balanced: bool = option(
      True, 'Siamese networks: same-class and different-class pairs weigh half of the loss each '
      '(False: every pair alike).', flag=True)

  def check(self, bad: config.Bad) -> None:
    if self.method != Siamese.name:
      if not self.siamese_balanced:
        bad('siamese_balanced', 'is for Siamese networks only')
      return
    if self.test_num_updates or self.report_step:
      bad('method', 'fine-tunes nothing: test_num_updates and report_step must be 0')
    if not self.conv:
      bad('conv', 'must be True: Siamese networks embed with the conv4')
    if self.meta_grad_clip is not None:
      bad('meta_grad_clip', 'must be None: Siamese networks do not clip their gradients')
    if self.distribute != 'none':
      bad('distribute', 'is for the gradient-based methods; Siamese networks run on one device')


@methods.register('siamese')
class Siamese(methods.Method):
  """p(x1, x2) = sigmoid(w . |f(x1) - f(x2)| + b); a query takes the class of highest mean
  similarity of its support images."""
  inner_loop = False
  options = SiameseOptions
  report_groups = {'siamese': 'Siamese networks (Koch et al. 2015), as MAML Table 1'}

  def build_model(self) -> keras.Model:
    """The embedding f_phi: the row's conv4 without its head (as the metric learners')."""
    return models.build_model(self.cfg, embedding=True)

  def build(self, model: keras.Model) -> SiameseLearner:
    cfg = self.cfg
    return SiameseLearner(model, balanced=cfg.siamese_balanced,
                          task_parallelism=cfg.task_parallelism,
                          batched_forward=methods.batched_forward(cfg, model),
                          transductive=cfg.transductive)

  def log_losses(self, values: dict[str, float]) -> str:
    return 'query loss %.4f' % values['loss']

  def label(self) -> str:
    return 'Siamese'
