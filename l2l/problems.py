"""The optimizees f(theta) and the loops that run an optimizer on them.

A problem draws instances: `sample(rng, steps)` gives an `Instance` with the starting point theta_0
[D], the function's constants (the quadratic's W and y) and the data of each step t = 0..steps (the
rows of the MNIST minibatches; none for the quadratic). `loss(theta, consts, data_t)` is f(theta) at step t.
Every optimizer compared on an instance sees the same theta_0, function and minibatches.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from image_datasets import DataError

MNIST_URL = 'https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz'


class MnistMissing(DataError):
  """No MNIST file where the row looks for it; the message says where to get one."""


class Instance(NamedTuple):
  theta0: np.ndarray           # [D] float32
  consts: tuple                # the function's constants (arrays)
  data: tuple                  # per-step data, each array [steps + 1, ...]


class Quadratic:
  """f(theta) = 1/F sum_f ||W_f x_f - y_f||^2 over a batch of F random functions of n dimensions
  (theta = the F points x_f, flattened: D = F n), the mean over the batch as the official code
  (problems.quadratic). W [F, n, n] and y [F, n] are uniform on [0, 1) (the official code) or standard
  normal (the paper's text); theta_0 ~ N(0, theta_std^2) (official stddev 0.01)."""

  def __init__(self, dims: int = 10, functions: int = 128, init: str = 'uniform',
               theta_std: float = 0.01):
    if init not in ('uniform', 'gaussian'):
      raise ValueError(f'quadratic init {init!r} is not uniform or gaussian')
    self.dims, self.functions, self.init, self.theta_std = dims, functions, init, theta_std
    self.num_params = dims * functions

  def sample(self, rng: np.random.Generator, steps: int) -> Instance:
    del steps  # deterministic: no per-step data
    shape = (self.functions, self.dims)
    draw = rng.random if self.init == 'uniform' else rng.standard_normal
    w, y = draw(shape + (self.dims,)), draw(shape)
    theta0 = rng.normal(0.0, self.theta_std, self.num_params)
    return Instance(theta0.astype(np.float32), (w.astype(np.float32), y.astype(np.float32)), ())

  def loss(self, theta: tf.Tensor, consts: tuple, data_t: tuple) -> tf.Tensor:
    del data_t
    w, y = consts
    x = tf.reshape(theta, [self.functions, self.dims])
    residual = tf.einsum('fij,fj->fi', w, x) - y
    return tf.reduce_mean(tf.reduce_sum(tf.square(residual), -1))


class MnistMLP:
  """The paper's MNIST optimizee (§3.2): an MLP 784 -> hidden sigmoid units -> 10 logits, mean
  cross-entropy of one minibatch of `batch_size` images per step, drawn at random (with replacement,
  as the official code) from `images` [N, 784] in [0, 1] with `labels` [N]. theta = (W1, b1, W2, b2)
  flattened; theta_0 ~ N(0, 0.01^2) entrywise (the official code's initializers). An instance holds
  its minibatches' rows [steps + 1, batch_size], not the images (100 instances of 101 minibatches
  would take 4 GB)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, hidden: int = 20,
               batch_size: int = 128, init_std: float = 0.01):
    self.images = tf.constant(images.reshape(len(images), -1), tf.float32)
    self.labels = tf.constant(labels, tf.int32)
    self.hidden, self.batch_size, self.init_std = hidden, batch_size, init_std
    inputs = int(self.images.shape[1])
    self.shapes = ((inputs, hidden), (hidden,), (hidden, 10), (10,))
    self.num_params = sum(int(np.prod(s)) for s in self.shapes)

  def sample(self, rng: np.random.Generator, steps: int) -> Instance:
    theta0 = rng.normal(0.0, self.init_std, self.num_params).astype(np.float32)
    rows = rng.integers(0, int(self.images.shape[0]), (steps + 1, self.batch_size)).astype(np.int32)
    return Instance(theta0, (), (rows,))

  def unflatten(self, theta: tf.Tensor) -> list[tf.Tensor]:
    sizes = [int(np.prod(s)) for s in self.shapes]
    return [tf.reshape(p, s) for p, s in zip(tf.split(theta, sizes), self.shapes)]

  def loss(self, theta: tf.Tensor, consts: tuple, data_t: tuple) -> tf.Tensor:
    del consts
    (rows,) = data_t
    x, y = tf.gather(self.images, rows), tf.gather(self.labels, rows)
    w1, b1, w2, b2 = self.unflatten(theta)
    logits = tf.sigmoid(x @ w1 + b1) @ w2 + b2
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))


def load_mnist(path: str | None, flag: str = '--mnist_path') -> dict[str, np.ndarray]:
  """x_train [60000, 28, 28] (as float32 in [0, 1]), y_train, x_test, y_test of Keras' mnist.npz."""
  if not path or not os.path.isfile(path):
    where = f'{path} does not exist' if path else 'no MNIST file was given'
    raise MnistMissing(
        f'{where}: the MNIST rows need MNIST as Keras\' mnist.npz (x_train, y_train, x_test, '
        f'y_test); this machine cannot download it. Get {MNIST_URL} on a machine with internet '
        f'(or copy ~/.keras/datasets/mnist.npz), then pass {flag}=/path/to/mnist.npz')
  with np.load(path) as f:
    missing = {'x_train', 'y_train', 'x_test', 'y_test'} - set(f.files)
    if missing:
      raise MnistMissing(f'{path} is not Keras\' mnist.npz: it lacks {", ".join(sorted(missing))}')
    data = {k: f[k] for k in ('x_train', 'y_train', 'x_test', 'y_test')}
  for k in ('x_train', 'x_test'):
    data[k] = data[k].astype(np.float32) / (255.0 if data[k].dtype == np.uint8 else 1.0)
  return data


def _at(data: tuple, t) -> tuple:
  return tuple(a[t] for a in data)


def loss_and_gradient(problem, theta, consts, data_t):
  """(f(theta) [], its gradient [D])."""
  with tf.GradientTape() as tape:
    tape.watch(theta)
    loss = problem.loss(theta, consts, data_t)
  return loss, tape.gradient(loss, theta)


def unroll(problem, rule, theta, state, consts, data, steps: int, second_order: bool = False):
  """`steps` updates of `rule` from (theta, state) in Python (the graph a meta-gradient goes through).

  data: per-step data [steps + 1, ...]. Returns (losses f(theta_0..theta_steps) [steps + 1], theta,
  state). The optimizee's gradient enters the rule through tf.stop_gradient (the paper's assumption
  dgrad/dphi = 0, §2.1) unless second_order.
  """
  losses = []
  for t in range(steps + 1):
    loss, g = loss_and_gradient(problem, theta, consts, _at(data, t))
    losses.append(loss)
    if t < steps:
      theta, state = rule.step(theta, g if second_order else tf.stop_gradient(g), state)
  return tf.stack(losses), theta, state


def make_optimize(problem, rule, steps: int):
  """A compiled fn(theta0, consts, data, lr) -> f(theta_0..theta_steps) [steps + 1]: `rule` run
  for `steps` steps on one instance (evaluation; no meta-gradient)."""

  @tf.function
  def optimize(theta, consts, data, lr):
    state = rule.init(theta)
    losses = tf.TensorArray(theta.dtype, size=steps + 1)
    for t in tf.range(steps):
      loss, g = loss_and_gradient(problem, theta, consts, _at(data, t))
      losses = losses.write(t, loss)
      theta, state = rule.step(theta, g, state, lr)
    losses = losses.write(steps, problem.loss(theta, consts, _at(data, steps)))
    return losses.stack()

  return optimize
