"""Reptile (Nichol, Achiam, Schulman 2018, "On First-Order Meta-Learning Algorithms") on MAML's core.

For each task i of a meta-batch, phi_i is theta after k steps of Adam (beta1 = 0) on minibatches of
the task's training set (N classes x train shots); the outer update is

    theta <- theta + epsilon * (mean_i phi_i - theta),

which is the meta-optimizer (SGD with step size epsilon, annealed linearly to 0) applied to the
"gradient" theta - mean_i phi_i. `Reptile` is a `MAML` whose meta-gradient is that difference, so
the compiled train step, graph loop and tf.distribute path are MAML's own (a replica's part, weighted
1/R, sums to theta - mean phi). Evaluation fine-tunes with the same inner Adam, as
openai/supervised-reptile (50 steps on minibatches of the support set), transductive or not
(`transductive`, see maml.MAML).

Deliberate differences from openai/supervised-reptile (experiments.py rows say so too): the tasks of a
meta-batch are adapted side by side from the same inner-Adam state, which then moves to their mean
(the original runs them one after another through one Adam whose moments persist); minibatches are drawn by the same rule (epochs
of shuffles, a batch may straddle two) from stateless seeds, so a resumed run draws the same ones.

As a method (`ReptileMethod`, registered as 'reptile'): meta-test takes test_num_updates inner Adam
steps of size lr; the meta-optimizer is SGD on theta - mean_i phi_i with epsilon annealed linearly to
0; the inner Adam's moments persist from task to task, so the checkpoint keeps them; its options
(`ReptileOptions`) are the inner minibatch sizes.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import config
from config import option
from maml import MAML, support_shots
import methods
from methods.maml_family import maml_options
import utils

ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8  # TF1 AdamOptimizer's defaults, as the original


class Reptile(MAML):
  """Reptile over a Keras model; the constructor is MAML's plus the minibatch sizes.

  Args (besides MAML's, of which update_lr is Adam's inner step size and num_updates = k, the
  inner steps at meta-training):
    inner_batch: examples per inner minibatch at meta-training (original: 10; 20 for 20-way).
    eval_batch: examples per minibatch when fine-tuning at meta-test, at most the support set
      (original: 5; 15 for MiniImagenet 5-shot; 10 for 20-way).
    seed: seeds the minibatch draws (stateless: a function of seed and the update count).
  """

  def __init__(self, *args, inner_batch: int, eval_batch: int, seed: int = 0, **kwargs):
    super().__init__(*args, **kwargs)
    if self.inner_lr != 'fixed' or self.extra_variables or self.multi_step_loss_epochs:
      raise ValueError('Reptile has no learned step sizes, per-step copies or multi-step loss')
    self.inner_batch, self.eval_batch, self.seed = inner_batch, eval_batch, seed
    # The inner Adam's second moments v and step count t persist across tasks, as the original's
    # optimizer slots do (only the trainable variables are reset per task): a task starts from
    # them, training carries them on, evaluation starts every task from the trained ones.
    self.state_variables = [
        keras.Variable(np.zeros(v.shape), dtype=v.dtype, trainable=False, name=f'adam_v_{i}')
        for i, v in enumerate(self.model.trainable_variables)] + [
        keras.Variable(0, dtype='int64', trainable=False, name='adam_t')]

  def minibatches(self, num_tasks, size: tf.Tensor, steps: int, batch: int, key) -> tf.Tensor:
    """Indices [T, steps, batch] into each task's `size` examples: consecutive batches of a stream
    of independent shuffles (supervised-reptile's _mini_batches without replacement)."""
    epochs = (steps * batch + size - 1) // size
    noise = tf.random.stateless_uniform(tf.stack([num_tasks, epochs, size]), key)
    order = tf.reshape(tf.argsort(noise, axis=-1), [num_tasks, -1])[:, :steps * batch]
    return tf.reshape(order, [num_tasks, steps, batch])

  def adam_adapt(self, task_params, x, y, *, steps: int, lr, batch: int, key, query=None):
    """`steps` Adam (beta1 = 0) steps per task on minibatches of (x [T, M, ...], y [T, M, N]).

    Every task starts from the persistent state (v, t): v <- beta2 v + (1 - beta2) g^2,
    t <- t + 1, p <- p - lr sqrt(1 - beta2^t) g / (sqrt(v) + eps) (TF1 Adam with m = g).
    query: (x, y) whose loss and metric are recorded before and after every step.

    Returns (parameters [T, ...] after the steps, {'loss', 'metric'} [steps+1, T] on the query set
    or None, second moments [T, ...] after the steps).
    """
    index = self.minibatches(tf.shape(x)[0], tf.shape(x)[1], steps, batch, key)
    shots = support_shots(y)
    dtype = task_params[0].dtype
    step_size = tf.cast(lr, dtype) if tf.is_tensor(lr) else tf.constant(lr, dtype)  # exact in float64
    curves = {k: tf.TensorArray(dtype, size=steps + 1) for k in ('loss', 'metric')}

    def record(curves, t, fast):
      if query is None:
        return curves
      out = self.predict(fast, x, query[0])
      return {'loss': curves['loss'].write(t, self.loss_fn(query[1], out, shots)),
              'metric': curves['metric'].write(t, tf.cast(self.metric_fn(query[1], out), dtype))}

    start = tf.cast(self.state_variables[-1], dtype)

    def body(t, fast, moments, curves):
      # A graph loop, not unrolled: 50 evaluation steps unrolled take minutes to compile.
      curves = record(curves, t, fast)
      bx = tf.gather(x, index[:, t], batch_dims=1)
      by = tf.gather(y, index[:, t], batch_dims=1)
      with tf.GradientTape() as tape:
        tape.watch(fast)
        total = tf.reduce_sum(self.loss_fn(by, self.forward(fast, bx), shots))
      grads = tape.gradient(total, fast)
      count = start + tf.cast(t + 1, dtype)
      scale = step_size * tf.sqrt(1.0 - tf.pow(tf.constant(ADAM_BETA2, dtype), count))
      new_fast, new_moments = [], []
      for p, g, v, adapt in zip(fast, grads, moments, self.adapt_mask):
        if adapt:
          v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * tf.square(g)
          p = p - scale * g / (tf.sqrt(v) + ADAM_EPSILON)
        new_fast.append(p)
        new_moments.append(v)
      return t + 1, new_fast, new_moments, curves

    moments = [tf.broadcast_to(tf.convert_to_tensor(v)[None], tf.shape(p))
               for v, p in zip(self.state_variables, task_params)]
    _, fast, moments, curves = tf.while_loop(
        lambda t, *_: t < steps, body, (tf.constant(0), list(task_params), moments, curves))
    if query is None:
      return fast, None, moments
    curves = record(curves, steps, fast)
    return fast, {k: v.stack() for k, v in curves.items()}, moments

  def meta_gradient(self, episode, objective: str = 'maml', clip: bool = True,
                    first_order: bool | None = None, iteration=None):
    """(theta - mean_i phi_i aligned with self.variables, post loss, pre, post).

    pre/post: the query loss [T] at theta and at phi_i (for the logs; the update never uses them).
    """
    if objective != 'maml':
      raise ValueError(f'Reptile has no {objective!r} objective')
    del first_order  # Reptile is first order by construction
    support_x, support_y, query_x, query_y = episode[:4]
    theta = self.params()
    key = tf.stack([tf.constant(self.seed, tf.int64),
                    tf.cast(iteration if iteration is not None else 0, tf.int64)])
    tiled = self.tile(theta, tf.shape(support_x)[0])
    phi, _, moments = self.adam_adapt(tiled, support_x, support_y, steps=self.num_updates,
                                      lr=self.update_lr, batch=self.inner_batch, key=key)
    # The original adapts the T tasks one after another through one Adam: here they run side by
    # side from the same state, which then moves to their mean (v changes by ~0.1% a step).
    for v, m in zip(self.state_variables, moments):
      v.assign(tf.reduce_mean(m, 0))
    steps = tf.shape(support_x)[0] * self.num_updates  # the original's count: T tasks in turn
    self.state_variables[-1].assign_add(tf.cast(steps, tf.int64))
    grads = [t - tf.reduce_mean(p, 0) for t, p in zip(theta, phi)]
    shots = support_shots(support_y)
    pre, post = (self.loss_fn(query_y, self.forward(p, query_x), shots) for p in (tiled, phi))
    return (self.clip(grads) if clip else grads), tf.reduce_mean(post), pre, post

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """Fine-tunes with `steps` inner Adam steps on minibatches of eval_batch support examples.

    Returns fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric'} [steps+1, T];
    lr is Adam's step size.
    """
    if return_outputs:
      raise ValueError('Reptile evaluation records no outputs')
    key = tf.constant([self.seed, -1], tf.int64)  # fixed: the same draws for every evaluation

    def step(support_x, support_y, query_x, query_y, lr):
      tiled = self.tile(self.params(), tf.shape(support_x)[0])
      batch = tf.minimum(self.eval_batch, tf.shape(support_x)[1])  # at most the support set
      return self.adam_adapt(tiled, support_x, support_y, steps=steps, lr=lr, batch=batch,
                             key=key, query=(query_x, query_y))[1]

    return tf.function(step, jit_compile=jit_compile, reduce_retracing=True)


@config.Part
class ReptileOptions:
  """Reptile's inner minibatches (its paper's inner Adam on minibatches of the support set)."""
  inner_batch_size: int = option(10, 'Reptile: examples per inner minibatch at training.',
                                 flag=True)
  test_inner_batch_size: int = option(
      5, 'Reptile: examples per inner minibatch at meta-test (at most the support set).',
      flag=True, resumable=True)

  def check(self, bad: config.Bad) -> None:
    config.at_least(self, bad, 1, ('inner_batch_size', 'test_inner_batch_size'))
    if self.method == ReptileMethod.name and self.distribute != 'none':
      bad('distribute', "is not supported by Reptile (its inner Adam's state is one per run)")


@methods.register('reptile')
class ReptileMethod(methods.Method):
  report_groups = {'reptile': 'Reptile (Nichol et al. 2018)'}
  options = ReptileOptions

  def build(self, model: keras.Model) -> Reptile:
    cfg = self.cfg
    loss_fn, metric_fn = utils.loss_and_metric(cfg)
    return Reptile(model, loss_fn, metric_fn, **maml_options(cfg, model, cfg.num_updates),
                   inner_batch=cfg.inner_batch_size, eval_batch=cfg.test_inner_batch_size,
                   seed=cfg.seed)

  def make_optimizer(self) -> keras.optimizers.Optimizer:
    """SGD whose step size epsilon falls linearly from meta_lr to 0 over the meta-training."""
    cfg = self.cfg
    return keras.optimizers.SGD(keras.optimizers.schedules.PolynomialDecay(
        cfg.meta_lr, cfg.metatrain_iterations, end_learning_rate=0.0))

  def saved_variables(self, learner: Reptile) -> dict[str, list]:
    """Besides MAML's: the inner Adam's second moments and step count ('learner_state')."""
    return {**super().saved_variables(learner), 'learner_state': learner.state_variables}

  def make_predict_fn(self, learner: Reptile, steps: int):
    """fn(support_x, support_y, query_x, lr) -> [T, Q, N]: the softmax of the query outputs after
    `steps` inner Adam steps of size lr on minibatches of the support set, as its evaluation (whose
    step records no outputs)."""
    key = tf.constant([learner.seed, -1], tf.int64)  # the evaluation's fixed minibatch draws

    def predict(support_x, support_y, query_x, lr):
      tiled = learner.tile(learner.params(), tf.shape(support_x)[0])
      batch = tf.minimum(learner.eval_batch, tf.shape(support_x)[1])  # at most the support set
      phi = learner.adam_adapt(tiled, support_x, support_y, steps=steps, lr=lr, batch=batch,
                               key=key)[0]
      return tf.nn.softmax(learner.predict(phi, support_x, query_x), axis=-1)
    return tf.function(predict, reduce_retracing=True)

  @property
  def val_shots(self) -> int:
    """Reptile trains with more shots than it is tested with, so it validates at its smallest
    test K."""
    return min(self.cfg.eval_shots)

  def label(self) -> str:
    return 'Reptile'
