"""The learned optimizer m(g; phi) and the hand-designed baselines, as update rules on a flat theta.

Every optimizer here is a rule with
  init(theta [D]) -> state                        (a tuple of tensors)
  step(theta [D], g [D], state, lr) -> (theta', state')
so one loop (l2l.problems.optimize) runs the LSTM and the baselines on the same problems. `lr` is the
baselines' learning rate; the LSTM has none and ignores it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

BASELINES = ('sgd', 'rmsprop', 'adam', 'nag')


def preprocess(g: tf.Tensor, p: float) -> tf.Tensor:
  """Paper App. A: each coordinate of g [D] -> [D, 2]:
  (log|g| / p, sign g) if |g| >= e^-p, else (-1, e^p g)."""
  big = tf.abs(g) >= tf.exp(tf.constant(-p, g.dtype))
  magnitude = tf.where(big, tf.abs(g), tf.ones_like(g))  # log of 1 where unused: no inf, no NaN
  first = tf.where(big, tf.math.log(magnitude) / p, -tf.ones_like(g))
  second = tf.where(big, tf.sign(g), tf.exp(tf.constant(p, g.dtype)) * g)
  return tf.stack([first, second], -1)


class LSTMOptimizer(keras.Model):
  """m(g; phi): a stack of LSTMs run on every coordinate of theta separately, with the weights phi
  shared by all coordinates (paper §3.1, "coordinatewise"), then a linear output scaled by
  `output_scale`: theta_{t+1} = theta_t + g_t', where g_t' = output_scale * W h_t + b.

  Inputs per coordinate: the gradient itself [D, 1], or preprocessed [D, 2] when preprocess_p is set.
  State: (h_1, c_1, h_2, c_2, ...), each [D, hidden].
  """

  def __init__(self, hidden: tuple[int, ...] = (20, 20), preprocess_p: float | None = 10.0,
               output_scale: float = 0.1):
    super().__init__()
    self.hidden, self.preprocess_p, self.output_scale = tuple(hidden), preprocess_p, output_scale
    self.cells = [keras.layers.LSTMCell(units) for units in self.hidden]
    for i, cell in enumerate(self.cells):  # a checkpoint has no edge into a Keras 3 list of layers
      setattr(self, f'lstm_{i + 1}', cell)
    self.out = keras.layers.Dense(1)
    self.step(tf.zeros([1]), tf.zeros([1]), self.init(tf.zeros([1])))  # creates phi

  def init(self, theta: tf.Tensor) -> tuple[tf.Tensor, ...]:
    d = tf.size(theta)
    return tuple(tf.zeros([d, units], theta.dtype) for units in self.hidden for _ in range(2))

  def call(self, g: tf.Tensor, state: tuple[tf.Tensor, ...]):
    """g [D] -> (the update g_t' [D], the next state)."""
    x = preprocess(g, self.preprocess_p) if self.preprocess_p else g[:, None]
    new_state = []
    for i, cell in enumerate(self.cells):
      x, (h, c) = cell(x, [state[2 * i], state[2 * i + 1]])
      new_state += [h, c]
    return self.out(x)[:, 0] * self.output_scale, tuple(new_state)

  def step(self, theta, g, state, lr=None):
    del lr  # learned: no step size
    update, state = self(g, state)
    return theta + update, state


class SGD:
  """theta <- theta - lr g."""

  def init(self, theta):
    return ()

  def step(self, theta, g, state, lr):
    return theta - lr * g, state


class NAG:
  """Nesterov's accelerated gradient (Sutskever et al. 2013's form, as Torch7 optim.nag and Keras'
  SGD(nesterov=True)): v <- mu v - lr g; theta <- theta + mu v - lr g. mu = 0.9, Torch7's default."""

  def __init__(self, momentum: float = 0.9):
    self.momentum = momentum

  def init(self, theta):
    return (tf.zeros_like(theta),)

  def step(self, theta, g, state, lr):
    v = self.momentum * state[0] - lr * g
    return theta + self.momentum * v - lr * g, (v,)


class RMSprop:
  """Torch7 optim.rmsprop: m <- a m + (1 - a) g^2; theta <- theta - lr g / (sqrt(m) + eps),
  a = 0.99, eps = 1e-8 (its defaults)."""

  def __init__(self, decay: float = 0.99, epsilon: float = 1e-8):
    self.decay, self.epsilon = decay, epsilon

  def init(self, theta):
    return (tf.zeros_like(theta),)

  def step(self, theta, g, state, lr):
    m = self.decay * state[0] + (1 - self.decay) * tf.square(g)
    return theta - lr * g / (tf.sqrt(m) + self.epsilon), (m,)


class Adam:
  """Kingma & Ba 2015 with bias correction, Torch7 optim.adam's defaults (0.9, 0.999, 1e-8)."""

  def __init__(self, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
    self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

  def init(self, theta):
    return (tf.zeros_like(theta), tf.zeros_like(theta), tf.zeros([], theta.dtype))

  def step(self, theta, g, state, lr):
    m, v, t = state
    t = t + 1
    m = self.beta1 * m + (1 - self.beta1) * g
    v = self.beta2 * v + (1 - self.beta2) * tf.square(g)
    m_hat, v_hat = m / (1 - self.beta1 ** t), v / (1 - self.beta2 ** t)
    return theta - lr * m_hat / (tf.sqrt(v_hat) + self.epsilon), (m, v, t)


def baseline(name: str):
  """The update rule of a baseline named in BASELINES, with the paper's (Torch7's) other settings."""
  rules = {'sgd': SGD, 'rmsprop': RMSprop, 'adam': Adam, 'nag': NAG}
  if name not in rules:
    raise ValueError(f'unknown baseline {name!r}; choose one of {BASELINES}')
  return rules[name]()
