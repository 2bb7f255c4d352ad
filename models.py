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


def fc_net(input_dim: int, hidden: tuple[int, ...], output_dim: int, norm_kind: str = 'None',
           name: str = 'fc') -> keras.Model:
  """FC net input_dim -> hidden... -> output_dim with ReLU (sinusoid: 1-40-40-1, 1,761 parameters).

  Weights truncated_normal(std=0.01), biases 0, as the original's construct_fc_weights; each hidden
  layer is Dense -> norm -> ReLU; the output is linear.
  """
  init = keras.initializers.TruncatedNormal(stddev=0.01)
  inputs = keras.Input((input_dim,))
  h = inputs
  for i, width in enumerate(hidden):
    h = keras.layers.Dense(width, kernel_initializer=init, name=f'dense{i}')(h)
    norm = norm_layer(norm_kind, f'norm{i}')
    if norm is not None:
      h = norm(h)
    h = keras.layers.ReLU()(h)
  outputs = keras.layers.Dense(output_dim, kernel_initializer=init, name='out')(h)
  return keras.Model(inputs, outputs, name=name)


def build_model(cfg: Config) -> keras.Model:
  """The network of an experiment row."""
  if cfg.datasource == 'sinusoid':
    return fc_net(cfg.input_dim, cfg.hidden, 1, cfg.norm, name='sinusoid_fc')
  raise ValueError(f'no model for datasource {cfg.datasource!r}')


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
