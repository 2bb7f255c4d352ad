"""Networks of the paper, built from ordinary Keras layers (the MAML core works on any Keras model).

The original builds its weights by hand (`construct_fc_weights`); these builders reproduce its
architecture and initialization with Keras layers so `model.stateless_call` can run them on
functional parameters.
"""

from __future__ import annotations

import keras

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

  def __init__(self, kind: str, scale: bool, epsilon: float, **kwargs):
    super().__init__(**kwargs)
    if kind not in ('batch', 'layer'):
      raise ValueError(f'kind must be batch or layer, not {kind!r}')
    self.kind, self.scale, self.epsilon = kind, scale, epsilon

  def build(self, input_shape):
    channels = input_shape[-1]
    self.beta = self.add_weight(shape=(channels,), initializer='zeros', name='beta')
    self.gamma = (self.add_weight(shape=(channels,), initializer='ones', name='gamma')
                  if self.scale else None)

  def call(self, x):
    axes = tuple(range(len(x.shape) - 1)) if self.kind == 'batch' else (-1,)
    mean = keras.ops.mean(x, axis=axes, keepdims=True)
    var = keras.ops.mean(keras.ops.square(x - mean), axis=axes, keepdims=True)
    y = (x - mean) * keras.ops.rsqrt(var + self.epsilon)
    if self.gamma is not None:
      y = y * self.gamma
    return y + self.beta

  def get_config(self):
    return {**super().get_config(), 'kind': self.kind, 'scale': self.scale,
            'epsilon': self.epsilon}


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
             max_pool: bool = False, norm_kind: str = 'batch_norm', name: str = 'conv4') -> keras.Model:
  """The original's conv4: 4 x [3x3 conv (F filters) -> norm -> ReLU (-> 2x2 max-pool)] -> linear head.

  Without max_pool the convs have stride 2 (Omniglot 28 -> 14 -> 7 -> 4 -> 2) and the head averages
  over H and W, then a [F, N] layer initialized with std 1 (the original's tf.random_normal w5).
  With max_pool the convs have stride 1 and each block ends with a VALID 2x2 pool (MiniImagenet
  84 -> 42 -> 21 -> 10 -> 5), then flatten and a Glorot-uniform [5*5*F, N] layer. Conv kernels are
  Glorot uniform (xavier_initializer_conv2d), biases 0. Omniglot 5-way: 112,005 parameters;
  MiniImagenet 5-way, F = 32: 32,773.
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
  if max_pool:
    h = keras.layers.Flatten()(h)
    head_init = 'glorot_uniform'
  else:
    h = keras.layers.GlobalAveragePooling2D()(h)
    head_init = keras.initializers.RandomNormal(stddev=1.0)
  outputs = keras.layers.Dense(num_classes, kernel_initializer=head_init, name='head')(h)
  return keras.Model(inputs, outputs, name=name)


IMAGE_SHAPES = {'omniglot': (28, 28, 1), 'miniimagenet': (84, 84, 3)}


def build_model(cfg: Config) -> keras.Model:
  """The network of an experiment row."""
  if cfg.datasource == 'sinusoid':
    return fc_net((cfg.input_dim,), cfg.hidden, 1, cfg.norm, name='sinusoid_fc')
  shape = IMAGE_SHAPES[cfg.datasource]
  # The classifier baselines train one output per meta-training class (then get an N-way head).
  outputs = cfg.classifier_classes if cfg.baseline in ('finetune', 'nearest_neighbor') else cfg.num_classes
  if cfg.conv:
    return conv_net(shape, outputs, cfg.num_filters, cfg.max_pool, cfg.norm)
  return fc_net(shape, cfg.hidden, outputs, cfg.norm, name='no_conv')


def inner_loop_mask(model: keras.Model, adapt_norm: bool = False) -> tuple[bool, ...]:
  """One bool per trainable variable: True if the inner loop adapts it.

  Normalization parameters are excluded unless adapt_norm (original: they are meta-learned only).
  """
  frozen = set()

  def visit(layer):
    if isinstance(layer, NORM_LAYERS):
      frozen.update(id(v) for v in layer.trainable_variables)
    for sub in getattr(layer, 'layers', ()):
      visit(sub)

  if not adapt_norm:
    visit(model)
  return tuple(id(v) not in frozen for v in model.trainable_variables)
