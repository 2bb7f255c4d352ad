"""The Gaussian MLP policy of the RL rows and its distribution: log-likelihood, KL, entropy.

A policy maps observations [M, O] to outputs [M, 2A]: the action mean and a learned,
state-independent log standard deviation (rllab's GaussianMLPPolicy). O observation and A action
dimensions.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

MIN_LOG_STD = math.log(1e-6)  # rllab's min_std


class LogStd(keras.layers.Layer):
  """Appends a learned, state-independent log standard deviation to the action mean: [M, A] -> [M, 2A]."""

  def build(self, input_shape):
    self.log_std = self.add_weight(shape=(input_shape[-1],), initializer='zeros', name='log_std')

  def call(self, mean):
    return keras.ops.concatenate([mean, keras.ops.broadcast_to(self.log_std, keras.ops.shape(mean))],
                                 axis=-1)


def policy_net(obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (100, 100),
               name: str = 'gaussian_mlp', dtype: str = 'float32') -> keras.Model:
  """The paper's Gaussian MLP policy: obs [M, O] -> (mean, log std) [M, 2A].

  ReLU hidden layers, a linear mean, Glorot-uniform weights and zero biases (rllab's defaults), and a
  state-independent log std initialized to 0 (std 1). Every parameter, log std included, is adapted.
  """
  inputs = keras.Input((obs_dim,), dtype=dtype)
  h = inputs
  for i, width in enumerate(hidden):
    h = keras.layers.Dense(width, activation='relu', name=f'hidden{i}', dtype=dtype)(h)
  mean = keras.layers.Dense(act_dim, name='mean', dtype=dtype)(h)
  return keras.Model(inputs, LogStd(name='log_std', dtype=dtype)(mean), name=name)


def split_outputs(out: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """[..., 2A] -> mean [..., A], log std [..., A] (floored at log 1e-6, as rllab)."""
  mean, log_std = tf.split(out, 2, axis=-1)
  return mean, tf.maximum(log_std, MIN_LOG_STD)


def log_prob(out: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
  """log N(actions; mean, diag(std^2)) summed over the A action dimensions: [...]."""
  mean, log_std = split_outputs(out)
  z = (actions - mean) * tf.exp(-log_std)
  dims = tf.cast(tf.shape(actions)[-1], out.dtype)
  return -0.5 * tf.reduce_sum(tf.square(z), -1) - tf.reduce_sum(log_std, -1) - 0.5 * dims * math.log(
      2 * math.pi)


def kl_divergence(old: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
  """KL(N_old || N_new) of diagonal Gaussians given as outputs [..., 2A]: [...]."""
  mean0, log_std0 = split_outputs(old)
  mean1, log_std1 = split_outputs(new)
  return tf.reduce_sum(log_std1 - log_std0 + (tf.exp(2 * log_std0) + tf.square(mean0 - mean1)) /
                       (2 * tf.exp(2 * log_std1)) - 0.5, -1)


def entropy(out: tf.Tensor) -> tf.Tensor:
  """Entropy of the diagonal Gaussian [..., 2A]: [...]."""
  _, log_std = split_outputs(out)
  return tf.reduce_sum(log_std + 0.5 * math.log(2 * math.pi * math.e), -1)
