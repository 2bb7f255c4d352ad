"""The meta-learner LSTM (methods/meta_lstm.py) against hand computations: the preprocessing, one
update of the two layers in numpy, SGD when the gates are fixed, the cell state starting at the
learner's parameters, no second-order path through the learner's gradient, shapes, the clipped
meta-update, the rows and their checks, and a resumed run."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import experiments
from experiments import ConfigError
import image_datasets
from maml import MAML
import method_runs
import methods
from methods.meta_lstm import PREPROCESS_P, MetaLSTMLearner, preprocess
from methods.metric import nll

N, D = 3, 4  # classes, input features of the tiny learner


def learner(seed=0, hidden=5, **kwargs):
  """A float64 learner x [M, 4] -> Dense(4) -> tanh -> Dense(3) and its meta-learner."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((D,), dtype='float64')
  h = keras.layers.Dense(4, activation='tanh', dtype='float64')(inputs)
  model = keras.Model(inputs, keras.layers.Dense(N, dtype='float64')(h))
  return MetaLSTMLearner(model, num_updates=kwargs.pop('num_updates', 3), hidden=hidden, **kwargs)


def episode(tasks=2, k=2, q=2, seed=0):
  """[T, N*K, 4], one-hot [T, N*K, N] (shuffled), [T, N*Q, 4], [T, N*Q, N]."""
  rng = np.random.default_rng(seed)

  def labels(shots):
    return np.stack([np.eye(N)[rng.permutation(np.repeat(np.arange(N), shots))] for _ in range(tasks)])

  sy, qy = labels(k), labels(q)
  sx, qx = rng.normal(size=(tasks, N * k, D)), rng.normal(size=(tasks, N * q, D))
  return tuple(tf.constant(a) for a in (sx, sy, qx, qy))


def extras(l):
  return [tf.convert_to_tensor(v) for v in l.extra_variables]


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_preprocessing_on_hand_computed_values():
  e = math.e
  x = tf.constant([1.0, 20.0, -e ** -5, e ** -9.5, e ** -12, -e ** -11, 0.0], tf.float64)
  expected = [(0.0, 1.0), (math.log(20) / 10, 1.0), (-0.5, -1.0), (-0.95, 1.0),  # |x| >= e^-10
              (-1.0, e ** -2), (-1.0, -e ** -1), (-1.0, 0.0)]                       # |x| < e^-10
  got = preprocess(x, PREPROCESS_P).numpy()
  assert got.shape == (7, 2)
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('gate_input', ['gate', 'logit'])
def test_one_update_matches_numpy(gate_input):
  """Layer 1 (an LSTM in Keras' gate order i, f, c, o) on [pre(L), pre(g)], then the cI cell."""
  l = learner(gate_input=gate_input)
  rng = np.random.default_rng(1)
  for v in l.extra_variables:  # larger weights than the init, so every term shows
    v.assign(rng.normal(size=v.shape) * 0.5)
  t, p, h = 2, l.num_params, l.hidden
  theta = rng.normal(size=(t, p))
  loss, grad = rng.uniform(0.5, 2.0, size=t), rng.normal(size=(t, p)) * 1e-2
  state = [rng.normal(size=(t, p, h)), rng.normal(size=(t, p, h)),
           rng.uniform(-1, 1, size=(t, p)), rng.uniform(-1, 1, size=(t, p))]
  got_theta, got_state, (got_i, got_f) = l.update(
      extras(l), tf.constant(theta), tf.constant(loss), tf.constant(grad),
      tuple(tf.constant(s) for s in state))
  kernel, recurrent, bias, w_i, b_i, w_f, b_f = [v.numpy() for v in l.extra_variables]

  def pre(x):
    big = np.abs(x) >= np.exp(-10)
    return np.stack([np.where(big, np.log(np.abs(x) + (~big)) / 10, -1),
                     np.where(big, np.sign(x), np.exp(10) * x)], -1)

  x = np.concatenate([np.broadcast_to(pre(loss)[:, None], (t, p, 2)), pre(grad)], -1)
  z = x @ kernel + state[0] @ recurrent + bias
  zi, zf, zc, zo = np.split(z, 4, -1)
  c = sigmoid(zf) * state[1] + sigmoid(zi) * np.tanh(zc)
  hidden = sigmoid(zo) * np.tanh(c)
  i_logit = hidden @ w_i[:h] + w_i[h] * theta + w_i[h + 1] * state[2] + b_i
  f_logit = hidden @ w_f[:h] + w_f[h] * theta + w_f[h + 1] * state[3] + b_f
  i, f = sigmoid(i_logit), sigmoid(f_logit)
  np.testing.assert_allclose(got_theta.numpy(), f * theta - i * grad, rtol=1e-10)
  np.testing.assert_allclose(got_i.numpy(), i, rtol=1e-10)
  np.testing.assert_allclose(got_f.numpy(), f, rtol=1e-10)
  np.testing.assert_allclose(got_state[0].numpy(), hidden, rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(got_state[1].numpy(), c, rtol=1e-10, atol=1e-14)
  fed = (i, f) if gate_input == 'gate' else (i_logit, f_logit)
  np.testing.assert_allclose(got_state[2].numpy(), fed[0], rtol=1e-10)
  np.testing.assert_allclose(got_state[3].numpy(), fed[1], rtol=1e-10)


@pytest.mark.parametrize('gate_input', ['gate', 'logit'])
def test_fixed_gates_are_sgd(gate_input):
  """W_I = W_F = 0, b_I = logit(alpha), b_F large: i = alpha, f = 1, whatever layer 1 says; the
  updates are SGD of step alpha on the mean cross-entropy / B (maml.MAML.adapt computes them)."""
  alpha, steps = 0.3, 4
  l = learner(gate_input=gate_input)
  names = {v.name: v for v in l.extra_variables}
  names['w_i'].assign(tf.zeros_like(names['w_i']))
  names['w_f'].assign(tf.zeros_like(names['w_f']))
  names['b_i'].assign(math.log(alpha / (1 - alpha)))
  names['b_f'].assign(40.0)  # sigmoid(40) rounds to 1 in float64
  sx, sy, _, _ = episode(tasks=2)
  theta0 = l.initial_theta(l.params(), 2)
  got, _ = l.adapt(extras(l), theta0, sx, sy, steps)

  def per_example_mean(y, out, shots):  # the learner's loss / B: its gradient is the LSTM's g_t
    return nll(y, out) / tf.cast(tf.shape(y)[1], out.dtype)

  sgd = MAML(l.model, per_example_mean, nll, update_lr=alpha, num_updates=steps)
  expected, _ = sgd.adapt(MAML.tile(l.model.trainable_variables, 2), sx, sy, steps=steps, lr=alpha,
                          first_order=True)
  np.testing.assert_allclose(got.numpy(), l.flatten(expected).numpy(), rtol=1e-10, atol=1e-12)
  assert not np.allclose(got.numpy(), theta0.numpy())  # the steps did move theta


def test_cell_state_starts_at_the_learners_parameters():
  l = learner()
  sx, sy, qx, qy = episode(tasks=2)
  theta0 = l.initial_theta(l.params(), 2).numpy()
  flat = np.concatenate([v.numpy().ravel() for v in l.model.trainable_variables])
  assert theta0.shape == (2, l.num_params) and l.num_params == flat.size == 4 * 4 + 4 + 4 * 3 + 3
  np.testing.assert_array_equal(theta0, np.stack([flat, flat]))
  out = l.make_eval_step(0, return_outputs=True)(sx, sy, qx, qy, tf.constant(0.0))
  for t in range(2):  # no update: the model's own prediction
    np.testing.assert_allclose(out['outputs'][0, t].numpy(), l.model(qx[t]).numpy(), rtol=1e-12)
  # theta_0 is the model's variables themselves: the meta-optimizer's update of them moves it.
  l.model.trainable_variables[0].assign_add(tf.ones_like(l.model.trainable_variables[0]))
  assert not np.allclose(l.initial_theta(l.params(), 2).numpy(), theta0)


def test_the_learners_gradient_carries_no_second_order_path():
  l = learner()
  sx, sy, qx, qy = episode(tasks=2)
  theta = l.initial_theta(l.params(), 2)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(theta)
    loss, grad = l.learner_gradient(theta, sx, sy)
  assert tape.gradient(grad, theta) is None and tape.gradient(loss, theta) is None
  # The meta-gradient equals one through a replay that feeds the same losses and gradients as
  # constants: nothing of it flows through g_t(theta_{t-1}).
  with tf.GradientTape() as tape:
    params = l.params()
    tape.watch(params)
    meta_loss = l.meta_objective((sx, sy, qx, qy), params)[0]
  grads = tape.gradient(meta_loss, params)
  inputs, theta_t = [], theta
  state = l.initial_state(theta_t)
  for _ in range(l.num_updates):
    loss, grad = l.learner_gradient(theta_t, sx, sy)
    inputs.append((tf.constant(loss.numpy()), tf.constant(grad.numpy())))
    theta_t, state, _ = l.update(extras(l), theta_t, loss, grad, state)
  with tf.GradientTape() as tape:
    params = l.params()
    tape.watch(params)
    replay = l.initial_theta(params, 2)
    state = l.initial_state(replay)
    for loss, grad in inputs:
      replay, state, _ = l.update(params[len(l.model.trainable_variables):], replay, loss, grad, state)
    replay_loss = tf.reduce_mean(nll(qy, l._maml.forward(l.unflatten(replay), qx)))
  np.testing.assert_allclose(replay_loss.numpy(), meta_loss.numpy(), rtol=1e-12)
  for a, b in zip(grads, tape.gradient(replay_loss, params)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-14)
  assert all(np.abs(g.numpy()).sum() > 0 for g in grads)  # every meta-learned tensor is reached


def test_evaluation_shapes_and_lr_is_ignored():
  l = learner()
  sx, sy, qx, qy = episode(tasks=3, q=3)
  fn = l.make_eval_step(3, return_outputs=True)
  out = fn(sx, sy, qx, qy, tf.constant(0.1))
  assert out['loss'].shape == (4, 3) and out['metric'].shape == (4, 3)
  assert out['outputs'].shape == (4, 3, 9, N)
  np.testing.assert_allclose(out['loss'].numpy(), [nll(qy, o).numpy() for o in out['outputs']],
                             rtol=1e-12)
  again = fn(sx, sy, qx, qy, tf.constant(5.0))
  np.testing.assert_array_equal(again['loss'].numpy(), out['loss'].numpy())
  # The last step is the meta-objective's theta_S when S = 3.
  theta, _ = l.adapt(extras(l), l.initial_theta(l.params(), 3), sx, sy, 3)
  np.testing.assert_allclose(out['outputs'][-1].numpy(), l.predict(theta, sx, qx).numpy(), rtol=1e-12)


def test_train_step_clips_the_meta_gradient_and_lowers_the_loss():
  ep = episode(tasks=1, q=3)
  l = learner(clip_norm=None)
  with tf.GradientTape() as tape:
    params = l.params()
    tape.watch(params)
    loss = l.meta_objective(ep, params)[0]
  grads = [g.numpy() for g in tape.gradient(loss, params)]
  norm = np.sqrt(sum((g ** 2).sum() for g in grads))
  clip = norm / 4
  clipped = learner(clip_norm=clip)
  before = [v.numpy() for v in clipped.variables]
  result = clipped.make_train_step(keras.optimizers.SGD(1.0))(*ep)
  np.testing.assert_allclose(result['loss'].numpy(), loss.numpy(), rtol=1e-12)
  for v, old, g in zip(clipped.variables, before, grads):
    np.testing.assert_allclose(v.numpy() - old, -g / 4, rtol=1e-8, atol=1e-14)
  # Adam 1e-3 (the rows' beta) on the same tiny episode lowers its query loss.
  fresh = learner()
  step = fresh.make_train_step(keras.optimizers.Adam(1e-3))
  first = step(*ep)
  assert first['pre_loss'].numpy() > 0
  for _ in range(5):
    last = step(*ep)['loss'].numpy()
  assert last < first['loss'].numpy()


def test_learner_and_meta_learner_variables():
  l = learner(hidden=20)
  names = [v.name for v in l.extra_variables]
  assert names == ['lstm_kernel', 'lstm_recurrent_kernel', 'lstm_bias', 'w_i', 'b_i', 'w_f', 'b_f']
  shapes = [tuple(v.shape) for v in l.extra_variables]
  assert shapes == [(4, 80), (20, 80), (80,), (22,), (), (22,), ()]
  values = {v.name: v.numpy() for v in l.extra_variables}
  assert 4 <= values['b_f'] <= 5 and -5 <= values['b_i'] <= -4  # f ~ 1, i ~ 0.01: SGD-like
  for name in ('lstm_kernel', 'lstm_recurrent_kernel', 'lstm_bias', 'w_i', 'w_f'):
    assert np.abs(values[name]).max() <= 0.01
  assert l.variables[:4] == list(l.model.trainable_variables)


# --- the method and its rows ---------------------------------------------------------------------

def test_rows_follow_the_official_code():
  rows = experiments.METHOD_ROWS['meta_lstm']
  assert rows == ('miniimagenet_5way_1shot_meta_lstm', 'miniimagenet_5way_5shot_meta_lstm')
  settings = {r: (c.update_batch_size, c.num_updates, c.test_num_updates, c.report_step,
                  c.metatrain_iterations, c.eval_shots)
              for r, c in ((r, experiments.get(r)) for r in rows)}
  assert settings == {rows[0]: (1, 12, 12, 12, 75_000, (1,)), rows[1]: (5, 8, 8, 8, 50_000, (5,))}
  assert [(p.shots, p.step, p.value, p.ci95) for r in rows for p in experiments.get(r).published] == [
      (1, 12, 43.44, 0.77), (5, 8, 60.60, 0.71)]
  for row in rows:
    cfg = experiments.get(row)
    assert (cfg.meta_batch_size, cfg.meta_lr, cfg.query_size, cfg.num_filters, cfg.max_pool) == (
        1, 1e-3, 15, 32, True)
    assert cfg.meta_lstm_clip_norm == 0.25 and cfg.meta_grad_clip is None
    method = methods.get(cfg)
    assert method.label() == 'meta-learner LSTM' and method.inner_loop
    assert not method.tunes_step_size and method.reported_step_size(0.01) == 'learned'
  assert rows[0] in experiments.COMPARE_ROWS['miniimagenet']


def test_the_learner_is_the_rows_conv4_and_extras_are_saved():
  cfg = experiments.get('miniimagenet_5way_1shot_meta_lstm')
  method = methods.get(cfg)
  model = method.build_model()
  l = method.build(model)
  assert l.num_params == 32_773  # the MiniImagenet conv4 with 32 filters (models.conv_net)
  assert method.saved_variables(l) == {'extras': l.extra_variables}


@pytest.mark.parametrize('changes,match', [
    (dict(meta_grad_clip=10.0), 'meta_grad_clip=10.0 must be None'),
    (dict(num_updates=0), 'num_updates=0 must be at least 1'),
    (dict(meta_lstm_clip_norm=0.0), 'meta_lstm_clip_norm=0.0 must be positive or None'),
    (dict(meta_lstm_gate_input='sigmoid'), "meta_lstm_gate_input='sigmoid' is not one of"),
])
def test_invalid_meta_lstm_rows_raise(changes, match):
  with pytest.raises(ConfigError, match=match):
    experiments.get('miniimagenet_5way_1shot_meta_lstm').replace(**changes)


def test_meta_lstm_options_belong_to_its_rows():
  with pytest.raises(ConfigError, match='meta_lstm_gate_input=.logit. is for the meta-learner LSTM'):
    experiments.get('miniimagenet_5way_1shot').replace(meta_lstm_gate_input='logit')
  with pytest.raises(ConfigError, match='must be an image datasource'):
    experiments.get('sinusoid_maml').replace(method='meta_lstm')


def test_matching_rows_of_table_1_are_the_fce_rerun():
  """MAML's Table 1 quotes Ravi & Larochelle's re-run of matching networks with FCE."""
  for row, value in (('miniimagenet_5way_1shot_matching', 43.56),
                     ('miniimagenet_5way_5shot_matching', 55.31)):
    cfg = experiments.get(row)
    assert cfg.full_context and 'FCE' in cfg.source and 'Ravi & Larochelle' in cfg.source
    assert [p.value for p in cfg.published] == [value]
    assert methods.get(cfg).label() == 'Matching (FCE)'


def test_a_resumed_run_continues_exactly(sources, tmp_path, monkeypatch):
  """The meta-learner's weights (extras) and Adam's state come back: 2 + 2 iterations equal 4."""
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  cfg = experiments.get('miniimagenet_5way_1shot_meta_lstm').replace(
      data_dir=sources['miniimagenet'], num_filters=4, query_size=2, num_updates=2,
      test_num_updates=2, report_step=2, val_every=0, metatrain_iterations=4, checkpoint_every=2,
      print_every=2, summary_every=2)
  a, b = method_runs.train_straight_and_resumed(cfg, tmp_path)
  assert len(a.learner.extra_variables) == 7
  for x, y in zip(a.learner.variables, b.learner.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
