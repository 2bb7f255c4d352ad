"""MAML for reinforcement learning (paper §5.3, Fig. 5): policy gradients in the inner loop, TRPO outside.

The inner step is the supervised core's: `maml.MAML.adapt` on the REINFORCE loss
L_Ti(theta) = -sum_t log pi_theta(a_t|s_t) A_t / #steps, one SGD step of size alpha for every task at
once (theta tiled over a task axis), differentiable, so the meta-objective

    L(theta) = mean_i  -sum_t exp(log pi_theta'_i(a|s) - log pi_old(a|s)) A_t / #steps,
               theta'_i = theta - alpha grad L_Ti(theta)     (on the pre-update samples of task i)

on the post-update samples has the true second-order meta-gradient. TRPO (Schulman et al. 2015) takes
the outer step: conjugate gradient on the Hessian of the mean KL(pi_old' || pi_new') of the adapted
policies (exact Hessian-vector products by double back-propagation through the inner step), a step of
size sqrt(2 delta / s^T H s), and a backtracking line search that accepts only a step that lowers the
surrogate and keeps the KL under delta, else keeps theta. `fd_hvp_eps` switches the curvature products
to the original's: symmetric finite differences of grad KL with a step of fd_hvp_eps / ||theta||. The
original (cbfinn/maml_rl, rllab) and its settings are described in ../shared/reference/rl-protocol.md;
experiments.py holds the rows.

The sampled batches come from rl/sampling.py (T tasks, N trajectories of H steps each; MetaData holds
them as [T, N*H, ...]), the policy and its distribution from rl/policy.py.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from maml import MAML
from rl.policy import kl_divergence, log_prob


def reinforce_loss(y: tf.Tensor, out: tf.Tensor, shots=None) -> tf.Tensor:
  """The inner loss per task: -sum(log pi(a|s) * A * mask) / sum(mask). y [T, M, A+2] -> [T]."""
  del shots  # the supervised core passes K; unused here
  actions, adv, mask = y[..., :-2], y[..., -2], y[..., -1]
  return -tf.reduce_sum(log_prob(out, actions) * adv * mask, -1) / tf.reduce_sum(mask, -1)


def flatten(tensors) -> tf.Tensor:
  return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def unflatten(flat: tf.Tensor, like) -> list[tf.Tensor]:
  sizes = [int(np.prod(v.shape)) for v in like]
  return [tf.reshape(p, v.shape) for p, v in zip(tf.split(flat, sizes), like)]


def conjugate_gradient(matvec: Callable[[np.ndarray], np.ndarray], b: np.ndarray, iters: int = 10,
                       residual_tol: float = 1e-10) -> np.ndarray:
  """Approximately solves H x = b for symmetric positive definite H given as matvec (rllab's CG)."""
  x = np.zeros_like(b)
  r, p = b.copy(), b.copy()
  rr = r @ r
  for _ in range(iters):
    z = matvec(p)
    step = rr / (p @ z)
    x += step * p
    r -= step * z
    rr_new = r @ r
    if rr_new < residual_tol:
      break
    p = r + (rr_new / rr) * p
    rr = rr_new
  return x


class MetaData(NamedTuple):
  """What an outer TRPO step needs, as tensors of fixed shapes.

  support_x [T, N*H, O], support_y [T, N*H, A+2]: pre-update samples (unused when inner_steps = 0);
  query_x [T, N*H, O], query_y [T, N*H, A+2]: post-update samples with advantages and mask;
  old [T, N*H, 2A]: the outputs of the policy that sampled the query set (pi_old').
  """
  support_x: tf.Tensor
  support_y: tf.Tensor
  query_x: tf.Tensor
  query_y: tf.Tensor
  old: tf.Tensor


class MamlTrpo:
  """theta <- TRPO step on the post-update surrogate of MAML (inner_steps = 1), or on the policy's own
  surrogate (inner_steps = 0: the pretrained and oracle baselines).

  Args:
    model: the policy (policy_net); its variables are theta.
    inner_lr: alpha; inner_steps: 0 or more SGD steps on the REINFORCE loss of the support set.
    max_kl: delta; cg_iters, cg_damping: conjugate gradient; backtrack_ratio, max_backtracks: the
      line search.
    fd_hvp_eps: None for exact curvature products; a number for the original's finite differences
      (grad KL(theta + e v) - grad KL(theta - e v)) / 2e with e = fd_hvp_eps / ||theta||.
      cbfinn/maml_rl's ConjugateGradientOptimizer builds FiniteDifferenceHvp(num_slices), which
      binds num_slices = 1 to base_eps (default 1e-8): its step is 1 / ||theta||, so its products
      are secants of grad KL rather than derivatives.
  """

  OLD_POLICY_TOL = 1e-4  # |new - old| allowed at theta, relative to 1 + max |old| (float32 rounding)

  def __init__(self, model: keras.Model, *, inner_lr: float, inner_steps: int, max_kl: float = 0.01,
               cg_iters: int = 10, cg_damping: float = 1e-5, backtrack_ratio: float = 0.8,
               max_backtracks: int = 15, fd_hvp_eps: float | None = None):
    self.model = model
    self.learner = MAML(model, reinforce_loss, reinforce_loss, update_lr=inner_lr,
                        num_updates=inner_steps)
    self.inner_steps = inner_steps
    self.max_kl, self.cg_iters, self.cg_damping = max_kl, cg_iters, cg_damping
    self.backtrack_ratio, self.max_backtracks = backtrack_ratio, max_backtracks
    self.fd_hvp_eps = fd_hvp_eps
    self.variables = model.trainable_variables
    self.dtype = self.variables[0].dtype
    self._loss_grad = tf.function(self._loss_grad_fn)
    self._loss_kl = tf.function(self._loss_kl_fn)
    self._hvp = tf.function(self._hvp_fn)
    self._kl_grad = tf.function(self._kl_grad_fn)
    self.forward = tf.function(self.learner.forward, reduce_retracing=True)
    # The trainer adapts once per iteration outside any tf.function: compiled, its vectorized_map
    # is traced once per run instead of at every call (~0.35 s per HalfCheetah iteration).
    self.adapted_compiled = tf.function(self.adapted)
    self.sgd_step = tf.function(self._sgd_step_fn, reduce_retracing=True)

  def adapted(self, params, support_x, support_y) -> list[tf.Tensor]:
    """theta'_i for every task: [T, ...] per tensor (theta tiled if inner_steps = 0)."""
    tiled = self.learner.tile(params, tf.shape(support_x)[0])
    if self.inner_steps == 0:
      return tiled
    return self.learner.adapt(tiled, support_x, support_y, steps=self.inner_steps,
                              lr=self.learner.update_lr, first_order=False)[0]

  def _sgd_step_fn(self, params, support_x, support_y, lr):
    """One plain policy-gradient step of every task's params [T, ...] (Fig. 5's test-time step).

    Compiled, with lr a scalar tensor: one trace serves every step size instead of a new trace of
    vectorized_map at each eager call.
    """
    return self.learner.adapt(params, support_x, support_y, steps=1, lr=lr, first_order=True)[0]

  def outputs(self, params, data: MetaData) -> tf.Tensor:
    """The adapted policy's outputs on the query set: [T, N*H, 2A]."""
    return self.learner.forward(self.adapted(params, data.support_x, data.support_y), data.query_x)

  @staticmethod
  def objectives(new: tf.Tensor, data: MetaData) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean over tasks of -sum(ratio * A * mask)/sum(mask), mean KL(old || new) over valid steps)
    of the query outputs `new` [T, N*H, 2A]."""
    actions, adv, mask = data.query_y[..., :-2], data.query_y[..., -2], data.query_y[..., -1]
    steps = tf.reduce_sum(mask, -1)
    ratio = tf.exp(log_prob(new, actions) - log_prob(data.old, actions))
    surrogate = -tf.reduce_sum(ratio * adv * mask, -1) / steps
    kl = tf.reduce_sum(kl_divergence(data.old, new) * mask, -1) / steps
    return tf.reduce_mean(surrogate), tf.reduce_mean(kl)

  def surrogate_and_kl(self, params, data: MetaData) -> tuple[tf.Tensor, tf.Tensor]:
    """`objectives` of the policy adapted from params."""
    return self.objectives(self.outputs(params, data), data)

  def _params(self):
    return [tf.convert_to_tensor(v) for v in self.variables]

  def _loss_grad_fn(self, data):
    """(surrogate, its gradient, max |new - old|): the last checks that data.old is this theta's."""
    params = self._params()
    with tf.GradientTape() as tape:
      tape.watch(params)
      new = self.outputs(params, data)
      loss, _ = self.objectives(new, data)
    # Only the sampled steps: after every trajectory of a batch has ended, rollouts leaves the rest
    # of the horizon at zero (obs and outputs), where the policy's outputs are not zero.
    valid = data.query_y[..., -1:] > 0
    return loss, flatten(tape.gradient(loss, params)), tf.reduce_max(
        tf.where(valid, tf.abs(new - data.old), 0.0))

  def _loss_kl_fn(self, flat_params, data):
    return self.surrogate_and_kl(unflatten(flat_params, self.variables), data)

  def _hvp_fn(self, data, vector):
    """(Hessian of the mean KL at theta) @ vector + damping * vector.

    At theta the adapted policy is the one that sampled the query set (new = old), where the KL's
    gradient with respect to the outputs vanishes, so its Hessian is exactly the Gauss-Newton matrix
    J^T H_out J (J = d outputs / d theta through the inner step, H_out the KL's Hessian in output
    space): one forward-mode pass gives J v, an output-space product H_out (J v), and one backward
    pass J^T H_out J v; 1.5x faster than back-propagating twice through the inner step
    (HalfCheetah, 2-core CPU). `step` checks that new = old.
    """
    params = self._params()
    with tf.GradientTape() as tape:
      tape.watch(params)
      with tf.autodiff.ForwardAccumulator(params, unflatten(vector, self.variables)) as acc:
        new = self.outputs(params, data)
    fixed = tf.stop_gradient(new)
    with tf.autodiff.ForwardAccumulator(fixed, acc.jvp(new)) as output_acc:
      with tf.GradientTape() as output_tape:
        output_tape.watch(fixed)
        kl = self.objectives(fixed, data)[1]
      grad_kl = output_tape.gradient(kl, fixed)
    h_jv = tf.stop_gradient(output_acc.jvp(grad_kl))
    return flatten(tape.gradient(new, params, output_gradients=h_jv)) + self.cg_damping * vector

  def _kl_grad_fn(self, flat_params, data):
    params = unflatten(flat_params, self.variables)
    with tf.GradientTape() as tape:
      tape.watch(params)
      kl = self.surrogate_and_kl(params, data)[1]
    return flatten(tape.gradient(kl, params))

  def hvp(self, data: MetaData, vector: np.ndarray) -> np.ndarray:
    """The curvature product of CG: exact (`_hvp_fn`) or the original's finite differences."""
    if self.fd_hvp_eps is None:
      return self._hvp(data, tf.constant(vector, self.dtype)).numpy().astype(np.float64)
    theta = flatten(self._params()).numpy().astype(np.float64)
    eps = self.fd_hvp_eps / (np.linalg.norm(theta) + 1e-8)
    plus, minus = (self._kl_grad(tf.constant(theta + sign * eps * vector, self.dtype), data).numpy()
                   .astype(np.float64) for sign in (1, -1))
    return (plus - minus) / (2 * eps) + self.cg_damping * vector

  def step(self, data: MetaData) -> dict:
    """One TRPO update of theta. Returns what happened (losses, KL, whether a step was taken)."""
    loss_before, grad, gap = (x.numpy().astype(np.float64) for x in self._loss_grad(data))
    scale = 1.0 + float(tf.reduce_max(tf.abs(data.old)))
    if gap > self.OLD_POLICY_TOL * scale:  # NaN passes: the non-finite gradient below stops it
      raise ValueError(f'data.old differs from the outputs of the current theta by {gap:.3g}: TRPO '
                       'needs the query set sampled by the policy adapted from this theta (its '
                       'curvature product is exact there only)')
    info = {'loss_before': float(loss_before), 'loss_after': float(loss_before), 'kl': 0.0,
            'accepted': False, 'backtracks': 0, 'reason': ''}
    if not np.all(np.isfinite(grad)):
      info['reason'] = 'non-finite gradient'
      return info
    direction = conjugate_gradient(lambda v: self.hvp(data, v), grad, self.cg_iters)
    curvature = float(direction @ self.hvp(data, direction))
    if not (math.isfinite(curvature) and curvature > 0):  # rllab issue #24: NaN or negative s^T H s
      info['reason'] = f'curvature s^T H s = {curvature}'
      return info
    step_size = math.sqrt(2 * self.max_kl / curvature)
    theta = flatten(self._params()).numpy().astype(np.float64)
    for k in range(self.max_backtracks):
      candidate = theta - self.backtrack_ratio ** k * step_size * direction
      loss, kl = (float(x) for x in self._loss_kl(tf.constant(candidate, self.dtype), data))
      if math.isfinite(loss) and loss < loss_before and kl <= self.max_kl:
        self.assign(candidate)
        info.update(loss_after=loss, kl=kl, accepted=True, backtracks=k)
        return info
    info['reason'] = 'line search found no step that lowers the loss within the KL bound'
    self.assign(theta)  # unchanged; written back so the variables hold exactly theta
    return info

  def assign(self, flat: np.ndarray) -> None:
    for v, value in zip(self.variables, unflatten(tf.constant(flat, self.dtype), self.variables)):
      v.assign(value)
