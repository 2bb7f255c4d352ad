"""Meta Networks (Munkhdalai & Yu, ICML 2017) on MAML's episodes, after the official Chainer code
(tsendeemts/metanet: MetaNetFull.py for Omniglot, MetaNetPartial.py for MiniImagenet).

Two networks of the same shape: the base learner b (slow weights W) classifies; the dynamic
representation function u (slow weights Q) embeds. The last layers of both are *layer-augmented*:
a layer with slow weights W and fast weights W* computes

  relu(conv(h, W)) + relu(conv(h, W*))        (convolutions and FC 1 of b),
  h W + h W*                                  (b's output layer and u's FC 1, the key: linear),

and fast weights come from loss gradients of the support set (N*K examples x'_i, y'_i), read
by small coordinate-wise networks of the meta learner (each gradient entry g becomes the pair
log_and_sign(g), then one output per entry):

  Q*   = d(G, {grad_Q L_emb(u(Q, chunk_c))}_c=1..T)     task-level fast weights of u: an LSTM
         over the representation loss's gradients on T equal chunks of the support set;
  W*_i = m(Z, grad_W L_task(b(W, x'_i), y'_i))          one set of fast weights of b per support
         example: an MLP, stored in the memory M at slot i, indexed by the key r'_i = u(Q, Q*, x'_i).

A query x reads the memory by attention, a = softmax_i cos(u(Q, Q*, x), r'_i), and is classified
by b(W, sum_i a_i W*_i, x). The objective is the task loss on the queries only, the softmax
cross-entropy summed over them (the official x_loss); the representation loss L_emb and the
support losses only produce gradients, which enter the meta learner as inputs (no second
derivatives, as the official code, which reads them as constant arrays). The classifier of u is
used for L_emb only, so like the official key_fc2 it keeps its initial weights.

The networks: this repository's max-pooling conv4 (4 x [3x3 conv, F filters, ReLU, 2x2 max-pool])
then FC 1 (H units, ReLU) and FC 2 (N outputs). The last `fast_convs` conv blocks and both FCs are
fast-parameterized, without biases or normalization (as the official augmented blocks); the first
4 - fast_convs blocks are slow only, with a bias and the row's normalization (the official
MiniImagenet body). The meta learner has one generator per kind of weight, as the official code:
m_conv, m_dense (MLPs 2 -> 20 -> 20 -> 1, ReLU) and d_conv, d_dense (an LSTM of 20 units, its last
output -> Dense 1). Its variables and u's are meta-learned besides theta (= W) under 'extras'.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import config
from config import option
import data_generator
from maml import compile_update
import methods
import models
import utils

BLOCKS = 4      # the conv4
UNITS = 20      # the official meta learner's hidden width (m: 2-20-20-1, d: LSTM(2, 20) + 1)
LOG_SIGN_K = 7.0  # the official logAndSign(k=7)


def log_and_sign(g: tf.Tensor, k: float = LOG_SIGN_K) -> tf.Tensor:
  """The official gradient preprocessing: g [...] -> [..., 2], (max(log(|g| + eps) / k, -1),
  clip(g e^k, -1, 1)) with eps the dtype's machine epsilon (Andrychowicz et al.'s, with p = k)."""
  eps = tf.constant(np.finfo(g.dtype.as_numpy_dtype).eps, g.dtype)
  log = tf.maximum(tf.math.log(tf.abs(g) + eps) / k, -1.0)
  sign = tf.clip_by_value(g * tf.exp(tf.constant(k, g.dtype)), -1.0, 1.0)
  return tf.stack([log, sign], -1)


def cosine(keys: tf.Tensor, memory: tf.Tensor, eps: float = 1e-6) -> tf.Tensor:
  """cos(r_q, r'_i) [Q, M] of keys [Q, D] and memory keys [M, D], as the official
  cosine_similarity2d: r . r' / sqrt(|r|^2 |r'|^2 + eps)."""
  dots = tf.matmul(keys, memory, transpose_b=True)
  norms = tf.reduce_sum(keys ** 2, -1)[:, None] * tf.reduce_sum(memory ** 2, -1)[None]
  return dots / tf.sqrt(norms + eps)


def read(keys: tf.Tensor, memory_keys: tf.Tensor, memory: list) -> list[tf.Tensor]:
  """The memory read of every query: W*_q = sum_i a_qi W*_i, a_q = softmax_i cos(r_q, r'_i).

  keys r [Q, D], memory_keys r' [M, D], memory: the fast weights of each slot, [M, *shape] per
  kernel -> [Q, *shape] per kernel."""
  attention = tf.nn.softmax(cosine(keys, memory_keys), -1)       # [Q, M]
  return [tf.tensordot(attention, slot, 1) for slot in memory]


def chunk_means(g: tf.Tensor, chunks: int) -> tf.Tensor:
  """Per-example gradients [M, *shape] -> the mean gradient of each of `chunks` equal chunks of
  consecutive examples [T, *shape] (the gradient of the chunk's mean loss, official embed_key)."""
  return tf.reduce_mean(tf.reshape(g, tf.concat([[chunks, -1], tf.shape(g)[1:]], 0)), 1)


def conv(h: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """3x3 SAME convolution of h [M, H, W, C] with one kernel [3, 3, C, F] for all, or with a kernel
  per example [M, 3, 3, C, F] (a grouped convolution: example m is group m)."""
  if kernel.shape.rank == 4:
    return tf.nn.conv2d(h, kernel, 1, 'SAME')
  m = tf.shape(h)[0]
  folded = tf.reshape(tf.transpose(h, [1, 2, 0, 3]), tf.concat([[1], tf.shape(h)[1:3], [-1]], 0))
  kernels = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]),
                       tf.concat([tf.shape(kernel)[1:4], [-1]], 0))     # [3, 3, C, M*F]
  out = tf.nn.conv2d(folded, kernels, 1, 'SAME')                        # [1, H, W, M*F]
  out = tf.reshape(out, tf.concat([tf.shape(out)[1:3], [m, -1]], 0))
  return tf.transpose(out, [2, 0, 1, 3])


def dense(h: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """h [M, D] times one kernel [D, H], or a kernel per example [M, D, H]."""
  if kernel.shape.rank == 2:
    return tf.matmul(h, kernel)
  return tf.einsum('md,mdh->mh', h, kernel)


def pool(h: tf.Tensor) -> tf.Tensor:
  return tf.nn.max_pool2d(h, 2, 2, 'VALID')


def metanet_network(image_shape: tuple[int, int, int], num_classes: int, filters: int, hidden: int,
                    fast_convs: int, norm: str = 'None', name: str = 'metanet') -> keras.Model:
  """b or u: x [M, H, W, C] -> logits [M, N] with slow weights only (b(W, x)).

  Layers conv0..conv3 (3x3 SAME, `filters`), each followed by ReLU and a 2x2 max-pool (the conv4
  with max_pool: Omniglot 28 -> 1x1xF, MiniImagenet 84 -> 5x5xF), then fc1 (`hidden`, ReLU) and fc2
  (N). The last `fast_convs` convolutions and both FCs have no bias and no normalization: they are
  the layer-augmented ones (MetaNetLearner.head); the first blocks have a bias and `norm`.
  """
  inputs = keras.Input(image_shape)
  h = inputs
  for i in range(BLOCKS):
    slow_only = i < BLOCKS - fast_convs
    h = keras.layers.Conv2D(filters, 3, padding='same', use_bias=slow_only, name=f'conv{i}')(h)
    norm_layer = models.norm_layer(norm, f'norm{i}') if slow_only else None
    if norm_layer is not None:
      h = norm_layer(h)
    h = keras.layers.MaxPool2D(2, 2, padding='valid')(keras.layers.ReLU()(h))
  h = keras.layers.Flatten()(h)
  h = keras.layers.Dense(hidden, activation='relu', use_bias=False, name='fc1')(h)
  outputs = keras.layers.Dense(num_classes, use_bias=False, name='fc2')(h)
  return keras.Model(inputs, outputs, name=name)


def weight_generator(recurrent: bool, name: str) -> keras.Model:
  """m (recurrent=False): preprocessed gradients [P, 2] -> fast weights [P, 1], an MLP 2-20-20-1;
  d (recurrent=True): [P, T, 2] -> [P, 1], an LSTM of 20 units whose last output goes through
  Dense 1. Each gradient entry is one row P: the generators act coordinate-wise."""
  if recurrent:
    inputs = keras.Input((None, 2))
    h = keras.layers.LSTM(UNITS, name=f'{name}_lstm')(inputs)
  else:
    inputs = keras.Input((2,))
    h = keras.layers.Dense(UNITS, activation='relu', name=f'{name}_l1')(inputs)
    h = keras.layers.Dense(UNITS, activation='relu', name=f'{name}_l2')(h)
  # Zero fast weights at the start: the untrained MetaNet is the slow base learner. (With Keras'
  # default init every generated entry starts near 0.5, and through 4 augmented convolutions of
  # 64 filters the first query losses reach 1e9.)
  out = keras.layers.Dense(1, kernel_initializer='zeros', name=f'{name}_out')(h)
  return keras.Model(inputs, out, name=name)


class MetaNetLearner:
  """Meta Networks over the base learner b (theta = W) and the representation function u.

  Args:
    base: metanet_network b; its trainable variables are W (theta).
    representation: metanet_network u of the same shape (Q).
    fast_convs: how many of the last conv blocks are layer-augmented (the FCs always are).
    chunks: T, the chunks of the support set whose representation-loss gradients d reads.
    clip_norm: clip the meta-gradient to this global norm (None: not at all).
  """

  def __init__(self, base: keras.Model, representation: keras.Model, *, fast_convs: int,
               chunks: int = 5, clip_norm: float | None = 10.0):
    self.model, self.u = base, representation
    self.fast_convs, self.chunks, self.clip_norm = fast_convs, chunks, clip_norm
    self.m_conv, self.m_dense = weight_generator(False, 'm_conv'), weight_generator(False, 'm_dense')
    self.d_conv, self.d_dense = weight_generator(True, 'd_conv'), weight_generator(True, 'd_dense')
    self.loss_fn = metanet_loss
    self.metric_fn = utils.accuracy
    self.extra_variables = [v for net in (representation, self.m_conv, self.m_dense, self.d_conv,
                                          self.d_dense) for v in net.trainable_variables]

  @property
  def variables(self) -> list:
    """Everything the optimizer learns: W (theta), then Q and the generators (extras)."""
    return list(self.model.trainable_variables) + self.extra_variables

  def kernels(self, net: keras.Model) -> list[tf.Tensor]:
    """The fast-parameterized weights of `net`: the augmented conv kernels [3, 3, C, F], then
    fc1 [D, H] and fc2 [H, N]."""
    names = [f'conv{i}' for i in range(BLOCKS - self.fast_convs, BLOCKS)] + ['fc1', 'fc2']
    return [tf.convert_to_tensor(net.get_layer(n).kernel) for n in names]

  def body(self, net: keras.Model, x: tf.Tensor) -> tf.Tensor:
    """The slow-only blocks of `net` on one batch: x [M, H, W, C] -> [M, h, w, F] (x itself if
    every block is augmented)."""
    h, names = x, {layer.name for layer in net.layers}
    for i in range(BLOCKS - self.fast_convs):
      h = net.get_layer(f'conv{i}')(h)
      if f'norm{i}' in names:
        h = net.get_layer(f'norm{i}')(h)
      h = pool(tf.nn.relu(h))
    return h

  def head(self, kernels: list, h: tf.Tensor, fast: list | None = None,
           key: bool = False) -> tf.Tensor:
    """The layer-augmented layers on the body's output h [M, ...]: logits [M, N], or with key=True
    the key, FC 1's linear output [M, H] (u's r, official embed_key).

    kernels: slow weights (kernels()), each shared or per example [M, ...]; fast: None (slow
    weights only, b(W, x)) or fast weights aligned with kernels (key: without fc2), shared or per
    example. An augmented layer sums the ReLUs of its slow and fast paths; the output layer (and
    the key) sums the linear paths."""
    def both(layer, x, i, relu):
      act = tf.nn.relu if relu else tf.identity
      y = act(layer(x, kernels[i]))
      return y if fast is None else y + act(layer(x, fast[i]))

    for i in range(self.fast_convs):
      h = pool(both(conv, h, i, True))
    h = tf.reshape(h, [tf.shape(h)[0], -1])
    if key:
      return both(dense, h, self.fast_convs, False)
    h = both(dense, h, self.fast_convs, True)
    return both(dense, h, self.fast_convs + 1, False)

  def example_gradients(self, kernels: list, h: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
    """grad_W of each example's own cross-entropy, slow weights only: [M, *shape] per kernel, for
    the body's outputs h [M, ...] and one-hot y [M, N]. Constants to the meta-gradient."""
    kernels = [tf.stop_gradient(k) for k in kernels]
    h = tf.stop_gradient(h)
    tiled = [tf.tile(k[None], [tf.shape(h)[0]] + [1] * k.shape.rank) for k in kernels]
    with tf.GradientTape() as tape:
      tape.watch(tiled)
      # Example m's loss depends on its own copy only, so the summed loss's gradient with respect
      # to copy m is example m's gradient.
      loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y,
                                                                   logits=self.head(tiled, h)))
    return [tf.stop_gradient(g) for g in tape.gradient(loss, tiled)]

  def generate(self, gradients: list, recurrent: bool) -> list[tf.Tensor]:
    """Fast weights from gradients [B, *shape] each (B: examples for m, chunks for d): m -> [B,
    *shape] per kernel, d -> [*shape] (the LSTM reads the B chunks in order)."""
    out = []
    for g in gradients:
      kind = 'conv' if g.shape.rank == 5 else 'dense'
      shape = tf.shape(g)
      x = log_and_sign(g)                                   # [B, *shape, 2]
      if recurrent:
        x = tf.transpose(tf.reshape(x, [shape[0], -1, 2]), [1, 0, 2])   # [P, T, 2]
        w = getattr(self, f'd_{kind}')(x)[:, 0]
        out.append(tf.reshape(w, shape[1:]))
      else:
        w = getattr(self, f'm_{kind}')(tf.reshape(x, [-1, 2]))[:, 0]
        out.append(tf.reshape(w, shape))
    return out

  def task_logits(self, support_x: tf.Tensor, support_y: tf.Tensor,
                  query_x: tf.Tensor) -> tf.Tensor:
    """Logits [Q, N] of one task's queries: support_x [M, ...], support_y [M, N], query_x [Q, ...].
    The support set and the queries go through the bodies in separate batches (official)."""
    y = tf.cast(support_y, support_x.dtype)
    w, q = self.kernels(self.model), self.kernels(self.u)
    hb_s, hb_q = self.body(self.model, support_x), self.body(self.model, query_x)
    hu_s, hu_q = self.body(self.u, support_x), self.body(self.u, query_x)
    # Task-level fast weights of u: d reads the mean gradient of each of T equal chunks.
    per_example = self.example_gradients(q, hu_s, y)[:-1]       # fc2 (u's classifier): no key
    q_fast = self.generate([chunk_means(g, self.chunks) for g in per_example], recurrent=True)
    memory_keys = self.head(q, hu_s, q_fast, key=True)          # r'_i [M, H]
    keys = self.head(q, hu_q, q_fast, key=True)                 # r [Q, H]
    memory = self.generate(self.example_gradients(w, hb_s, y), recurrent=False)  # W*_i [M, ...]
    return self.head(w, hb_q, read(keys, memory_keys, memory))

  def logits(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor) -> tf.Tensor:
    """[T, N*Q, N] for T tasks, each on its own."""
    return tf.map_fn(lambda e: self.task_logits(*e), (support_x, support_y, query_x),
                     fn_output_signature=tf.TensorSpec(None, support_x.dtype))

  # --- compiled steps ----------------------------------------------------------------------------

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = 'maml',
                      jit_compile: bool = False, steps_per_call: int = 1, strategy=None):
    """A compiled update -> {'loss', 'pre_loss', 'post_loss'}, all the mean over the T tasks of
    the summed query cross-entropy ([S] each for steps_per_call = S > 1, as MAML's)."""
    if objective != methods.META:
      raise ValueError(f'objective={objective!r}: Meta Networks train the episodic objective only '
                       f'({methods.META!r})')
    if strategy is not None:
      raise ValueError('Meta Networks do not support a tf.distribute strategy')
    variables = self.variables

    def update(episode):
      support_x, support_y, query_x, query_y = episode
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(self.loss_fn(query_y, self.logits(support_x, support_y, query_x)))
      grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
      if self.clip_norm is not None:  # chainer's GradientClipping: one global norm
        grads = tf.clip_by_global_norm(grads, self.clip_norm)[0]
      optimizer.apply(grads, variables)
      return {'loss': loss, 'pre_loss': loss, 'post_loss': loss}

    return compile_update(update, variables[0].dtype, steps_per_call, jit_compile)

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric': accuracy} [1, T] (and
    'outputs' [1, T, N*Q, N], the logits); lr is ignored, steps must be 0."""

    def task(support_x, support_y, query_x, query_y):
      out = self.logits(support_x, support_y, query_x)
      return {'loss': self.loss_fn(query_y, out), 'metric': self.metric_fn(query_y, out),
              'outputs': out}

    return methods.stepless_eval_step(task, 'Meta Networks', steps, jit_compile=jit_compile,
                                      return_outputs=return_outputs)


def metanet_loss(y: tf.Tensor, logits: tf.Tensor, shots=None) -> tf.Tensor:
  """The official task loss: softmax cross-entropy summed over a task's queries, [T] for one-hot
  y and logits [T, Q, N]."""
  del shots
  return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits), -1)


@config.Part
class MetaNetOptions:
  """Meta Networks' options: which layers are fast-parameterized, the meta learner's inputs and
  the official optimizer's clipping (Munkhdalai & Yu 2017)."""
  metanet_fast_convs: int = option(
      4, 'Meta Networks: how many of the last conv blocks are layer-augmented (the FCs always '
      'are); the others use slow weights only, with the row\'s norm (official: all on Omniglot, '
      'the last 2 of 5 on MiniImagenet).', flag=True)
  metanet_hidden: int = option(
      64, 'Meta Networks: H, the width of FC 1 of the base learner and of u (its fast weights: '
      'H x the feature size per support example).', flag=True)
  metanet_chunks: int = option(
      5, 'Meta Networks: T, the equal chunks of the support set whose representation-loss '
      'gradients the LSTM d reads in turn (official Omniglot: 5).', flag=True)
  metanet_clip_norm: float | None = option(
      10.0, 'Meta Networks: clip the meta-gradient to this global norm (official: 10; None: no '
      'clipping).', flag=True)

  def check(self, bad: config.Bad) -> None:
    defaults = type(self).__dataclass_fields__
    names = ('metanet_fast_convs', 'metanet_hidden', 'metanet_chunks', 'metanet_clip_norm')
    if self.method != MetaNet.name:
      for name in names:
        if getattr(self, name) != defaults[name].default:
          bad(name, 'is for Meta Networks only')
      return
    if not 0 <= self.metanet_fast_convs <= BLOCKS:
      bad('metanet_fast_convs', f'must lie in 0..{BLOCKS}')
    config.at_least(self, bad, 1, ('metanet_hidden', 'metanet_chunks'))
    if self.metanet_clip_norm is not None and not self.metanet_clip_norm > 0:
      bad('metanet_clip_norm', 'must be positive or None')
    for k in (self.update_batch_size, *self.eval_shots):
      if (self.num_classes * k) % self.metanet_chunks:
        bad('metanet_chunks', f'must divide the support set (N*K = {self.num_classes * k})')
    if self.datasource == 'sinusoid' or not self.conv or not self.max_pool:
      bad('method', 'Meta Networks run the max-pooling conv4 on images: conv and max_pool must '
          'be True')
    if self.metanet_fast_convs == BLOCKS and self.norm != 'None':
      bad('norm', "normalizes the slow-only blocks, and every block is layer-augmented: use 'None'")
    if self.test_num_updates or self.report_step:
      bad('method', 'fine-tunes nothing: test_num_updates and report_step must be 0')
    if not self.transductive:
      bad('transductive', 'must be True: the queries of a task go through the body in one batch')
    if self.meta_grad_clip is not None:
      bad('meta_grad_clip', 'must be None: Meta Networks clip by norm (metanet_clip_norm)')
    if self.distribute != 'none':
      bad('distribute', 'is for the gradient-based methods; Meta Networks run on one device')


@methods.register('metanet')
class MetaNet(methods.Method):
  """b(W, sum_i a_i W*_i, x), a = softmax cos(u(Q, Q*, x), r'_i); cross-entropy on the queries."""
  inner_loop = False
  options = MetaNetOptions
  report_groups = {'metanet': 'Meta Networks (Munkhdalai & Yu 2017)'}

  def _network(self, name: str) -> keras.Model:
    cfg = self.cfg
    return metanet_network(data_generator.image_shape(cfg), cfg.num_classes, cfg.num_filters,
                           cfg.metanet_hidden, cfg.metanet_fast_convs, cfg.norm, name)

  def build_model(self) -> keras.Model:
    """The base learner b (slow weights W)."""
    return self._network('base_learner')

  def build(self, model: keras.Model) -> MetaNetLearner:
    """u and the generators are built here, right after b, from the same seed."""
    cfg = self.cfg
    return MetaNetLearner(model, self._network('representation'), fast_convs=cfg.metanet_fast_convs,
                          chunks=cfg.metanet_chunks, clip_norm=cfg.metanet_clip_norm)

  def log_losses(self, values: dict[str, float]) -> str:
    return 'query loss %.4f' % values['loss']

  def label(self) -> str:
    return 'MetaNet'
