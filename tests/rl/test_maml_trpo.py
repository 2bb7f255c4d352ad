"""MAML with TRPO (rl/maml_trpo.py) against finite differences and explicit matrices."""

import numpy as np
import pytest
import tensorflow as tf

import rl.maml_trpo
import rl.policy


def test_conjugate_gradient_solves_a_small_spd_system():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(6, 6))
  spd = a @ a.T + 6 * np.eye(6)
  b = rng.normal(size=6)
  np.testing.assert_allclose(rl.maml_trpo.conjugate_gradient(lambda v: spd @ v, b, iters=20),
                             np.linalg.solve(spd, b), rtol=1e-8)


def tiny_problem(inner_steps=1, seed=0, dtype='float64', old_noise=0.0):
  """A 2-obs, 1-action policy with one hidden layer of 3, two tasks of 6 steps each; the query set
  was sampled by the policy adapted from theta (old = its outputs, + old_noise * N(0, 1))."""
  tf.keras.utils.set_random_seed(seed)
  policy = rl.policy.policy_net(2, 1, hidden=(3,), dtype=dtype)
  algo = rl.maml_trpo.MamlTrpo(policy, inner_lr=0.3, inner_steps=inner_steps, max_kl=0.01)
  rng = np.random.default_rng(seed)

  def xy():
    mask = np.ones((2, 6, 1))
    mask[1, 4:] = 0
    return (tf.constant(rng.normal(size=(2, 6, 2)), dtype),
            tf.constant(np.concatenate([rng.normal(size=(2, 6, 1)), rng.normal(size=(2, 6, 1)), mask], -1),
                        dtype))

  (sx, sy), (qx, qy) = xy(), xy()
  params = [tf.convert_to_tensor(v) for v in policy.trainable_variables]
  fast = algo.adapted(params, sx, sy)
  old = algo.learner.forward(fast, qx) + tf.constant(old_noise * rng.normal(size=(2, 6, 2)), dtype)
  return algo, rl.maml_trpo.MetaData(sx, sy, qx, qy, old)


def flat_theta(algo):
  return rl.maml_trpo.flatten([tf.convert_to_tensor(v) for v in algo.variables]).numpy()


def test_meta_gradient_of_the_surrogate_matches_finite_differences():
  """The surrogate includes the inner policy-gradient step: its gradient is the second-order one."""
  algo, data = tiny_problem()
  _, grad, _ = algo._loss_grad(data)
  theta = flat_theta(algo)
  rng = np.random.default_rng(5)
  loss = lambda t: float(algo._loss_kl(tf.constant(t), data)[0])
  for _ in range(3):
    d = rng.normal(size=theta.shape)
    eps = 1e-6
    fd = (loss(theta + eps * d) - loss(theta - eps * d)) / (2 * eps)
    np.testing.assert_allclose(float(grad.numpy() @ d), fd, rtol=1e-6)
  # The first-order variant (gradient taken at theta' with the inner step held fixed) differs.
  first = algo.learner.adapt
  algo.learner.adapt = lambda *a, **k: first(*a, **{**k, 'first_order': True})
  _, grad_fo, _ = tf.function(algo._loss_grad_fn)(data)
  algo.learner.adapt = first
  assert np.abs(grad_fo.numpy() - grad.numpy()).max() > 1e-4


def kl_hessian(algo, data):
  """The mean KL's Hessian at theta by double back-propagation through the inner step: [P, P]."""
  theta = tf.constant(flat_theta(algo))
  with tf.GradientTape() as outer:
    outer.watch(theta)
    with tf.GradientTape() as inner:
      inner.watch(theta)
      kl = algo.surrogate_and_kl(rl.maml_trpo.unflatten(theta, algo.variables), data)[1]
    grad = inner.gradient(kl, theta)
  return outer.jacobian(grad, theta).numpy()


@pytest.mark.parametrize('inner_steps', [1, 0])
def test_curvature_vector_product_equals_the_explicit_kl_hessian(inner_steps):
  algo, data = tiny_problem(inner_steps)
  hessian = kl_hessian(algo, data)
  rng = np.random.default_rng(6)
  for _ in range(3):
    v = rng.normal(size=len(hessian))
    np.testing.assert_allclose(algo.hvp(data, v), hessian @ v + algo.cg_damping * v, rtol=1e-8,
                               atol=1e-12)


def test_finite_difference_curvature_product_is_the_originals():
  """fd_hvp_eps: (grad KL(theta + e v) - grad KL(theta - e v)) / 2e with e = fd_hvp_eps / ||theta||,
  the Hessian product for a small step, and a different, secant product for the original's 1."""
  algo, data = tiny_problem()
  hessian, theta = kl_hessian(algo, data), flat_theta(algo)
  v = np.random.default_rng(7).normal(size=theta.shape)
  algo.fd_hvp_eps = 1e-5
  np.testing.assert_allclose(algo.hvp(data, v), hessian @ v + algo.cg_damping * v, rtol=1e-5, atol=1e-9)
  algo.fd_hvp_eps = 1.0
  e = 1.0 / np.linalg.norm(theta)

  def kl_grad(t):
    t = tf.constant(t)
    with tf.GradientTape() as tape:
      tape.watch(t)
      kl = algo.surrogate_and_kl(rl.maml_trpo.unflatten(t, algo.variables), data)[1]
    return tape.gradient(kl, t).numpy()

  expected = (kl_grad(theta + e * v) - kl_grad(theta - e * v)) / (2 * e) + algo.cg_damping * v
  np.testing.assert_allclose(algo.hvp(data, v), expected, rtol=1e-5)
  assert not np.allclose(expected, hessian @ v + algo.cg_damping * v, rtol=1e-2)
  np.testing.assert_array_equal(flat_theta(algo), theta)  # theta itself never moves


def test_step_refuses_samples_of_another_policy():
  """The curvature product is the Gauss-Newton one, the Hessian only where old = new at theta."""
  algo, data = tiny_problem(old_noise=0.05)
  v = np.random.default_rng(6).normal(size=flat_theta(algo).shape)
  assert not np.allclose(algo.hvp(data, v), kl_hessian(algo, data) @ v + algo.cg_damping * v,
                         rtol=1e-3)
  theta = flat_theta(algo)
  with pytest.raises(ValueError, match='differs from the outputs of the current theta'):
    algo.step(data)
  np.testing.assert_array_equal(flat_theta(algo), theta)


def test_steps_after_every_trajectory_ended_are_not_checked_against_the_policy():
  """rollouts leaves the rest of the horizon at zero once all trajectories are done (an oracle near
  its goals): those masked steps are not samples, so their zero outputs must not stop the step."""
  _, data = tiny_problem()
  padded = rl.maml_trpo.MetaData(data.support_x, data.support_y, data.query_x, data.query_y,
                       tf.where(data.query_y[..., -1:] > 0, data.old, 0.0))
  assert not np.allclose(padded.old.numpy(), data.old.numpy())
  algo_a, _ = tiny_problem()
  algo_b, _ = tiny_problem()
  info_a, info_b = algo_a.step(padded), algo_b.step(data)
  assert info_a['accepted'] and info_a == info_b
  np.testing.assert_array_equal(flat_theta(algo_a), flat_theta(algo_b))


def test_trpo_step_lowers_the_surrogate_within_the_kl_bound():
  algo, data = tiny_problem()
  info = algo.step(data)
  assert info['accepted'], info
  assert info['loss_after'] < info['loss_before'] and 0 < info['kl'] <= algo.max_kl
  loss, kl = algo.surrogate_and_kl([tf.convert_to_tensor(v) for v in algo.variables], data)
  np.testing.assert_allclose([float(loss), float(kl)], [info['loss_after'], info['kl']], rtol=1e-9)


def test_line_search_rejects_every_step_and_restores_theta():
  algo, data = tiny_problem()
  theta = flat_theta(algo)
  loss_kl, tried = algo._loss_kl, []

  def kl_too_large(flat, data):  # every candidate violates the KL bound
    tried.append(flat.numpy())
    return loss_kl(flat, data)[0], tf.constant(2 * algo.max_kl, flat.dtype)

  algo._loss_kl = kl_too_large
  info = algo.step(data)
  assert not info['accepted'] and 'line search' in info['reason']
  assert len(tried) == algo.max_backtracks
  steps = [np.linalg.norm(t - theta) for t in tried]  # shrinking by backtrack_ratio each time
  np.testing.assert_allclose(np.array(steps[1:]) / steps[:-1], algo.backtrack_ratio, rtol=1e-9)
  np.testing.assert_array_equal(flat_theta(algo), theta)


@pytest.mark.parametrize('curvature', [float('nan'), -1.0])
def test_nan_or_negative_curvature_takes_no_step(curvature):
  algo, data = tiny_problem()
  theta = flat_theta(algo)
  algo.hvp = lambda data, v: curvature * np.asarray(v)
  info = algo.step(data)
  assert not info['accepted'] and 'curvature' in info['reason']
  np.testing.assert_array_equal(flat_theta(algo), theta)


def test_inner_step_is_one_sgd_step_on_the_reinforce_loss():
  """The training inner step (alpha = 0.3) and the compiled test-time step (any lr, here 0.7)."""
  algo, data = tiny_problem()
  params = [tf.convert_to_tensor(v) for v in algo.variables]
  fast = algo.adapted(params, data.support_x, data.support_y)
  tested = algo.sgd_step(algo.learner.tile(params, 2), data.support_x, data.support_y,
                         tf.constant(0.7, algo.dtype))
  for t in range(2):
    with tf.GradientTape() as tape:
      tape.watch(params)
      out = algo.model.stateless_call(params, [], data.support_x[t])[0]
      loss = rl.maml_trpo.reinforce_loss(data.support_y[t][None], out[None])[0]
    grads = tape.gradient(loss, params)
    for f, s, p, g in zip(fast, tested, params, grads):
      np.testing.assert_allclose(f[t].numpy(), (p - 0.3 * g).numpy(), rtol=1e-10, atol=1e-12)
      np.testing.assert_allclose(s[t].numpy(), (p - 0.7 * g).numpy(), rtol=1e-10, atol=1e-12)
