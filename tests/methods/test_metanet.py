"""Meta Networks (methods/metanet.py) against hand computations: layer augmentation, the memory read
(softmax of cosine attention over fast weights), the gradient preprocessing, the per-example and
per-chunk gradients that feed the fast-weight generators, shapes, per-task independence, one
training step, the rows and options, and a resumed run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import experiments
from experiments import ConfigError
import image_datasets
import method_runs
import methods
from methods.metanet import (MetaNetLearner, chunk_means, conv, cosine, log_and_sign,
                             metanet_loss, metanet_network, read)

SHAPE = (28, 28, 1)


def learner(fast_convs=4, n=3, filters=4, hidden=5, norm='None', chunks=3, seed=0, **kwargs):
  keras.utils.set_random_seed(seed)
  nets = [metanet_network(SHAPE, n, filters, hidden, fast_convs, norm, name)
          for name in ('base', 'u')]
  return MetaNetLearner(*nets, fast_convs=fast_convs, chunks=chunks, **kwargs)


def episode(tasks=2, n=3, k=1, q=2, seed=0):
  """method_runs.tiny_episode of Omniglot-sized images, K = 1 by default."""
  return method_runs.tiny_episode(tasks, n, k, q, seed, SHAPE)


def randomize_generators(l, seed=1):
  """Non-zero fast weights: the generators' output layers start at zero (the slow learner). Large
  enough that the generated conv kernels have entries of both signs (on inputs >= 0 a kernel of one
  negative sign is a dead ReLU path)."""
  rng = np.random.default_rng(seed)
  for net in (l.m_conv, l.m_dense, l.d_conv, l.d_dense):
    for layer in net.layers:
      scale = 0.02 if layer is net.layers[-1] else 0.5  # fast weights ~0.1, of both signs
      for v in layer.trainable_variables:
        v.assign(rng.normal(0, scale, v.shape).astype(np.float32) if len(v.shape) > 1
                 else np.zeros(v.shape, np.float32))


def np_conv(h, k):
  """3x3 SAME cross-correlation: h [H, W, C], k [3, 3, C, F] -> [H, W, F]."""
  p = np.pad(h, ((1, 1), (1, 1), (0, 0)))
  out = np.zeros(h.shape[:2] + (k.shape[-1],))
  for i in range(h.shape[0]):
    for j in range(h.shape[1]):
      out[i, j] = np.einsum('abc,abcf->f', p[i:i + 3, j:j + 3], k)
  return out


def relu(x):
  return np.maximum(x, 0)


# --- the pieces, by hand --------------------------------------------------------------------------

def test_layer_augmentation_of_the_fcs():
  """relu(h W1) + relu(h W1*), then (.) W2 + (.) W2*; the key is h W1 + h W1* (linear)."""
  l = learner(fast_convs=0)
  h = np.array([[1.0, -2.0], [0.5, 3.0]])
  w1, f1 = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0]]), np.array([[-2.0, 1.0, 0.0], [1.0, 0.5, 2.0]])
  w2, f2 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]), np.array([[0.5, 0.5], [-1.0, 0.0], [0.0, 2.0]])
  t = lambda *a: [tf.constant(x) for x in a]
  got = l.head(t(w1, w2), tf.constant(h), t(f1, f2)).numpy()
  hidden = relu(h @ w1) + relu(h @ f1)
  np.testing.assert_allclose(got, hidden @ w2 + hidden @ f2, rtol=1e-12)
  # Row 0 by hand: h W1 = [0, -3, 2.5], h W1* = [-4, 0, -4] -> hidden [0, 0, 2.5];
  # 2.5 W2[2] + 2.5 W2*[2] = [2.5, -2.5] + [0, 5].
  np.testing.assert_allclose(got[0], [2.5, 2.5], rtol=1e-12)
  key = l.head(t(w1, w2), tf.constant(h), t(f1, f2), key=True).numpy()
  np.testing.assert_allclose(key, h @ w1 + h @ f1, rtol=1e-12)
  slow = l.head(t(w1, w2), tf.constant(h)).numpy()  # no fast weights: b(W, x)
  np.testing.assert_allclose(slow, relu(h @ w1) @ w2, rtol=1e-12)


def test_layer_augmentation_of_a_convolution_with_fast_weights_per_example():
  """pool(relu(conv(h, W)) + relu(conv(h, W*_m))) with a different W*_m for each example m."""
  l = learner(fast_convs=1)
  rng = np.random.default_rng(0)
  h = rng.normal(size=(3, 2, 2, 2))
  w, fast = rng.normal(size=(3, 3, 2, 4)), rng.normal(size=(3, 3, 3, 2, 4))  # W*: one per example
  w1, w2 = rng.normal(size=(4, 5)), rng.normal(size=(5, 3))
  got = l.head([tf.constant(a) for a in (w, w1, w2)], tf.constant(h),
               [tf.constant(a) for a in (fast, np.zeros((4, 5)), np.zeros((5, 3)))]).numpy()
  for m in range(3):
    y = relu(np_conv(h[m], w)) + relu(np_conv(h[m], fast[m]))   # [2, 2, 4]
    pooled = y.max((0, 1))                                      # 2x2 max-pool -> [4]
    np.testing.assert_allclose(got[m], relu(pooled @ w1) @ w2, rtol=1e-10)
  # The grouped convolution equals each example's own convolution.
  per_example = conv(tf.constant(h), tf.constant(fast)).numpy()
  for m in range(3):
    np.testing.assert_allclose(per_example[m], np_conv(h[m], fast[m]), rtol=1e-10)


def test_memory_read_is_softmax_cosine_attention_over_fast_weights():
  keys = np.array([[1.0, 0.0], [1.0, 1.0]])
  memory_keys = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
  slots = [np.array([1.0, 10.0, 100.0]), np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)]
  np.testing.assert_allclose(cosine(tf.constant(keys), tf.constant(memory_keys)).numpy(),
                             [[1, 0, -1], [2 ** -0.5, 2 ** -0.5, -(2 ** -0.5)]], rtol=1e-6)
  got = [g.numpy() for g in read(tf.constant(keys), tf.constant(memory_keys),
                                 [tf.constant(s) for s in slots])]
  e = np.e
  a0 = np.array([e, 1, 1 / e]) / (e + 1 + 1 / e)                # query 0: cos 1, 0, -1
  c = np.exp(2 ** -0.5)
  a1 = np.array([c, c, 1 / c]) / (2 * c + 1 / c)
  np.testing.assert_allclose(got[0], [a0 @ slots[0], a1 @ slots[0]], rtol=1e-6)
  np.testing.assert_allclose(got[1][0], np.tensordot(a0, slots[1], 1), rtol=1e-6)
  assert got[1].shape == (2, 2, 2)


def test_log_and_sign_preprocessing():
  g = np.array([0.0, 0.01, -2.0, 1e4, -1e-5])
  eps = np.finfo(np.float64).eps
  expected_log = np.maximum(np.log(np.abs(g) + eps) / 7, -1)
  expected_sign = np.clip(g * np.exp(7), -1, 1)
  got = log_and_sign(tf.constant(g)).numpy()
  assert got.shape == (5, 2)
  np.testing.assert_allclose(got[:, 0], expected_log, rtol=1e-12)
  np.testing.assert_allclose(got[:, 1], expected_sign, rtol=1e-12)
  # By hand: log(0.01) / 7 = -0.658; log(1e-5) / 7 = -1.64 is clipped; 0.01 e^7 = 11 is clipped.
  np.testing.assert_allclose(got[:, 0], [-1, np.log(0.01) / 7, np.log(2) / 7, np.log(1e4) / 7, -1],
                             rtol=1e-10)
  np.testing.assert_allclose(got[:, 1], [0, 1, -1, 1, -1e-5 * np.exp(7)], rtol=1e-10)


@pytest.mark.parametrize('fast_convs,norm', [(4, 'None'), (2, 'batch_norm')])
def test_per_example_gradients_match_one_tape_per_example(fast_convs, norm):
  """example_gradients (copies of W per example, one tape) against a tape per example on its own
  cross-entropy with the shared slow weights; the chunks' means are their mean losses' gradients."""
  l = learner(fast_convs=fast_convs, norm=norm)
  sx, sy, _, _ = episode(tasks=1, n=3, k=2)
  x, y = sx[0], sy[0]
  h = l.body(l.model, x)
  kernels = l.kernels(l.model)
  got = [g.numpy() for g in l.example_gradients(kernels, h, y)]
  assert [g.shape for g in got] == [(6, *k.shape) for k in kernels]
  for m in range(6):
    with tf.GradientTape() as tape:
      tape.watch(kernels)
      loss = tf.nn.softmax_cross_entropy_with_logits(labels=y[m:m + 1],
                                                     logits=l.head(kernels, h[m:m + 1]))
    for g, ref in zip(got, tape.gradient(loss, kernels)):
      np.testing.assert_allclose(g[m], ref.numpy(), rtol=1e-4, atol=1e-7)
  # T = 3 chunks of 2 consecutive examples: the gradient of each chunk's mean loss.
  for g, means in zip(got, (chunk_means(tf.constant(g), 3).numpy() for g in got)):
    np.testing.assert_allclose(means, g.reshape(3, 2, *g.shape[1:]).mean(1), rtol=1e-6)
  with tf.GradientTape() as tape:
    tape.watch(kernels)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y[2:4],
                                                                  logits=l.head(kernels, h[2:4])))
  for g, ref in zip(got, tape.gradient(loss, kernels)):
    np.testing.assert_allclose(chunk_means(tf.constant(g), 3).numpy()[1], ref.numpy(), rtol=1e-4,
                               atol=1e-7)


def test_generators_read_each_gradient_entry_on_its_own():
  """m maps log_and_sign(g) of every entry to one fast weight; d reads an entry's chunks in order."""
  l = learner()
  randomize_generators(l)
  rng = np.random.default_rng(2)
  grads = [tf.constant(rng.normal(0, 1e-2, (3, 3, 3, 1, 4)), tf.float32),   # conv [M, ...]
           tf.constant(rng.normal(0, 1e-2, (3, 4, 5)), tf.float32)]         # dense [M, ...]
  memory = [w.numpy() for w in l.generate(grads, recurrent=False)]
  for g, w, m in zip(grads, memory, (l.m_conv, l.m_dense)):
    assert w.shape == g.shape
    entry = (1,) + (0,) * (g.shape.rank - 1)
    np.testing.assert_allclose(w[entry], m(log_and_sign(g[entry])[None]).numpy()[0, 0], rtol=1e-5)
  fast = [w.numpy() for w in l.generate(grads, recurrent=True)]
  for g, w, d in zip(grads, fast, (l.d_conv, l.d_dense)):
    assert w.shape == g.shape[1:]
    entry = (0,) * (g.shape.rank - 1)
    sequence = log_and_sign(tf.stack([g[(t, *entry)] for t in range(3)]))[None]   # [1, T, 2]
    np.testing.assert_allclose(w[entry], d(sequence).numpy()[0, 0], rtol=1e-5)
    reversed_ = d(sequence[:, ::-1]).numpy()[0, 0]
    assert not np.isclose(w[entry], reversed_)  # the order of the chunks matters


# --- the learner --------------------------------------------------------------------------------

def test_untrained_metanet_is_the_slow_base_learner():
  """The generators' output layers start at zero: no fast weights, so b(W, x) alone."""
  l = learner()
  sx, sy, qx, _ = episode(tasks=1)
  np.testing.assert_allclose(l.task_logits(sx[0], sy[0], qx[0]).numpy(),
                             l.model(qx[0]).numpy(), rtol=1e-5, atol=1e-6)


def test_shapes_and_per_task_independence():
  l = learner()
  randomize_generators(l)
  sx, sy, qx, qy = episode(tasks=2, q=2)
  out = l.logits(sx, sy, qx).numpy()
  assert out.shape == (2, 6, 3)
  for t in range(2):
    np.testing.assert_allclose(out[t], l.task_logits(sx[t], sy[t], qx[t]).numpy(), rtol=1e-5,
                               atol=1e-6)
  # The fast weights move the logits away from the slow learner's, and the support set matters.
  assert not np.allclose(out[0], l.model(qx[0]).numpy(), atol=1e-3)
  other = l.task_logits(sx[1], sy[1], qx[0]).numpy()
  assert not np.allclose(out[0], other, atol=1e-4)


def test_evaluation_returns_one_step_per_task_and_ignores_lr():
  l = learner()
  randomize_generators(l)
  sx, sy, qx, qy = episode(tasks=3)
  evaluate = l.make_eval_step(0, return_outputs=True)
  out = evaluate(sx, sy, qx, qy, tf.constant(0.0))
  assert out['loss'].shape == (1, 3) and out['metric'].shape == (1, 3)
  assert out['outputs'].shape == (1, 3, 6, 3)
  logits = out['outputs'].numpy()[0]
  xent = -np.sum(qy.numpy() * (logits - np.log(np.exp(logits).sum(-1, keepdims=True))), -1)
  np.testing.assert_allclose(out['loss'].numpy()[0], xent.sum(-1), rtol=1e-5)  # summed
  np.testing.assert_allclose(metanet_loss(qy, out['outputs'][0]).numpy(), xent.sum(-1), rtol=1e-5)
  np.testing.assert_allclose(out['metric'].numpy()[0], 100.0 * np.mean(
      logits.argmax(-1) == qy.numpy().argmax(-1), -1), rtol=1e-6)
  again = evaluate(sx, sy, qx, qy, tf.constant(3.0))
  np.testing.assert_array_equal(again['metric'].numpy(), out['metric'].numpy())
  with pytest.raises(ValueError, match='no fine-tuning steps'):
    l.make_eval_step(2)


def test_train_step_clips_the_global_norm_and_lowers_the_loss():
  ep = episode(tasks=1, q=3)
  l = learner(clip_norm=None)
  randomize_generators(l)
  variables = l.variables

  @tf.function  # eager tapes give no zeros for Keras variables the loss does not reach
  def loss_and_grads():
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(metanet_loss(ep[3], l.logits(*ep[:3])))
    return loss, tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

  loss, grads = loss_and_grads()
  norm = float(tf.linalg.global_norm(grads))
  # Every network learns: W, Q, m and d; u's classifier serves L_emb only, as the official key_fc2.
  learned = {id(v) for v, g in zip(variables, grads) if np.any(g.numpy() != 0)}
  for net in (l.model, l.u, l.m_conv, l.m_dense, l.d_conv, l.d_dense):
    assert learned & {id(v) for v in net.trainable_variables}, net.name
  assert id(l.u.get_layer('fc2').kernel) not in learned
  before = [v.numpy() for v in variables]
  clipped = learner(clip_norm=norm / 4)
  randomize_generators(clipped)
  clipped.make_train_step(keras.optimizers.SGD(1.0))(*ep)
  for v, old, g in zip(clipped.variables, before, grads):   # SGD on grad * (clip / norm)
    np.testing.assert_allclose(v.numpy() - old, -g.numpy() / 4, rtol=1e-3, atol=1e-6)
  step = l.make_train_step(keras.optimizers.Adam(1e-3))
  first = step(*ep)['loss'].numpy()
  np.testing.assert_allclose(first, loss.numpy(), rtol=1e-5)
  for _ in range(4):
    last = step(*ep)['loss'].numpy()
  assert last < first


# --- the method and its rows ---------------------------------------------------------------------

def test_rows_follow_the_official_code():
  rows = experiments.METHOD_ROWS['metanet']
  assert rows == ('omniglot_5way_1shot_metanet', 'omniglot_20way_1shot_metanet',
                  'miniimagenet_5way_1shot_metanet')
  assert [p.value for r in rows for p in experiments.get(r).published] == [98.95, 97.00, 49.21]
  for row in rows:
    cfg = experiments.get(row)
    assert (cfg.meta_batch_size, cfg.meta_lr, cfg.metanet_clip_norm) == (1, 1e-3, 10.0)
    assert 'unverified' in cfg.source and cfg.num_test_tasks == 600 and cfg.transductive
    assert methods.get(cfg).label() == 'MetaNet' and not methods.get(cfg).inner_loop
  omniglot, mini = experiments.get(rows[0]), experiments.get(rows[2])
  assert (omniglot.metanet_fast_convs, omniglot.norm, omniglot.query_size) == (4, 'None', 10)
  assert (mini.metanet_fast_convs, mini.norm, mini.query_size) == (2, 'batch_norm', 15)
  assert rows[0] in experiments.COMPARE_ROWS['omniglot']
  assert rows[2] in experiments.COMPARE_ROWS['miniimagenet']


@pytest.mark.parametrize('changes,match', [
    (dict(report_step=1, test_num_updates=1), 'test_num_updates and report_step must be 0'),
    (dict(transductive=False), 'transductive=False must be True'),
    (dict(meta_grad_clip=10.0), 'meta_grad_clip=10.0 must be None'),
    (dict(norm='batch_norm'), "norm='batch_norm' normalizes the slow-only blocks"),
    (dict(metanet_chunks=2), 'metanet_chunks=2 must divide the support set'),
    (dict(metanet_fast_convs=5), 'metanet_fast_convs=5 must lie in 0..4'),
    (dict(metanet_clip_norm=0.0), 'metanet_clip_norm=0.0 must be positive or None'),
    (dict(max_pool=False), 'conv and max_pool must be True'),
])
def test_invalid_metanet_rows_raise(changes, match):
  with pytest.raises(ConfigError, match=match):
    experiments.get('omniglot_5way_1shot_metanet').replace(**changes)


def test_metanet_options_belong_to_metanet_rows():
  with pytest.raises(ConfigError, match='metanet_chunks=1 is for Meta Networks only'):
    experiments.get('omniglot_5way_1shot_protonet').replace(metanet_chunks=1)


def test_a_resumed_run_continues_exactly(sources, tmp_path, monkeypatch):
  """u, the generators (extras) and Adam's state come back: 2 + 2 iterations equal 4."""
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  cfg = experiments.get('omniglot_5way_1shot_metanet').replace(
      data_dir=sources['omniglot'], num_filters=4, metanet_hidden=4, query_size=2, val_every=0,
      metatrain_iterations=4, checkpoint_every=2, print_every=2, summary_every=2)
  a, b = method_runs.train_straight_and_resumed(cfg, tmp_path)
  # u: 4 convs + 2 FCs; m: 3 dense layers with biases, twice; d: LSTM (3) + dense (2), twice.
  assert len(a.learner.extra_variables) == 6 + 2 * 6 + 2 * 5
  for x, y in zip(a.learner.variables, b.learner.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
