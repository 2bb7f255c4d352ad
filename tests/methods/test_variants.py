"""MAML's variants (Meta-SGD, MAML++'s tricks, non-transductive evaluation) and Reptile, against MAML
itself, finite differences, hand computations and independent re-implementations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import experiments
from maml import MAML, multi_step_loss_weights
import models
from methods.reptile import Reptile
import trainer
import utils
from tests.test_maml import episode, small_net


def variant(model, **kwargs):
  kwargs.setdefault('update_lr', 0.3)
  kwargs.setdefault('num_updates', 2)
  return MAML(model, utils.mse, utils.mse, adapt_mask=models.inner_loop_mask(model), **kwargs)


def flat(tensors):
  return np.concatenate([np.ravel(t) for t in tensors])


def unflatten_like(variables, vector):
  out, i = [], 0
  for v in variables:
    n = int(np.prod(v.shape))
    out.append(tf.reshape(vector[i:i + n], v.shape))
    i += n
  return out


@pytest.mark.parametrize('kwargs', [
    dict(inner_lr='per_parameter'),
    dict(inner_lr='per_layer_per_step'),
    dict(inner_lr='per_layer_per_step', per_step=True),
    dict(per_step=True, multi_step_loss_epochs=3),
])
def test_meta_gradient_of_every_variable_matches_finite_differences(kwargs):
  """Second order through learned step sizes, per-step copies and the multi-step loss."""
  model = small_net('batch_norm')
  per_step = kwargs.pop('per_step', False)
  l = variant(model, per_step_mask=models.norm_mask(model) if per_step else None, **kwargs)
  rng = np.random.default_rng(0)
  for v in l.extra_variables:  # away from the initial values, so every term matters
    v.assign(v.numpy() * (1 + 0.3 * rng.uniform(-1, 1, v.shape)) + 0.05 * rng.normal(size=v.shape))
  ep = episode()
  iteration = tf.constant(1, tf.int64)
  with tf.GradientTape() as tape:
    params = l.params()
    tape.watch(params)
    loss = l.meta_objective(ep, params, iteration=iteration)[0]
  grad = flat([g.numpy() for g in tape.gradient(loss, params)])
  point = flat([p.numpy() for p in params])
  eps = 1e-6
  for _ in range(3):
    d = rng.normal(size=point.shape)
    f = [float(l.meta_objective(ep, unflatten_like(l.variables, tf.constant(point + s * eps * d)),
                                iteration=iteration)[0]) for s in (1, -1)]
    np.testing.assert_allclose(grad @ d, (f[0] - f[1]) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_meta_sgd_with_every_step_size_alpha_is_maml():
  """At alpha everywhere Meta-SGD's loss and theta-gradient are MAML's; its step sizes get a
  gradient too (here: the inner product of the inner and outer gradients, by the chain rule)."""
  model = small_net()
  ep = episode()
  maml = variant(model, num_updates=1)
  meta_sgd = variant(model, num_updates=1, inner_lr='per_parameter')
  g_maml, loss_maml, _, _ = maml.meta_gradient(ep)
  g_sgd, loss_sgd, _, _ = meta_sgd.meta_gradient(ep)
  n = len(model.trainable_variables)
  assert len(g_sgd) == 2 * n
  np.testing.assert_allclose(float(loss_sgd), float(loss_maml), rtol=1e-14)
  for a, b in zip(g_sgd[:n], g_maml):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-15)
  # d L(theta - a * g_in) / d a = -g_in * g_out elementwise, summed over tasks / T.
  theta = maml.tile(maml.params(), 3)
  with tf.GradientTape() as tape:
    tape.watch(theta)
    inner = tf.reduce_sum(utils.mse(ep[1], maml.forward(theta, ep[0])))
  g_in = tape.gradient(inner, theta)
  fast = [p - 0.3 * g for p, g in zip(theta, g_in)]
  with tf.GradientTape() as tape:
    tape.watch(fast)
    outer = tf.reduce_mean(utils.mse(ep[3], maml.forward(fast, ep[2])))
  g_out = tape.gradient(outer, fast)
  for got, a, b in zip(g_sgd[n:], g_in, g_out):
    np.testing.assert_allclose(got.numpy(), -tf.reduce_sum(a * b, 0).numpy(), rtol=1e-10, atol=1e-14)


def test_maml_plus_plus_with_its_tricks_at_their_initial_values_is_maml():
  """LSLR at alpha, per-step copies equal to theta's and the multi-step loss after its last epoch
  give MAML's meta-loss; the copies share MAML's normalization gradient among them."""
  model = small_net('batch_norm')
  ep = episode()
  maml = variant(model)
  plus = variant(model, inner_lr='per_layer_per_step', per_step_mask=models.norm_mask(model),
                 multi_step_loss_epochs=2, epoch_iterations=5)
  g_maml, loss_maml, _, _ = maml.meta_gradient(ep)
  g_plus, loss_plus, _, _ = plus.meta_gradient(ep, iteration=tf.constant(10, tf.int64))
  np.testing.assert_allclose(float(loss_plus), float(loss_maml), rtol=1e-14)
  n = len(model.trainable_variables)
  norm = models.norm_mask(model)
  copies = g_plus[n + len(plus._lr_index):]
  for i in range(n):
    got = g_plus[i].numpy()
    if norm[i]:
      got = got + sum(c.numpy() for c, (_, j) in zip(copies, plus._norm_index) if j == i)
    np.testing.assert_allclose(got, g_maml[i].numpy(), rtol=1e-10, atol=1e-14)
  # During the multi-step loss epochs the loss is the weighted sum over the steps.
  weights = multi_step_loss_weights(0, 2, 2, tf.float64).numpy()
  path, _ = maml.adapt(maml.tile(maml.params(), 3), ep[0], ep[1], steps=2, lr=0.3,
                       first_order=False, trajectory=True)
  per_step = [float(tf.reduce_mean(utils.mse(ep[3], maml.forward(p, ep[2])))) for p in path[1:]]
  np.testing.assert_allclose(float(plus.meta_gradient(ep, iteration=tf.constant(0, tf.int64))[1]),
                             weights @ per_step, rtol=1e-12)


def maml_plus_plus_weights(epoch, steps, epochs):
  """HowToTrainYourMAMLPytorch's get_per_step_loss_importance_vector, transcribed."""
  w = np.ones(steps) * (1.0 / steps)
  decay = 1.0 / steps / epochs
  floor = 0.03 / steps
  for i in range(steps - 1):
    w[i] = np.maximum(w[i] - epoch * decay, floor)
  w[-1] = np.minimum(w[-1] + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
  return w


@pytest.mark.parametrize('epoch', [0, 1, 4, 9, 14, 15, 40])
def test_multi_step_loss_weights_follow_maml_plus_plus(epoch):
  got = multi_step_loss_weights(epoch, 5, 15, tf.float64).numpy()
  want = maml_plus_plus_weights(epoch, 5, 15) if epoch < 15 else np.eye(5)[-1]
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_non_transductive_prediction_sees_only_the_support_set_and_the_query():
  model = small_net('batch_norm')
  ep = episode(q=4)
  l = variant(model, transductive=False)
  theta = l.tile(l.params(), 3)
  out = l.predict(theta, ep[0], ep[2]).numpy()
  for t in range(3):
    for q in range(4):
      batch = tf.concat([ep[0][t], ep[2][t, q:q + 1]], 0)
      single = model(batch, training=True)[-1].numpy()
      np.testing.assert_allclose(out[t, q], single, rtol=1e-12)
  transductive = variant(model).predict(theta, ep[0], ep[2]).numpy()
  assert np.abs(out - transductive).max() > 1e-6  # batch norm: the statistics differ


def test_learned_step_sizes_and_copies_are_checkpointed_and_used_at_eval(tmp_path):
  cfg = experiments.get('sinusoid_maml').replace(
      name='t', norm='layer_norm', inner_lr='per_layer_per_step', per_step_norm=True,
      metatrain_iterations=4, num_updates=2, test_num_updates=3, report_step=3, eval_shots=(5,),
      num_test_tasks=8,
      print_every=2, checkpoint_every=2, steps_per_call=1)
  trainer.train(cfg, str(tmp_path), log_summaries=False)
  setup, _ = trainer.restore_for_eval(cfg, str(tmp_path))
  trained = trainer.build(cfg)  # a fresh build: step sizes at alpha
  assert len(setup.learner.extra_variables) == len(trained.learner.extra_variables) > 0
  moved = [np.abs(a.numpy() - b.numpy()).max()
           for a, b in zip(setup.learner.extra_variables, trained.learner.extra_variables)]
  assert min(moved) > 0  # restored, and trained (Adam moves every entry)
  result = trainer.evaluate(cfg, str(tmp_path), split='val')[0]
  assert result['update_lr'] == 'learned' and len(result['mean']) == 4


def test_derivative_order_annealing_trains_first_order_first(tmp_path):
  """first_order_iterations = all of them gives exactly first-order MAML's weights."""
  base = experiments.get('sinusoid_maml').replace(name='t', metatrain_iterations=3, print_every=1,
                                                  checkpoint_every=3, steps_per_call=2)
  weights = []
  for i, cfg in enumerate((base.replace(first_order_iterations=3), base.replace(stop_grad=True),
                           base)):
    trainer.train(cfg, str(tmp_path / str(i)), log_summaries=False)
    setup, _ = trainer.restore_for_eval(cfg, str(tmp_path / str(i)))
    weights.append(flat([v.numpy() for v in setup.model.trainable_variables]))
  np.testing.assert_array_equal(weights[0], weights[1])
  assert np.abs(weights[0] - weights[2]).max() > 0
  assert trainer._next_event(base.replace(first_order_iterations=3, summary_every=100,
                                          print_every=100, checkpoint_every=100), 1) == 3


def test_cosine_annealing_and_reptile_schedules():
  cfg = experiments.get('omniglot_5way_1shot_maml_plus_plus')
  schedule = trainer.make_optimizer(cfg).learning_rate
  opt = trainer.make_optimizer(cfg)
  assert isinstance(opt, keras.optimizers.Adam)
  lr = opt._learning_rate
  np.testing.assert_allclose(float(lr(0)), cfg.meta_lr, rtol=1e-6)
  np.testing.assert_allclose(float(lr(cfg.total_iterations)), cfg.min_meta_lr, rtol=1e-4)
  del schedule
  cfg = experiments.get('omniglot_5way_reptile')
  opt = trainer.make_optimizer(cfg)
  assert isinstance(opt, keras.optimizers.SGD)
  for it in (0, 25_000, 100_000):
    np.testing.assert_allclose(float(opt._learning_rate(it)), cfg.meta_lr * (1 - it / 100_000),
                               atol=1e-7)


# --- Reptile -------------------------------------------------------------------------------------

def reptile(model, **kwargs):
  return Reptile(model, utils.mse, utils.mse, update_lr=kwargs.pop('lr', 0.05),
                 num_updates=kwargs.pop('steps', 3), inner_batch=kwargs.pop('batch', 2),
                 eval_batch=2, seed=0, **kwargs)


def numpy_adam_phi(model, theta, x, y, index, lr, steps):
  """One task's phi: `steps` TF1-Adam (beta1 = 0) steps on the minibatches x[index[t]]."""
  params = [tf.constant(p) for p in theta]
  v = [np.zeros_like(p) for p in theta]
  for t in range(steps):
    with tf.GradientTape() as tape:
      tape.watch(params)
      out = model.stateless_call(params, [], tf.gather(x, index[t]), training=True)[0]
      loss = tf.reduce_mean(tf.square(out - tf.gather(y, index[t])))
    g = [a.numpy() for a in tape.gradient(loss, params)]
    v = [0.999 * vi + 0.001 * gi ** 2 for vi, gi in zip(v, g)]
    scale = lr * np.sqrt(1 - 0.999 ** (t + 1))
    params = [tf.constant(p.numpy() - scale * gi / (np.sqrt(vi) + 1e-8))
              for p, gi, vi in zip(params, g, v)]
  return [p.numpy() for p in params]


def test_reptile_update_is_epsilon_times_phi_minus_theta():
  model = small_net()
  l = reptile(model)
  ep = episode(num_tasks=3, k=4)
  theta = [v.numpy().copy() for v in model.trainable_variables]
  iteration = 0
  key = tf.constant([0, iteration], tf.int64)
  index = l.minibatches(3, tf.constant(4), 3, 2, key).numpy()
  phis = [numpy_adam_phi(model, theta, ep[0][t], ep[1][t], index[t], 0.05, 3) for t in range(3)]
  eps = 0.25
  opt = keras.optimizers.SGD(eps)
  opt.build(l.variables)
  l.make_train_step(opt)(*ep)
  for i, (t0, v) in enumerate(zip(theta, model.trainable_variables)):
    mean_phi = np.mean([phi[i] for phi in phis], 0)
    np.testing.assert_allclose(v.numpy(), t0 + eps * (mean_phi - t0), rtol=1e-9, atol=1e-12)


def test_reptile_minibatches_are_epochs_of_shuffles():
  l = reptile(small_net())
  index = l.minibatches(4, tf.constant(6), 5, 4, tf.constant([3, 7], tf.int64)).numpy()
  assert index.shape == (4, 5, 4)
  for task in index.reshape(4, -1):  # 20 draws: three full permutations of 0..5, then 2 more
    for epoch in range(3):
      assert sorted(task[6 * epoch:6 * epoch + 6]) == list(range(6))
  again = l.minibatches(4, tf.constant(6), 5, 4, tf.constant([3, 7], tf.int64)).numpy()
  np.testing.assert_array_equal(index, again)  # stateless: a resumed run draws the same


def test_reptile_eval_fine_tunes_with_adam_and_records_every_step():
  model = small_net()
  l = reptile(model)
  ep = episode(num_tasks=2, k=2, q=3)
  out = l.make_eval_step(4)(*ep, tf.constant(0.05, tf.float64))
  assert out['metric'].shape == (5, 2)
  theta = [v.numpy() for v in model.trainable_variables]
  # The eval batch (2) is the whole support set: every step uses all of it.
  index = np.tile(np.arange(2), (4, 1))
  for t in range(2):
    phi = numpy_adam_phi(model, theta, ep[0][t], ep[1][t], index, 0.05, 4)
    pred = model.stateless_call([tf.constant(p) for p in phi], [], ep[2][t], training=True)[0]
    np.testing.assert_allclose(out['loss'][-1, t], np.mean((pred.numpy() - ep[3][t].numpy()) ** 2),
                               rtol=1e-9)
  np.testing.assert_allclose(out['loss'][0].numpy(), utils.mse(ep[3], l.forward(
      l.tile(l.params(), 2), ep[2])).numpy(), rtol=1e-12)


def test_reptile_inner_adam_state_persists_across_tasks_and_into_evaluation(tmp_path):
  """As the original's optimizer slots: a meta-iteration leaves v at the mean of the tasks' final
  moments and t advanced by T * k; the next tasks and the evaluation start from them."""
  model = small_net()
  l = reptile(model)
  ep = episode(num_tasks=3, k=4)
  opt = keras.optimizers.SGD(0.5)
  opt.build(l.variables)
  theta = [v.numpy().copy() for v in model.trainable_variables]
  _, _, moments = l.adam_adapt(l.tile([tf.constant(t) for t in theta], 3), ep[0], ep[1], steps=3,
                               lr=0.05, batch=2, key=tf.constant([0, 0], tf.int64))
  l.make_train_step(opt)(*ep)
  for v, m in zip(l.state_variables, moments):
    np.testing.assert_allclose(v.numpy(), tf.reduce_mean(m, 0).numpy(), rtol=1e-12)
  assert int(l.state_variables[-1].numpy()) == 9
  # Evaluation starts from that state and leaves it alone.
  before = [v.numpy().copy() for v in l.state_variables]
  ep = episode(num_tasks=3, k=2, seed=1)  # the eval batch (2) is the whole support set
  out = l.make_eval_step(1)(*ep, tf.constant(0.05, tf.float64))
  fast = l.tile(l.params(), 3)
  with tf.GradientTape() as tape:
    tape.watch(fast)
    total = tf.reduce_sum(utils.mse(ep[1], l.forward(fast, ep[0])))
  g = tape.gradient(total, fast)
  v1 = [0.999 * b + 0.001 * gi ** 2 for b, gi in zip(before, g)]
  scale = 0.05 * np.sqrt(1 - 0.999 ** 10)
  stepped = [p - scale * gi / (np.sqrt(vi) + 1e-8) for p, gi, vi in zip(fast, g, v1)]
  np.testing.assert_allclose(out['loss'][1].numpy(),
                             utils.mse(ep[3], l.forward(stepped, ep[2])).numpy(), rtol=1e-9)
  for b, v in zip(before, l.state_variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_task_digest_does_not_depend_on_the_chunking():
  """Rows with different eval_chunk (and meta-batch) must get the same digest for the same tasks."""
  import hashlib
  import data_generator
  cfg = experiments.get('sinusoid_maml')
  digests = set()
  for chunk in (3, 7):
    digest = hashlib.sha256()
    sampler = data_generator.make_sampler(cfg.replace(meta_batch_size=chunk), 'test', 5)
    for _ in trainer._hashed(data_generator.task_chunks(sampler, 20, 5, 5, chunk), digest):
      pass
    digests.add(digest.hexdigest())
  assert len(digests) == 1
