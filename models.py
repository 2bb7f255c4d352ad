"""Networks of the paper, built from ordinary Keras layers (the MAML core works on any Keras model).

The original builds its weights by hand (`construct_fc_weights`); these builders reproduce its
architecture and initialization with Keras layers so `model.stateless_call` can run them on
functional parameters.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf  # task_batched_forward: grouped convolutions (keras.ops has no groups)

from typing import TYPE_CHECKING

from config import ConfigError
import data_generator
import image_datasets

if TYPE_CHECKING:
  from experiments import Config


class Normalization(keras.layers.Layer):
  """Batch or layer normalization that always uses the statistics of the current call.

  Why not keras.layers.BatchNormalization: its moments come from tf.nn.moments, which computes the
  variance as mean((x - stop_gradient(mean))^2). First derivatives are exact, but the Hessian of the
  variance loses its -2/n^2 term, so a second-order meta-gradient through it is wrong (the finite-
  difference test in tests/test_maml.py catches this). This layer differentiates exactly.

  kind='batch': statistics over every axis but the channels (batch, and H, W for images), as the
  original's tf.contrib batch_norm with is_training=True at train and test; there are no moving
  averages, which the original never used. kind='layer': statistics over the channels.
  """

  def __init__(self, kind: str, scale: bool, epsilon: float, fused: bool = True, **kwargs):
    super().__init__(**kwargs)
    if kind not in ('batch', 'layer'):
      raise ValueError(f'kind must be batch or layer, not {kind!r}')
    self.kind, self.scale, self.epsilon, self.fused = kind, scale, epsilon, fused

  def build(self, input_shape):
    channels = input_shape[-1]
    self.beta = self.add_weight(shape=(channels,), initializer='zeros', name='beta')
    self.gamma = (self.add_weight(shape=(channels,), initializer='ones', name='gamma')
                  if self.scale else None)

  def call(self, x):
    if self.kind == 'batch':
      return self.batch_norm(x, self.beta, self.gamma)
    return self.normalize(x, (-1,), self.beta, self.gamma)

  def batch_norm(self, x, beta, gamma):
    """normalize() over every axis but the last (channels [C]: beta, gamma [C]).

    float32 runs TensorFlow's fused kernels, several times faster on large images: the forward and
    first derivative are exact kernels, and its second derivative (FusedBatchNormGradGrad) is
    exact too, since it differentiates an explicit gradient formula only once (tests/test_models.py
    checks the meta-gradient against normalize(), which tests/test_maml.py checks against finite
    differences). Other dtypes (float64 in the tests), or fused=False, use normalize().
    """
    # The fused op's dtype and epsilon floor.
    if not self.fused or x.dtype != tf.float32 or self.epsilon < 1.001e-5:
      return self.normalize(x, tuple(range(len(x.shape) - 1)), beta, gamma)
    channels = tf.shape(beta)[-1]
    scale = gamma if gamma is not None else tf.ones_like(beta)
    y, _, _ = tf.compat.v1.nn.fused_batch_norm(tf.reshape(x, [-1, 1, 1, channels]), scale, beta,
                                               epsilon=self.epsilon, is_training=True)
    return tf.reshape(y, tf.shape(x))

  def normalize(self, x, axes, beta, gamma):
    """(x - mean) / sqrt(var + eps) * gamma + beta, moments over `axes` (beta, gamma broadcast)."""
    mean = keras.ops.mean(x, axis=axes, keepdims=True)
    var = keras.ops.mean(keras.ops.square(x - mean), axis=axes, keepdims=True)
    y = (x - mean) * keras.ops.rsqrt(var + self.epsilon)
    if gamma is not None:
      y = y * gamma
    return y + beta

  def get_config(self):
    return {**super().get_config(), 'kind': self.kind, 'scale': self.scale,
            'epsilon': self.epsilon, 'fused': self.fused}


# Normalization variables are kept out of the inner loop, as in the original (they are not in its
# `weights` dict, so only the outer Adam step updates them).
NORM_LAYERS = (Normalization,)


def norm_layer(norm: str, name: str | None = None, **kwargs):
  """The original's `normalize()` choices with tf.contrib defaults, or None for 'None'."""
  if norm == 'batch_norm':  # tf.contrib batch_norm defaults: beta only (no gamma), eps 1e-3
    return Normalization('batch', scale=False, epsilon=1e-3, name=name, **kwargs)
  if norm == 'layer_norm':  # tf.contrib layer_norm defaults: beta and gamma, eps 1e-12
    return Normalization('layer', scale=True, epsilon=1e-12, name=name, **kwargs)
  return None


def fc_net(input_shape: tuple[int, ...], hidden: tuple[int, ...], output_dim: int,
           norm_kind: str = 'None', name: str = 'fc') -> keras.Model:
  """FC net input -> hidden... -> output_dim with ReLU (sinusoid: 1-40-40-1, 1,761 parameters).

  Images are flattened first (the "no conv" net: 784-256-128-64-64-N). Weights
  truncated_normal(std=0.01), biases 0, as the original's construct_fc_weights; each hidden layer is
  Dense -> norm -> ReLU; the output is linear.
  """
  init = keras.initializers.TruncatedNormal(stddev=0.01)
  inputs = keras.Input(input_shape)
  h = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
  for i, width in enumerate(hidden):
    h = keras.layers.Dense(width, kernel_initializer=init, name=f'dense{i}')(h)
    norm = norm_layer(norm_kind, f'norm{i}')
    if norm is not None:
      h = norm(h)
    h = keras.layers.ReLU()(h)
  outputs = keras.layers.Dense(output_dim, kernel_initializer=init, name='out')(h)
  return keras.Model(inputs, outputs, name=name)


def conv_net(image_shape: tuple[int, int, int], num_classes: int, num_filters: int = 64,
             max_pool: bool = False, norm_kind: str = 'batch_norm', name: str = 'conv4',
             head: bool = True, flatten: bool = False) -> keras.Model:
  """The original's conv4: 4 x [3x3 conv (F filters) -> norm -> ReLU (-> 2x2 max-pool)] -> linear head.

  Without max_pool the convs have stride 2 (Omniglot 28 -> 14 -> 7 -> 4 -> 2) and the head averages
  over H and W, then a [F, N] layer initialized with std 1 (the original's tf.random_normal w5).
  With max_pool the convs have stride 1 and each block ends with a VALID 2x2 pool (MiniImagenet
  84 -> 42 -> 21 -> 10 -> 5), then flatten and a Glorot-uniform [5*5*F, N] layer; flatten=True gives
  the strided convs that head too (openai/supervised-reptile's Omniglot model: [2*2*F, N]). Conv kernels are
  Glorot uniform (xavier_initializer_conv2d), biases 0. Omniglot 5-way: 112,005 parameters;
  MiniImagenet 5-way, F = 32: 32,773. head=False ends at the head's input (the embedding of the
  metric learners: [M, F] for Omniglot, [M, 5*5*F] for MiniImagenet).
  """
  inputs = keras.Input(image_shape)
  h = inputs
  for i in range(4):
    h = keras.layers.Conv2D(num_filters, 3, strides=1 if max_pool else 2, padding='same',
                            name=f'conv{i}')(h)
    norm = norm_layer(norm_kind, f'norm{i}')
    if norm is not None:
      h = norm(h)
    h = keras.layers.ReLU()(h)
    if max_pool:
      h = keras.layers.MaxPool2D(2, 2, padding='valid')(h)
  if max_pool or flatten:
    h = keras.layers.Flatten()(h)
    head_init = 'glorot_uniform'
  else:
    h = keras.layers.GlobalAveragePooling2D()(h)
    head_init = keras.initializers.RandomNormal(stddev=1.0)
  if not head:
    return keras.Model(inputs, h, name=name)
  outputs = keras.layers.Dense(num_classes, kernel_initializer=head_init, name='head')(h)
  return keras.Model(inputs, outputs, name=name)


IMAGE_SHAPES = image_datasets.IMAGE_SHAPES  # Omniglot, MiniImagenet; a folder: its row's


def build_model(cfg: Config, outputs: int | None = None, embedding: bool = False) -> keras.Model:
  """The network of an experiment row: N outputs (`outputs` if given), or with embedding=True
  the conv4 without its head (the features [B, D])."""
  if cfg.datasource == 'sinusoid':
    return fc_net((cfg.input_dim,), cfg.hidden, 1, cfg.norm, name='sinusoid_fc')
  shape = data_generator.image_shape(cfg)
  outputs = cfg.num_classes if outputs is None else outputs
  if embedding:
    return conv_net(shape, outputs, cfg.num_filters, cfg.max_pool, cfg.norm, name='embedding',
                    head=False, flatten=cfg.conv_head == 'flatten')
  if cfg.conv:
    return conv_net(shape, outputs, cfg.num_filters, cfg.max_pool, cfg.norm,
                    flatten=cfg.conv_head == 'flatten')
  return fc_net(shape, cfg.hidden, outputs, cfg.norm, name='no_conv')


def norm_mask(model: keras.Model) -> tuple[bool, ...]:
  """One bool per trainable variable: True for the normalization layers' parameters."""
  norm = {id(v) for layer in model.layers if isinstance(layer, NORM_LAYERS)
          for v in layer.trainable_variables}
  return tuple(id(v) in norm for v in model.trainable_variables)


def inner_loop_mask(model: keras.Model, adapt_norm: bool = False,
                    inner_loop: str = 'all') -> tuple[bool, ...]:
  """One bool per trainable variable: True if the inner loop adapts it.

  inner_loop='all' (MAML): every variable but the normalization parameters (unless adapt_norm;
  original: they are meta-learned only). 'head' (ANIL, Raghu et al. 2020): only the last layer with
  weights, the linear head; the body is meta-learned and never adapted.
  """
  if inner_loop == 'head':
    head = [layer for layer in model.layers if layer.trainable_variables][-1]
    adapted = {id(v) for v in head.trainable_variables}
    return tuple(id(v) in adapted for v in model.trainable_variables)
  if inner_loop != 'all':
    raise ValueError(f"inner_loop must be 'all' or 'head', not {inner_loop!r}")
  frozen = set()

  def visit(layer):
    if isinstance(layer, NORM_LAYERS):
      frozen.update(id(v) for v in layer.trainable_variables)
    for sub in getattr(layer, 'layers', ()):
      visit(sub)

  if not adapt_norm:
    visit(model)
  return tuple(id(v) not in frozen for v in model.trainable_variables)


# --- task-batched forward pass ---------------------------------------------------------------------

# The automatic task_chunk's budget: floats of the largest layer output of one chunk's tasks (support
# and query examples). Measured on 2 CPU cores (docs/performance.md#memory-task_chunk): chunks of
# about this size keep the cache warm and the memory low, and cost no speed; the whole meta-batch of
# a row with many or large images (Omniglot 20-way or MiniImagenet with 15 queries per class) holds
# 4-16 times more.
CHUNK_ACTIVATIONS = 4 * 2 ** 20


# With P chunks in flight, each on one core: a chunk whose working set stays in the core's own cache.
# Measured on 2 cores (docs/performance.md): Omniglot 5-way, 1 query/class, C = 4 (0.5M floats)
# 10.5 it/s against 9.9 at C = 8 and 8.5 at C = 1; 15 queries/class C = 1 (1M floats) fastest.
CHUNK_IN_FLIGHT_ACTIVATIONS = 2 ** 19


def auto_task_chunk(model: keras.Model, num_tasks: int, examples_per_task: int,
                    budget: int = CHUNK_ACTIVATIONS, in_flight: int = 1) -> int:
  """The largest divisor C of T (num_tasks) whose C tasks' largest layer output fits `budget` floats.

  Returns 0 (the whole meta-batch at once) when all T fit and in_flight is 1, and at least 1
  otherwise; with in_flight P > 1, C <= T/P so that P chunks exist. The largest layer output per
  example is read off the functional model's layers (Omniglot conv4: 14*14*64; MiniImagenet:
  84*84*32).
  """
  largest = max(math.prod(layer.output.shape[1:]) for layer in model.layers
                if not isinstance(layer, keras.layers.InputLayer))
  per_task = largest * examples_per_task
  if in_flight == 1 and per_task * num_tasks <= budget:
    return 0
  return max([c for c in range(1, num_tasks // in_flight + 1)
              if num_tasks % c == 0 and c * per_task <= budget], default=1)


def _check_grouped_conv_gradients() -> None:
  """Raises ConfigError where TensorFlow cannot differentiate a grouped convolution (CPU builds
  without oneDNN, or TF_ENABLE_ONEDNN_OPTS=0)."""
  @tf.function
  def grads(x, kernel):
    with tf.GradientTape() as tape:
      tape.watch([x, kernel])
      y = tf.nn.conv2d(x, kernel, 1, 'SAME')
    return tape.gradient(y, [x, kernel])

  try:
    grads(tf.ones([1, 3, 3, 4]), tf.ones([3, 3, 2, 4]))  # 2 groups
  except tf.errors.InvalidArgumentError:
    raise ConfigError('task_parallelism=batched needs gradients of grouped convolutions, which '
                      'this TensorFlow lacks on this device (a CPU build without oneDNN, or oneDNN '
                      'off: TF_ENABLE_ONEDNN_OPTS=1, which main.py sets unless it is set, turns it '
                      'on); or use --task_parallelism=map_fn (the same results, slower)') from None


def task_batched_forward(model: keras.Model):
  """The model's forward pass for T tasks at once, each with its own parameters, in batched kernels.

  Returns fn(task_params, x) -> [T, M, outputs], with task_params aligned with
  model.trainable_variables and shaped [T, ...], and x [T, M, ...]; the same function as
  `model.stateless_call` mapped over the tasks (tests/test_models.py), in one grouped convolution
  per conv layer (groups = tasks) and one batched matmul per dense layer instead of a loop over
  tasks: TensorFlow cannot vectorize a convolution whose filter differs per task.

  Image activations are folded to [M, H, W, T*C] (channel t*C + c is channel c of task t), the
  layout of grouped convolutions, so convolutions, bias, batch norm, ReLU and pooling all act per
  task and channel; dense activations are [T, M, D]. Supports the layers this module builds
  (Conv2D, Normalization, ReLU, Activation, MaxPool2D, GlobalAveragePooling2D, Flatten, Dense);
  anything else raises ValueError when the function is made. The gradients of grouped convolutions exist on GPU
  and, on CPU, in TensorFlow's oneDNN kernels for float32 (the default on x86).
  """
  index = {id(v): i for i, v in enumerate(model.trainable_variables)}
  elementwise = (keras.layers.ReLU, keras.layers.Activation)
  supported = (keras.layers.InputLayer, keras.layers.Conv2D, Normalization, *elementwise,
               keras.layers.MaxPool2D, keras.layers.GlobalAveragePooling2D, keras.layers.Flatten,
               keras.layers.Dense)
  for layer in model.layers:
    if not isinstance(layer, supported) or layer.non_trainable_variables:
      raise ConfigError(f'task_parallelism=batched does not support layer {layer.name} '
                        f'({type(layer).__name__}); use --task_parallelism=map_fn')
    if isinstance(layer, keras.layers.Conv2D) and (
        layer.groups != 1 or layer.data_format != 'channels_last' or max(layer.dilation_rate) > 1):
      raise ConfigError(f'task_parallelism=batched supports plain channels_last convolutions, not '
                        f'{layer.name}; use --task_parallelism=map_fn')
  if any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers):
    _check_grouped_conv_gradients()

  def unfold(h, tasks):  # [M, H, W, T*C] -> [M, H, W, T, C]
    return tf.reshape(h, tf.concat([tf.shape(h)[:3], [tasks, -1]], 0))

  def fold(h):  # [M, H, W, T, C] -> [M, H, W, T*C]
    return tf.reshape(h, tf.concat([tf.shape(h)[:3], [-1]], 0))

  def flat(p):  # per-task channel parameters [T, C] -> [T*C], the folded channel order
    return tf.reshape(p, [-1])

  def forward(task_params, x):
    tasks = tf.shape(x)[0]
    image = len(x.shape) == 5
    h = fold(tf.transpose(x, [1, 2, 3, 0, 4])) if image else x  # [M, H, W, T*C] or [T, M, D]
    for layer in model.layers:
      params = [task_params[index[id(v)]] for v in layer.trainable_variables]
      if isinstance(layer, keras.layers.Conv2D):
        kernel = params[0]  # [T, kh, kw, C, F] -> [kh, kw, C, T*F]: group t holds task t's filters
        kernel = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]),
                            tf.concat([tf.shape(kernel)[1:4], [-1]], 0))
        h = tf.nn.conv2d(h, kernel, layer.strides, layer.padding.upper())
        if layer.use_bias:
          h = tf.nn.bias_add(h, flat(params[1]))
        h = layer.activation(h)
      elif isinstance(layer, Normalization):
        beta, gamma = params[0], (params[1] if layer.scale else None)
        if image and layer.kind == 'batch':  # statistics over M, H, W per task and channel
          h = layer.batch_norm(h, flat(beta), None if gamma is None else flat(gamma))
        elif image:  # layer norm: over each task's own channels
          h = fold(layer.normalize(unfold(h, tasks), (-1,), beta, gamma))
        else:  # [T, M, D] against [T, D] parameters: over M (batch) or D (layer) per task
          gamma = None if gamma is None else gamma[:, None]
          h = layer.normalize(h, (1,) if layer.kind == 'batch' else (-1,), beta[:, None], gamma)
      elif isinstance(layer, elementwise):
        h = layer.call(h)
      elif isinstance(layer, keras.layers.MaxPool2D):
        h = tf.nn.max_pool2d(h, layer.pool_size, layer.strides, layer.padding.upper())
      elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
        h = tf.reduce_mean(h, axis=(1, 2))  # [M, T*C]
        h = tf.transpose(tf.reshape(h, [tf.shape(h)[0], tasks, -1]), [1, 0, 2])  # [T, M, C]
        image = False
      elif isinstance(layer, keras.layers.Flatten):
        if image:  # [M, h, w, T*C] -> [T, M, h*w*C], Flatten's order within each task
          h = tf.transpose(unfold(h, tasks), [3, 0, 1, 2, 4])
          image = False
        h = tf.reshape(h, tf.concat([tf.shape(h)[:2], [-1]], 0))
      elif isinstance(layer, keras.layers.Dense):
        h = tf.matmul(h, params[0])  # [T, M, D] x [T, D, N]
        if layer.use_bias:
          h = h + params[1][:, None]
        h = layer.activation(h)
    return h

  return forward
