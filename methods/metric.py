"""Metric-based few-shot learners with MAML's interface: Prototypical networks (Snell et al. 2017)
and Matching networks (Vinyals et al. 2016), so the training loop and evaluation run them unchanged.

Neither has an inner loop: an episode's queries are classified by comparing their embeddings
f_phi(x) with those of the task's support set S = {(x_i, y_i)}, and the meta-update is one optimizer
step on the mean query cross-entropy of the T tasks.

  ProtoNet:  c_n = mean of f_phi(x_i) over the support items of class n;  logits_n = -||f_phi(x) - c_n||^2.
  Matching:  a(x, x_i) = softmax_i s * cos(f(x, S), g(x_i, S));  p(n | x) = sum_{i: y_i = n} a(x, x_i),
             f = g = f_phi, or with full-context embeddings (FCE, Vinyals App. A) g = f_phi plus a
             bidirectional LSTM over S and f = an attention LSTM reading g(S) for `fce_steps` steps.
             s = 1 is the paper's plain cosine; on ReLU features cos lies in [0, 1], so a 5-way
             1-shot softmax can give the right class at most e / (e + 4) = 0.40 and the loss
             saturates; a larger s (`cosine_scale`) sharpens it.

The embedding runs per task exactly like MAML.forward (a MAML with no inner steps does it here), so
batch norm normalizes with each task's own statistics, always in training mode as this repo's MAML.
Training (and transductive evaluation) embeds support and queries of a task in one batch, as
Snell's code; non-transductive evaluation embeds the support set alone and each query in a batch of
the support set plus itself (MAML.predict).

As methods (`ProtoNet` and `Matching`, registered as 'protonet' and 'matching'): a training step
logs one query loss, and meta-test adapts nothing (test_num_updates = 0, lr ignored); the embedding
is the row's conv4 without its head; their options (`MetricOptions`) are Matching's attention.
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
import models
import utils

def nll(y: tf.Tensor, out: tf.Tensor, shots=None) -> tf.Tensor:
  """Mean cross-entropy over each task's queries [T]; y one-hot [T, M, N], out logits [T, M, N].

  Normalized log-probabilities (matching nets) are logits whose log-sum-exp is 0, so this is their
  NLL. Unlike utils.xent it is not summed and divided by K: the papers' loss is the plain mean.
  """
  del shots
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=out), -1)


class TaskEmbedder:
  """f_phi run per task through MAML's forward pass with no inner step, so batch norm normalizes
  each task's batch on its own (as MAML's). A learner using it sets `model` (the embedding),
  `_maml` (a maml.MAML over it with num_updates=0) and `dim` (D, the flat feature size).
  """
  model: keras.Model
  _maml: MAML
  dim: int

  def embed(self, x: tf.Tensor) -> tf.Tensor:
    """f_phi per task: x [T, M, ...] -> [T, M, D] (each task's batch normalized on its own)."""
    theta = [tf.convert_to_tensor(v) for v in self.model.trainable_variables]
    return self._flat(self._maml.forward(self._maml.tile(theta, tf.shape(x)[0]), x))

  def _flat(self, out: tf.Tensor) -> tf.Tensor:
    """[T, M, ...] features -> [T, M, D]."""
    return tf.reshape(out, tf.concat([tf.shape(out)[:2], [self.dim]], 0))

  def embed_episode(self, support_x: tf.Tensor, query_x: tf.Tensor, joint: bool):
    """(support [T, N*K, D], query [T, N*Q, D]) embeddings.

    joint: one batch [support; queries] per task; else the support set alone, and each query in a
    batch of the support set and itself (no query sees another's statistics).
    """
    if joint:
      both = self.embed(tf.concat([support_x, query_x], 1))
      size = tf.shape(support_x)[1]
      return both[:, :size], both[:, size:]
    theta = [tf.convert_to_tensor(v) for v in self.model.trainable_variables]
    query = self._maml.predict(self._maml.tile(theta, tf.shape(query_x)[0]), support_x, query_x)
    return self.embed(support_x), self._flat(query)


class MetricLearner(TaskEmbedder):
  """ProtoNet (kind='protonet') or Matching network (kind='matching') over a Keras embedding.

  Args:
    embedding: a built Keras model, x [M, ...] -> features [M, D] or [M, h, w, c] (flattened to D);
      its trainable variables are phi.
    kind: 'protonet' or 'matching'.
    full_context: matching nets' full-context embeddings (FCE); their LSTMs' variables are
      `extra_variables`, meta-learned with phi.
    fce_steps: K, the processing steps of the attention LSTM f.
    cosine_scale: s, the attention's inverse temperature (matching nets; 1 = the paper).
    task_parallelism, batched_forward: how the embedding maps over tasks, as MAML's ('batched'
      needs flat features: models.task_batched_forward folds image activations).
    transductive: evaluation only (training always embeds support and queries together).
  """
  KINDS = ('protonet', 'matching')

  def __init__(self, embedding: keras.Model, kind: str, *, full_context: bool = False,
               fce_steps: int = 10, cosine_scale: float = 1.0, task_parallelism: str = 'vectorized_map',
               batched_forward: Callable | None = None, transductive: bool = True):
    if kind not in self.KINDS:
      raise ValueError(f'kind={kind!r} is not one of {self.KINDS}')
    if full_context and kind != 'matching':
      raise ValueError('full_context (FCE) belongs to matching networks')
    if cosine_scale != 1.0 and kind != 'matching':
      raise ValueError('cosine_scale belongs to matching networks')
    if task_parallelism == 'batched' and len(embedding.output_shape) != 2:
      raise ValueError("task_parallelism='batched' needs an embedding with flat [M, D] features")
    self.model = embedding
    self.kind, self.full_context, self.fce_steps = kind, full_context, fce_steps
    self.cosine_scale = cosine_scale
    self.transductive = transductive
    self.loss_fn = nll
    self.metric_fn = utils.accuracy
    # Composition, not a copy: MAML's per-task forward (vectorized/batched/map_fn, per-task batch
    # statistics) and its non-transductive prediction; no inner steps are ever taken.
    self._maml = MAML(embedding, nll, utils.accuracy, update_lr=0.0, num_updates=0,
                      task_parallelism=task_parallelism, batched_forward=batched_forward,
                      transductive=False)
    self.dim = dim = int(np.prod(embedding.output_shape[1:]))  # D, static for the LSTMs
    self.extra_variables = []
    if full_context:
      dtype = embedding.outputs[0].dtype
      # Hidden size D so the LSTM states add to the embedding (the skip connections of App. A).
      self._support_lstm = keras.layers.Bidirectional(
          keras.layers.LSTM(dim, return_sequences=True, dtype=dtype), merge_mode='sum', dtype=dtype)
      self._query_cell = keras.layers.LSTMCell(dim, dtype=dtype)
      self._support_lstm(tf.zeros([1, 1, dim], dtype))
      # Input [f'(x), r_{k-1}]: the same gates as App. A.1's hidden state [h_{k-1}, r_{k-1}], with
      # h_{k-1} alone carried as the cell's state.
      self._query_cell.build((None, 2 * dim))
      self.extra_variables = (list(self._support_lstm.trainable_variables)
                              + list(self._query_cell.trainable_variables))

  @property
  def variables(self) -> list:
    """Everything the meta-update learns: phi, then the FCE LSTMs' weights."""
    return list(self.model.trainable_variables) + self.extra_variables

  # --- functional pieces -------------------------------------------------------------------------

  def prototype_logits(self, support: tf.Tensor, support_y: tf.Tensor, query: tf.Tensor):
    """-||f(x) - c_n||^2 [T, Q, N]; c_n = mean of class n's support embeddings (labels in any order)."""
    counts = tf.reduce_sum(support_y, 1)[..., None]                     # [T, N, 1]
    prototypes = tf.einsum('tsn,tsd->tnd', support_y, support) / counts  # [T, N, D]
    return -tf.reduce_sum(tf.square(query[:, :, None] - prototypes[:, None]), -1)

  def matching_log_probs(self, support: tf.Tensor, support_y: tf.Tensor, query: tf.Tensor):
    """log p(n | x) [T, Q, N] = log sum_{i: y_i = n} softmax_i s * cos(f(x), g(x_i)).

    Taken as logsumexp over class n's attention logits minus logsumexp over all, so it never
    underflows to log 0 and the cross-entropy of the output is the NLL.
    """
    if self.full_context:
      support = self.support_context(support)
      query = self.query_context(query, support)
    cosine = self.cosine_scale * tf.einsum('tqd,tsd->tqs', tf.math.l2_normalize(query, -1),
                                           tf.math.l2_normalize(support, -1))
    member = tf.transpose(support_y, [0, 2, 1])[:, None] > 0             # [T, 1, N, S]
    masked = tf.where(member, cosine[:, :, None], tf.constant(-1e30, cosine.dtype))
    return tf.reduce_logsumexp(masked, -1) - tf.reduce_logsumexp(cosine, -1)[..., None]

  def support_context(self, support: tf.Tensor) -> tf.Tensor:
    """g(x_i, S) = g'(x_i) + h_i(forward) + h_i(backward): a bidirectional LSTM over each task's
    support embeddings [T, N*K, D] (Vinyals App. A.2; tasks are the LSTM's batch)."""
    return support + self._support_lstm(support)

  def query_context(self, query: tf.Tensor, support: tf.Tensor) -> tf.Tensor:
    """f(x, S) [T, Q, D]: K = fce_steps steps of the attention LSTM (Vinyals App. A.1)

      h^_k, c_k = LSTM(f'(x), [h_{k-1}, r_{k-1}], c_{k-1});  h_k = h^_k + f'(x);
      r_k = sum_i softmax_i(h_k^T g(x_i)) g(x_i),

    from h_0 = c_0 = r_0 = 0. query: f'(x) [T, Q, D]; support: g(S) [T, N*K, D].
    """
    shape = tf.shape(query)
    flat = tf.reshape(query, [-1, self.dim])  # [T*Q, D]: the cell batches tasks and queries
    h, c, read = tf.zeros_like(flat), tf.zeros_like(flat), tf.zeros_like(query)
    for _ in range(self.fce_steps):
      out, (_, c) = self._query_cell(tf.concat([flat, tf.reshape(read, tf.shape(flat))], -1), [h, c])
      h = out + flat
      attention = tf.nn.softmax(tf.einsum('tqd,tsd->tqs', tf.reshape(h, shape), support), -1)
      read = tf.einsum('tqs,tsd->tqd', attention, support)
    return tf.reshape(h, shape)

  def logits(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor,
             training_batch: bool | None = None) -> tf.Tensor:
    """Query logits [T, N*Q, N] (log-probabilities for matching nets).

    training_batch: True embeds support and queries in one batch per task (training, transductive
    evaluation), False query by query (see embed_episode); None follows `transductive`.
    """
    joint = self.transductive if training_batch is None else training_batch
    support, query = self.embed_episode(support_x, query_x, joint)
    support_y = tf.cast(support_y, support.dtype)
    if self.kind == 'protonet':
      return self.prototype_logits(support, support_y, query)
    return self.matching_log_probs(support, support_y, query)

  # --- compiled steps ----------------------------------------------------------------------------

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = 'maml',
                      jit_compile: bool = False, steps_per_call: int = 1, strategy=None):
    """A compiled update: episode -> {'loss', 'pre_loss', 'post_loss'}, all the mean query loss.

    steps_per_call = S > 1 takes S episodes stacked on a new leading axis and runs S updates in one
    graph loop ([S] per key), as MAML's.
    """
    if objective != 'maml':
      raise ValueError(f'objective={objective!r}: metric learners have no pretrain objective, '
                       "only the episodic one ('maml')")
    if strategy is not None:
      raise ValueError('metric learners do not support a tf.distribute strategy')
    variables = self.variables

    def update(episode):
      support_x, support_y, query_x, query_y = episode
      with tf.GradientTape() as tape:
        out = self.logits(support_x, support_y, query_x, training_batch=True)
        loss = tf.reduce_mean(self.loss_fn(query_y, out))
      grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
      optimizer.apply(grads, variables)
      return {'loss': loss, 'pre_loss': loss, 'post_loss': loss}

    return compile_update(update, variables[0].dtype, steps_per_call, jit_compile)

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric'} [1, T] on the queries
    (and 'outputs' [1, T, N*Q, N] if return_outputs); lr is ignored, steps must be 0."""

    def task(support_x, support_y, query_x, query_y):
      out = self.logits(support_x, support_y, query_x)
      return {'loss': self.loss_fn(query_y, out), 'metric': self.metric_fn(query_y, out),
              'outputs': out}

    # Every K has its own shapes; reduce_retracing keeps one general trace.
    return methods.stepless_eval_step(task, 'metric learners', steps, jit_compile=jit_compile,
                                      return_outputs=return_outputs,
                                      reduce_retracing=self._maml.task_parallelism != 'loop')


@config.Part
class MetricOptions:
  """The metric learners' options: Matching networks' attention (Vinyals et al. 2016)."""
  full_context: bool = option(False, 'Matching networks: full-context embeddings (LSTMs).',
                              flag=True)
  cosine_scale: float = option(
      1.0, "Matching networks: s in the attention softmax_i s*cos (1: the paper's plain cosine).",
      flag=True)

  def check(self, bad: config.Bad) -> None:
    if self.full_context and self.method != 'matching':
      bad('full_context', 'is for matching networks only')
    if self.cosine_scale != 1.0 and self.method != 'matching':
      bad('cosine_scale', 'is for matching networks only')
    if not self.cosine_scale > 0:
      bad('cosine_scale', 'must be positive')
    if self.method in ('protonet', 'matching'):
      if self.test_num_updates or self.report_step:
        bad('method', 'fine-tunes nothing: test_num_updates and report_step must be 0')
      if self.distribute != 'none':
        bad('distribute', 'is for the gradient-based methods; metric learners run on one device')


class MetricMethod(methods.Method):
  """The metric learners' hooks; a subclass names its kind (its registered name) and label."""
  inner_loop = False
  options = MetricOptions
  LABEL = ''

  def build_model(self) -> keras.Model:
    """The embedding f_phi: the row's conv4 without its head."""
    cfg = self.cfg
    if not cfg.conv:
      raise config.ConfigError(f'{cfg.name}: the metric learners embed with the conv4 (conv=True)')
    return models.build_model(cfg, embedding=True)

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
