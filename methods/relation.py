"""Relation networks (Sung, Yang, Zhang, Xiang, Torr, Hospedales, CVPR 2018, "Learning to Compare")
on MAML's episodes, after the official code (floodsung/LearningToCompare_FSL).

An embedding f_phi maps every image to a feature map; the relation module g_psi scores a query x
against each class n of the task,

  r_n(x) = g_psi(concat(c_n, f_phi(x))),   c_n = sum_{i: y_i = n} f_phi(x_i)   (K-shot: summed),

concatenated along the channels, the class's features first (the official code's order), and
r_n in (0, 1). Training minimizes the mean squared error between r [N*Q, N] and the one-hot labels;
a query is labelled argmax_n r_n.

  f_phi: 4 x [3x3 conv, 64 filters -> batch norm -> ReLU], the first two with VALID convolutions
         and a 2x2 max-pool, the last two SAME without (Omniglot 28 -> 5x5x64, MiniImagenet
         84 -> 19x19x64). models.conv_net pools in every block or none, so this module builds it.
  g_psi: 2 x [3x3 conv, 64 filters -> batch norm -> ReLU -> 2x2 max-pool] (SAME convolutions on
         Omniglot: 5 -> 2 -> 1; VALID on MiniImagenet: 19 -> 8 -> 3, as the official code), then
         FC 8 + ReLU and FC 1 + sigmoid.

Initialization as the official weights_init: convolutions N(0, 2 / (3*3*filters)), biases 0;
dense weights N(0, 0.01), biases 1. Batch norm is the rows' (models.norm_layer): the statistics of
the current batch at training and test alike, as the official code, which never leaves training
mode (its momentum is 1). The support set and the queries of a task are embedded in separate
batches (as the official code), and the relation module sees the task's N*Q*N pairs in one batch.
Each task runs on its own (a MAML with no inner steps for each network), so T tasks in a meta-batch
are T independent episodes; the rows take one episode per update, as the official code.

The official optimizer is reproduced by the method: Adam(beta) halved every `relation_lr_halving`
iterations, and the gradients of phi and of psi each clipped to a global norm of
`relation_clip_norm`. psi is a meta-learned variable besides theta (= phi), saved under 'extras'.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

import config
from config import option
from maml import MAML, compile_update
import methods
import models
import utils

# The official weights_init: He-normal over the fan-out of convolutions, N(0, 0.01) dense weights
# with biases 1. A fresh initializer per layer, made when the network is built: an instance made at
# import would carry a seed drawn before the row's seed is set, and every layer sharing it would draw
# the same numbers.
def _conv_init() -> keras.initializers.Initializer:
  return keras.initializers.VarianceScaling(2.0, 'fan_out', 'untruncated_normal')


def _dense_init() -> keras.initializers.Initializer:
  return keras.initializers.RandomNormal(stddev=0.01)


def _block(h, filters: int, padding: str, pool: bool, norm: str, name: str):
  h = keras.layers.Conv2D(filters, 3, padding=padding, kernel_initializer=_conv_init(),
                          name=f'{name}_conv')(h)
  norm_layer = models.norm_layer(norm, f'{name}_norm')
  if norm_layer is not None:
    h = norm_layer(h)
  h = keras.layers.ReLU()(h)
  return keras.layers.MaxPool2D(2, 2, padding='valid')(h) if pool else h


def relation_embedding(image_shape: tuple[int, int, int], filters: int = 64,
                       norm: str = 'batch_norm') -> keras.Model:
  """f_phi: x [M, H, W, C] -> feature maps flattened, [M, h*w*F] (Omniglot 5*5*64, MiniImagenet
  19*19*64); RelationLearner reshapes them to [h, w, F]. Flat outputs let
  models.task_batched_forward run it."""
  inputs = keras.Input(image_shape)
  h = inputs
  for i, (padding, pool) in enumerate((('valid', True), ('valid', True), ('same', False),
                                       ('same', False))):
    h = _block(h, filters, padding, pool, norm, f'embed{i}')
  return keras.Model(inputs, keras.layers.Flatten()(h), name='relation_embedding')


def relation_module(feature_shape: tuple[int, int, int], filters: int = 64, hidden: int = 8,
                    padding: str = 'same', norm: str = 'batch_norm') -> keras.Model:
  """g_psi: pairs [P, h, w, 2F] -> relation scores r [P, 1] in (0, 1)."""
  h, w, f = feature_shape
  inputs = keras.Input((h, w, 2 * f))
  x = inputs
  for i in range(2):
    x = _block(x, filters, padding, True, norm, f'relation{i}')
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(hidden, activation='relu', kernel_initializer=_dense_init(),
                         bias_initializer='ones', name='relation_fc1')(x)
  x = keras.layers.Dense(1, activation='sigmoid', kernel_initializer=_dense_init(),
                         bias_initializer='ones', name='relation_fc2')(x)
  return keras.Model(inputs, x, name='relation_module')


def feature_shape(embedding: keras.Model) -> tuple[int, int, int]:
  """(h, w, F) of the embedding's feature maps (the input of its final Flatten)."""
  return tuple(int(d) for d in embedding.layers[-1].input.shape[1:])


class RelationLearner:
  """A relation network: the embedding f_phi and the relation module g_psi.

  Args:
    embedding: relation_embedding's model; its trainable variables are phi (theta).
    relation: relation_module's model over the embedding's feature shape; its variables are psi.
    clip_norm: clip the gradients of phi and of psi, each, to this global norm (None: not at all).
    task_parallelism, embed_forward, relation_forward: how each network maps over tasks, as MAML's
      (the *_forward: models.task_batched_forward of that network, for 'batched').
  """

  def __init__(self, embedding: keras.Model, relation: keras.Model, *,
               clip_norm: float | None = 0.5, task_parallelism: str = 'vectorized_map',
               embed_forward: Callable | None = None, relation_forward: Callable | None = None):
    self.model, self.relation = embedding, relation
    self.clip_norm = clip_norm
    self.shape = feature_shape(embedding)  # (h, w, F)
    self.loss_fn = relation_mse
    self.metric_fn = utils.accuracy
    # Per-task forward passes (each task's batch normalized on its own); no inner step is ever
    # taken, so their loss (utils.xent) is never called.
    kwargs = dict(update_lr=0.0, num_updates=0, task_parallelism=task_parallelism)
    self._embed = MAML(embedding, utils.xent, utils.accuracy, batched_forward=embed_forward,
                       **kwargs)
    self._relate = MAML(relation, utils.xent, utils.accuracy, batched_forward=relation_forward,
                        **kwargs)
    self.extra_variables = list(relation.trainable_variables)
    self.task_parallelism = task_parallelism

  @property
  def variables(self) -> list:
    """Everything the optimizer learns: phi, then psi."""
    return list(self.model.trainable_variables) + self.extra_variables

  @staticmethod
  def _run(learner: MAML, x: tf.Tensor) -> tf.Tensor:
    theta = [tf.convert_to_tensor(v) for v in learner.model.trainable_variables]
    return learner.forward(learner.tile(theta, tf.shape(x)[0]), x)

  def embed(self, x: tf.Tensor) -> tf.Tensor:
    """f_phi per task: x [T, M, H, W, C] -> feature maps [T, M, h, w, F]."""
    out = self._run(self._embed, x)
    return tf.reshape(out, tf.concat([tf.shape(out)[:2], self.shape], 0))

  @staticmethod
  def class_features(support: tf.Tensor, support_y: tf.Tensor) -> tf.Tensor:
    """c_n = sum of class n's support feature maps: [T, N*K, h, w, F] -> [T, N, h, w, F]."""
    return tf.einsum('tsn,tshwf->tnhwf', support_y, support)

  @staticmethod
  def pairs(classes: tf.Tensor, query: tf.Tensor) -> tf.Tensor:
    """The relation module's input [T, Q*N, h, w, 2F]: pair q*N + n is concat(c_n, f(x_q)) along
    the channels. classes [T, N, h, w, F], query [T, Q, h, w, F]."""
    n, q = tf.shape(classes)[1], tf.shape(query)[1]
    c = tf.repeat(classes[:, None], q, axis=1)                       # [T, Q, N, h, w, F]
    x = tf.repeat(query[:, :, None], n, axis=2)                      # [T, Q, N, h, w, F]
    both = tf.concat([c, x], -1)
    return tf.reshape(both, tf.concat([tf.shape(both)[:1], [q * n], tf.shape(both)[3:]], 0))

  def scores(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor) -> tf.Tensor:
    """r [T, N*Q, N]: the relation score of every query and class."""
    support, query = self.embed(support_x), self.embed(query_x)     # separate batches (official)
    classes = self.class_features(support, tf.cast(support_y, support.dtype))
    r = self._run(self._relate, self.pairs(classes, query))          # [T, Q*N, 1]
    return tf.reshape(r, tf.concat([tf.shape(query_x)[:2], tf.shape(classes)[1:2]], 0))

  # --- compiled steps ----------------------------------------------------------------------------

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = 'maml',
                      jit_compile: bool = False, steps_per_call: int = 1, strategy=None):
    """A compiled update -> {'loss', 'pre_loss', 'post_loss'}, all the mean MSE over the T tasks
    ([S] each for steps_per_call = S > 1, as MAML's)."""
    if objective != methods.META:
      raise ValueError(f'objective={objective!r}: relation networks train the episodic objective '
                       f'only ({methods.META!r})')
    if strategy is not None:
      raise ValueError('relation networks do not support a tf.distribute strategy')
    variables = self.variables
    phi = len(self.model.trainable_variables)

    def update(episode):
      support_x, support_y, query_x, query_y = episode
      with tf.GradientTape() as tape:
        r = self.scores(support_x, support_y, query_x)
        loss = tf.reduce_mean(self.loss_fn(query_y, r))
      grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
      if self.clip_norm is not None:  # each network on its own, as the official code
        grads = (tf.clip_by_global_norm(grads[:phi], self.clip_norm)[0]
                 + tf.clip_by_global_norm(grads[phi:], self.clip_norm)[0])
      optimizer.apply(grads, variables)
      return {'loss': loss, 'pre_loss': loss, 'post_loss': loss}

    return compile_update(update, variables[0].dtype, steps_per_call, jit_compile)

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """fn(support_x, support_y, query_x, query_y, lr) -> {'loss': MSE, 'metric': accuracy} [1, T]
    (and 'outputs' [1, T, N*Q, N], the scores r); lr is ignored, steps must be 0."""

    def task(support_x, support_y, query_x, query_y):
      r = self.scores(support_x, support_y, query_x)
      return {'loss': self.loss_fn(query_y, r), 'metric': self.metric_fn(query_y, r), 'outputs': r}

    return methods.stepless_eval_step(task, 'relation networks', steps, jit_compile=jit_compile,
                                      return_outputs=return_outputs,
                                      reduce_retracing=self.task_parallelism != 'loop')


def relation_mse(y: tf.Tensor, r: tf.Tensor, shots=None) -> tf.Tensor:
  """Mean squared error between the scores r [T, M, N] and the one-hot labels y, per task [T]."""
  del shots
  return tf.reduce_mean(tf.square(r - tf.cast(y, r.dtype)), [1, 2])


@config.Part
class RelationOptions:
  """Relation networks' options: the official code's optimizer (Sung et al. 2018)."""
  relation_clip_norm: float | None = option(
      0.5, 'Relation networks: clip the gradients of the embedding and of the relation module, '
      'each, to this global norm (the official code: 0.5; None: no clipping).', flag=True)
  relation_lr_halving: int = option(
      100_000, 'Relation networks: halve beta every this many iterations (the official code: '
      '100,000 episodes; 0: constant).', flag=True)

  def check(self, bad: config.Bad) -> None:
    if self.relation_lr_halving < 0:
      bad('relation_lr_halving', 'must not be negative')
    if self.relation_clip_norm is not None and not self.relation_clip_norm > 0:
      bad('relation_clip_norm', 'must be positive or None')
    defaults = type(self).__dataclass_fields__
    if self.method != Relation.name:
      for name in ('relation_clip_norm', 'relation_lr_halving'):
        if getattr(self, name) != defaults[name].default:
          bad(name, 'is for relation networks only')
      return
    if self.test_num_updates or self.report_step:
      bad('method', 'fine-tunes nothing: test_num_updates and report_step must be 0')
    if not self.transductive:
      bad('transductive', 'must be True: the relation module normalizes a task\'s pairs together')
    if self.meta_grad_clip is not None:
      bad('meta_grad_clip', 'must be None: relation networks clip by norm (relation_clip_norm)')
    if self.min_meta_lr is not None:
      bad('min_meta_lr', 'must be None: relation networks halve beta (relation_lr_halving)')
    if self.distribute != 'none':
      bad('distribute', 'is for the gradient-based methods; relation networks run on one device')


@methods.register('relation')
class Relation(methods.Method):
  """r_n(x) = g_psi(concat(sum_{i: y_i = n} f_phi(x_i), f_phi(x))); MSE against one-hot labels."""
  inner_loop = False
  options = RelationOptions
  report_groups = {'relation': 'Relation networks (Sung et al. 2018)'}

  def build_model(self) -> keras.Model:
    """The embedding f_phi (relation_embedding, the row's num_filters and norm)."""
    cfg = self.cfg
    return relation_embedding(models.IMAGE_SHAPES[cfg.datasource], cfg.num_filters, cfg.norm)

  def build(self, model: keras.Model) -> RelationLearner:
    """The relation module psi is built here, right after phi, from the same seed."""
    cfg = self.cfg
    # The official module: SAME convolutions on Omniglot's 5x5 maps, VALID on MiniImagenet's 19x19.
    padding = 'same' if cfg.datasource == 'omniglot' else 'valid'
    relation = relation_module(feature_shape(model), cfg.num_filters, padding=padding,
                               norm=cfg.norm)
    batched = cfg.task_parallelism == 'batched'
    return RelationLearner(
        model, relation, clip_norm=cfg.relation_clip_norm, task_parallelism=cfg.task_parallelism,
        embed_forward=models.task_batched_forward(model) if batched else None,
        relation_forward=models.task_batched_forward(relation) if batched else None)

  def make_optimizer(self) -> keras.optimizers.Optimizer:
    """Adam(beta), halved every relation_lr_halving iterations (the official StepLR)."""
    cfg = self.cfg
    if not cfg.relation_lr_halving:
      return keras.optimizers.Adam(cfg.meta_lr)
    return keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
        cfg.meta_lr, cfg.relation_lr_halving, 0.5, staircase=True))

  def log_losses(self, values: dict[str, float]) -> str:
    return 'query loss %.4f' % values['loss']

  def make_predict_fn(self, learner, steps: int) -> methods.PredictFn:
    """The relation scores r in (0, 1) [T, Q, N] of each query to each class, normalized over
    the classes (a softmax of values in (0, 1) would be nearly flat). Queries are scored in one
    batch, as the row's evaluation (the relation module normalizes a task's pairs together)."""
    eval_fn = self.make_eval_fn(learner, steps, return_outputs=True)

    def predict(support_x, support_y, query_x, lr):
      query_y = tf.zeros(tf.concat([tf.shape(query_x)[:2], tf.shape(support_y)[2:]], 0),
                         support_y.dtype)
      r = eval_fn(support_x, support_y, query_x, query_y, lr)['outputs'][-1]
      return r / tf.reduce_sum(r, axis=-1, keepdims=True)
    return predict

  def label(self) -> str:
    return 'Relation'
