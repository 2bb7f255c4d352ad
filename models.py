"""Networks of the paper, built from ordinary Keras layers (the MAML core works on any Keras model).

The original builds its weights by hand (`construct_fc_weights`); these builders reproduce its
architecture and initialization with Keras layers so `model.stateless_call` can run them on
functional parameters.
"""

from __future__ import annotations

import keras

from experiments import Config

# Normalization variables are kept out of the inner loop, as in the original (they are not in its
# `weights` dict, so only the outer Adam step updates them).
NORM_LAYERS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)


def _norm_layer(norm: str, name: str):
  if norm == 'batch_norm':
    # tf.contrib.layers.batch_norm defaults used by the original: beta only (no gamma), eps 1e-3.
    return keras.layers.BatchNormalization(scale=False, epsilon=1e-3, name=name)
  if norm == 'layer_norm':
    return keras.layers.LayerNormalization(name=name)
  return None


def fc_net(input_dim: int, hidden: tuple[int, ...], output_dim: int, norm: str = 'None',
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
    norm_layer = _norm_layer(norm, f'norm{i}')
    if norm_layer is not None:
      h = norm_layer(h)
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
