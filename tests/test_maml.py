"""The MAML core against closed forms, finite differences and an independent per-task loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from maml import MAML
import models
import utils


def linear_model():
  """y = w x with one weight, float64."""
  inputs = keras.Input((1,), dtype='float64')
  out = keras.layers.Dense(1, use_bias=False, dtype='float64',
                           kernel_initializer=keras.initializers.Constant(0.7))(inputs)
  return keras.Model(inputs, out)


def small_net(norm='None', activation='tanh', seed=0):
  """2-4-3-1 net in float64 (tanh: smooth, so finite differences are exact to O(eps^2))."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((2,), dtype='float64')
  h = keras.layers.Dense(4, dtype='float64')(inputs)
  if norm != 'None':
    h = models.norm_layer(norm, dtype='float64')(h)
  h = keras.layers.Activation(activation, dtype='float64')(h)
  h = keras.layers.Dense(3, activation=activation, dtype='float64')(h)
  out = keras.layers.Dense(1, dtype='float64')(h)
  return keras.Model(inputs, out)


def episode(num_tasks=3, k=4, q=5, d=2, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(tf.constant(rng.normal(size=s)) for s in
               [(num_tasks, k, d), (num_tasks, k, 1), (num_tasks, q, d), (num_tasks, q, 1)])


def learner(model, first_order=False, num_updates=1, lr=0.1, mask=None, clip=None,
            task_parallelism='vectorized_map'):
  batched = models.task_batched_forward(model) if task_parallelism == 'batched' else None
  return MAML(model, utils.mse, utils.mse, update_lr=lr, num_updates=num_updates,
              first_order=first_order, adapt_mask=mask, meta_grad_clip=clip,
              task_parallelism=task_parallelism, batched_forward=batched)


def unflatten(l, flat_theta):
  """theta given as one flat vector -> tensors shaped like the trainable variables."""
  shapes = [v.shape for v in l.model.trainable_variables]
  params, i = [], 0
  for s in shapes:
    n = int(np.prod(s))
    params.append(tf.reshape(flat_theta[i:i + n], s))
    i += n
  return params


@pytest.mark.parametrize('first_order', [False, True])
def test_linear_regression_closed_form(first_order):
  """One inner step on y = w x with MSE has a closed-form meta-gradient.

  L_a(w) = mean((w x_a - y_a)^2), w' = w - alpha * 2 mean(x_a (w x_a - y_a)),
  dw'/dw = 1 - 2 alpha mean(x_a^2); meta-gradient = mean_i L_b,i'(w'_i) * dw'_i/dw (first order: the
  factor is dropped).
  """
  x_a, y_a, x_b, y_b = (t.numpy() for t in episode(num_tasks=4, k=5, q=6, d=1, seed=3))
  alpha = 0.05
  l = learner(linear_model(), first_order=first_order, lr=alpha)
  w = float(l.model.trainable_variables[0].numpy().item())
  grads, loss, _, _ = l.meta_gradient(episode(num_tasks=4, k=5, q=6, d=1, seed=3))

  g_a = 2 * np.mean(x_a * (w * x_a - y_a), axis=(1, 2))
  w_fast = w - alpha * g_a
  dlb = 2 * np.mean(x_b * (w_fast[:, None, None] * x_b - y_b), axis=(1, 2))
  factor = 1.0 if first_order else 1 - 2 * alpha * np.mean(x_a ** 2, axis=(1, 2))
  expected = np.mean(dlb * factor)
  expected_loss = np.mean((w_fast[:, None, None] * x_b - y_b) ** 2)
  np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-10)
  np.testing.assert_allclose(grads[0].numpy().ravel(), [expected], rtol=1e-10)


@pytest.mark.parametrize('norm,num_updates', [('None', 1), ('None', 3), ('batch_norm', 2), ('layer_norm', 1)])
def test_second_order_meta_gradient_matches_finite_differences(norm, num_updates):
  model = small_net(norm)
  mask = models.inner_loop_mask(model)
  l = learner(model, num_updates=num_updates, lr=0.3, mask=mask)
  ep = episode()
  grads = l.meta_gradient(ep)[0]
  flat_grad = np.concatenate([g.numpy().ravel() for g in grads])
  theta = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
  rng = np.random.default_rng(1)
  eps = 1e-6
  for _ in range(3):
    v = rng.normal(size=theta.shape)
    plus = l.meta_objective(ep, unflatten(l, tf.constant(theta + eps * v)))[0]
    minus = l.meta_objective(ep, unflatten(l, tf.constant(theta - eps * v)))[0]
    fd = (float(plus) - float(minus)) / (2 * eps)
    np.testing.assert_allclose(flat_grad @ v, fd, rtol=1e-6, atol=1e-9)


def reference_meta_gradient(model, ep, lr, steps, first_order, mask):
  """Independent MAML: a Python loop over tasks, one stateless_call per task, no vectorization."""
  state = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
  f = lambda p, x: model.stateless_call(p, state, x, training=True)[0]
  mse = lambda y, out: tf.reduce_mean(tf.square(out - y))  # independent of utils.mse
  with tf.GradientTape() as outer:
    theta = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    outer.watch(theta)
    losses = []
    for t in range(ep[0].shape[0]):
      fast = theta
      for _ in range(steps):
        with tf.GradientTape() as inner:
          inner.watch(fast)
          loss = mse(ep[1][t], f(fast, ep[0][t]))
        g = inner.gradient(loss, fast)
        if first_order:
          g = [tf.stop_gradient(x) for x in g]
        fast = [p - lr * gi if m else p for p, gi, m in zip(fast, g, mask)]
      losses.append(mse(ep[3][t], f(fast, ep[2][t])))
    meta = tf.add_n(losses) / len(losses)
  return [g.numpy() for g in outer.gradient(meta, theta)]


@pytest.mark.parametrize('first_order', [False, True])
@pytest.mark.parametrize('task_parallelism', MAML.TASK_PARALLELISM)
def test_tiled_tasks_equal_an_independent_loop_over_tasks(first_order, task_parallelism):
  """Tiling theta over tasks (every way of mapping the forward pass over them) gives the per-task
  loop's meta-gradient, with batch norm (each task normalized with its own statistics) and the norm
  parameters masked out."""
  model = small_net('batch_norm')
  mask = models.inner_loop_mask(model)
  assert mask.count(False) == 1  # the BN beta
  ep = episode(num_tasks=4)
  got = learner(model, first_order=first_order, num_updates=2, lr=0.2, mask=mask,
                task_parallelism=task_parallelism).meta_gradient(ep)[0]
  want = reference_meta_gradient(model, ep, 0.2, 2, first_order, mask)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12)


def test_first_order_is_the_gradient_at_the_adapted_parameters_and_differs_from_second_order():
  """FOMAML: grad = mean_i grad L_b,i evaluated at theta'_i, with theta'_i held fixed."""
  model = small_net()
  ep = episode()
  fo = learner(model, first_order=True, num_updates=2, lr=0.3)
  so = learner(model, first_order=False, num_updates=2, lr=0.3)
  g_fo = fo.meta_gradient(ep)[0]
  g_so = so.meta_gradient(ep)[0]
  fast, _ = fo.adapt(fo.tile(fo.params(), 3), ep[0], ep[1], steps=2, lr=0.3, first_order=True)
  fast = [tf.constant(p.numpy()) for p in fast]  # a constant: no path back to theta
  with tf.GradientTape() as tape:
    tape.watch(fast)
    loss = tf.reduce_mean(utils.mse(ep[3], fo.forward(fast, ep[2]), None))
  per_task = tape.gradient(loss, fast)  # = grad of mean_i L_b,i; summing over tasks gives the mean
  for g, p in zip(g_fo, per_task):
    np.testing.assert_allclose(g.numpy(), tf.reduce_sum(p, 0).numpy(), rtol=1e-10, atol=1e-12)
  diff = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(g_fo, g_so))
  assert diff > 1e-4


def test_adaptation_never_writes_the_model_variables():
  model = small_net('batch_norm')
  before = [v.numpy().copy() for v in model.variables]
  l = learner(model, num_updates=3, lr=0.5, mask=models.inner_loop_mask(model))
  ep = episode()
  l.meta_gradient(ep)
  l.make_eval_step(steps=3)(*ep, tf.constant(0.5, tf.float64))
  for b, v in zip(before, model.variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_masked_parameters_stay_fixed_in_the_inner_loop_but_get_meta_gradients():
  model = small_net('batch_norm')
  mask = models.inner_loop_mask(model)
  l = learner(model, num_updates=2, lr=0.5, mask=mask)
  ep = episode()
  theta = l.tile(l.params(), 3)
  fast, _ = l.adapt(theta, ep[0], ep[1], steps=2, lr=0.5, first_order=False)
  for p, f, m in zip(theta, fast, mask):
    assert m or np.array_equal(p.numpy(), f.numpy())
    assert not m or not np.array_equal(p.numpy(), f.numpy())
  grads = l.meta_gradient(ep)[0]
  beta = [g for g, m in zip(grads, mask) if not m][0]
  assert float(tf.reduce_max(tf.abs(beta))) > 0


def test_meta_gradient_clipping():
  model = small_net()
  ep = episode()
  raw = learner(model, lr=0.3).meta_gradient(ep)[0]
  clip = 0.5 * max(float(tf.reduce_max(tf.abs(g))) for g in raw)
  clipped = learner(model, lr=0.3, clip=clip).meta_gradient(ep)[0]
  for r, c in zip(raw, clipped):
    np.testing.assert_allclose(c.numpy(), np.clip(r.numpy(), -clip, clip))


def test_train_step_applies_adam_to_the_meta_gradient():
  model = small_net()
  l = learner(model, num_updates=1, lr=0.3)
  ep = episode()
  grads = l.meta_gradient(ep)[0]
  theta = [v.numpy().copy() for v in model.trainable_variables]
  opt = keras.optimizers.Adam(1e-2)
  opt.build(model.trainable_variables)
  l.make_train_step(opt)(*ep)
  # Adam's first step moves every entry by lr * g / (|g| + eps') ~ lr * sign(g).
  for t, g, v in zip(theta, grads, model.trainable_variables):
    moved = v.numpy() - t
    big = np.abs(g.numpy()) > 1e-4
    np.testing.assert_allclose(moved[big], -1e-2 * np.sign(g.numpy()[big]), rtol=1e-3)


@pytest.mark.parametrize('objective,jit', [('maml', False), ('maml', True), ('pretrain', False)])
def test_looped_train_step_equals_single_steps(objective, jit):
  """steps_per_call=S runs the same S Adam meta-updates as S calls of the single step."""
  episodes = [episode(seed=s) for s in range(3)]
  results = []
  for steps_per_call in (1, 3):
    model = small_net(seed=1)
    l = learner(model, num_updates=2, lr=0.3)
    opt = keras.optimizers.Adam(1e-2)
    opt.build(model.trainable_variables)
    step = l.make_train_step(opt, objective, jit, steps_per_call)
    if steps_per_call == 1:
      losses = [float(step(*ep)['post_loss']) for ep in episodes]
    else:
      losses = list(step(*[tf.stack(f) for f in zip(*episodes)])['post_loss'].numpy())
    results.append((losses, [v.numpy() for v in model.trainable_variables]))
  (single_losses, single_theta), (loop_losses, loop_theta) = results
  np.testing.assert_allclose(loop_losses, single_losses, rtol=1e-12)
  assert len(set(np.round(single_losses, 8))) == 3  # three different episodes and updates
  for a, b in zip(loop_theta, single_theta):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('task_chunk,task_parallelism,in_flight', [
    (1, 'vectorized_map', 1), (2, 'batched', 1), (2, 'vectorized_map', 1), (1, 'batched', 2),
    (1, 'vectorized_map', 4)])
def test_task_chunks_give_the_same_update(task_chunk, task_parallelism, in_flight):
  """task_chunk=C (meta-gradients of C tasks at a time, averaged) is the update of all T at once:
  batch norm's statistics are per task, the clip applies to the mean, MSL weights are linear; and
  so is it with several chunks in flight."""
  ep = episode(num_tasks=4, seed=3)
  results = []
  for chunk in (0, task_chunk):
    model = small_net(norm='batch_norm', seed=2)
    l = MAML(model, utils.mse, utils.mse, update_lr=0.3, num_updates=2, meta_grad_clip=0.05,
             multi_step_loss_epochs=3, epoch_iterations=1, task_parallelism=task_parallelism,
             batched_forward=models.task_batched_forward(model) if task_parallelism == 'batched'
             else None, task_chunk=chunk, chunks_in_flight=in_flight if chunk else 1)
    opt = keras.optimizers.Adam(1e-2)
    opt.build(l.variables)
    step = l.make_train_step(opt)
    losses = [step(*ep), step(*ep)]  # the second with other multi-step loss weights
    results.append(([{k: float(v) for k, v in d.items()} for d in losses],
                    [v.numpy() for v in l.variables]))
  (full_losses, full_theta), (chunked_losses, chunked_theta) = results
  for a, b in zip(full_losses, chunked_losses):
    assert a.keys() == b.keys() and all(np.isclose(a[k], b[k], rtol=1e-12) for k in a)
  for a, b in zip(full_theta, chunked_theta):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)
  assert not np.allclose(full_theta[0], small_net(norm='batch_norm', seed=2).get_weights()[0])


def test_eval_step_reports_every_step_and_step_zero_is_theta():
  model = small_net()
  l = learner(model, lr=0.3)
  ep = episode()
  out = l.make_eval_step(steps=4)(*ep, tf.constant(0.3, tf.float64))
  assert out['loss'].shape == (5, 3) and out['metric'].shape == (5, 3)
  _, _, post = l.pretrain_objective((ep[2], ep[3]), l.params())  # theta's loss on the query set
  np.testing.assert_allclose(out['loss'][0].numpy(), post.numpy())
  # One eval step equals the training inner step: same post-update query loss.
  np.testing.assert_allclose(out['loss'][1].numpy(), l.meta_objective(ep, l.params())[2].numpy())
