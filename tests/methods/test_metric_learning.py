"""ProtoNet and Matching networks (methods/metric.py) against hand computations in numpy and an
independent tf.GradientTape, per-task batch norm, task parallelism and (non-)transductive episodes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from methods.metric import MetricLearner
import models


def dense_embedding(d_in=3, d_out=4, norm=None, seed=0):
  """f(x) = x W (float64, no bias), optionally followed by batch norm and tanh."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((d_in,), dtype='float64')
  h = keras.layers.Dense(d_out, use_bias=False, dtype='float64')(inputs)
  if norm:
    h = keras.layers.Activation('tanh', dtype='float64')(models.norm_layer(norm, dtype='float64')(h))
  return keras.Model(inputs, h)


def episode(tasks=2, n=3, k=2, q=2, d=3, seed=0, dtype=np.float64, shape=None):
  """[T, N*K, d], one-hot [T, N*K, N] with shuffled labels, [T, N*Q, d], [T, N*Q, N]."""
  rng = np.random.default_rng(seed)
  shape = shape or (d,)

  def labels(shots):
    return np.stack([np.eye(n)[rng.permutation(np.repeat(np.arange(n), shots))] for _ in range(tasks)])

  sy, qy = labels(k), labels(q)
  sx = rng.normal(size=(tasks, n * k, *shape))
  qx = rng.normal(size=(tasks, n * q, *shape))
  return tuple(tf.constant(a.astype(dtype)) for a in (sx, sy, qx, qy))


def kernel(learner):
  return learner.model.trainable_variables[0].numpy()


def numpy_logits(kind, w, sx, sy, qx, scale=1.0):
  """Hand computation for the bias-free linear embedding: [T, Q, N] logits / log-probabilities."""
  out = []
  for t in range(sx.shape[0]):
    s, qe, y = sx[t] @ w, qx[t] @ w, sy[t]
    if kind == 'protonet':
      protos = np.stack([s[y[:, c] == 1].mean(0) for c in range(y.shape[1])])
      out.append(-((qe[:, None] - protos[None]) ** 2).sum(-1))
    else:
      cos = scale * (qe / np.linalg.norm(qe, axis=-1, keepdims=True)) @ (
          s / np.linalg.norm(s, axis=-1, keepdims=True)).T
      attention = np.exp(cos) / np.exp(cos).sum(-1, keepdims=True)
      out.append(np.log(attention @ y))
  return np.stack(out)


@pytest.mark.parametrize('kind', ['protonet', 'matching'])
def test_logits_match_hand_computation(kind):
  l = MetricLearner(dense_embedding(), kind)
  sx, sy, qx, _ = episode()
  out = l.logits(sx, sy, qx).numpy()
  assert out.shape == (2, 6, 3)
  np.testing.assert_allclose(out, numpy_logits(kind, kernel(l), *(a.numpy() for a in (sx, sy, qx))),
                             rtol=1e-10, atol=1e-12)
  if kind == 'matching':
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, rtol=1e-12)


def test_cosine_scale_is_the_attention_inverse_temperature():
  """s * cos in the softmax: s = 1 is the paper's; a large s tends to 1-nearest-neighbour by cosine."""
  sx, sy, qx, _ = episode()
  arrays = [a.numpy() for a in (sx, sy, qx)]
  outs = {}
  for scale in (1.0, 3.0, 1e4):
    l = MetricLearner(dense_embedding(), 'matching', cosine_scale=scale)
    outs[scale] = l.logits(sx, sy, qx).numpy()
    if scale < 1e3:
      np.testing.assert_allclose(outs[scale], numpy_logits('matching', kernel(l), *arrays, scale),
                                 rtol=1e-10, atol=1e-12)
  assert not np.allclose(outs[1.0], outs[3.0])
  w = kernel(l)
  s_emb = np.einsum('tsd,de->tse', arrays[0], w)
  q_emb = np.einsum('tqd,de->tqe', arrays[2], w)
  cos = np.einsum('tqe,tse->tqs', q_emb / np.linalg.norm(q_emb, axis=-1, keepdims=True),
                  s_emb / np.linalg.norm(s_emb, axis=-1, keepdims=True))
  nearest_class = np.take_along_axis(arrays[1].argmax(-1), cos.argmax(-1), 1)
  np.testing.assert_array_equal(outs[1e4].argmax(-1), nearest_class)
  np.testing.assert_allclose(np.exp(outs[1e4]).max(-1), 1.0, atol=1e-6)


def test_loss_is_mean_cross_entropy_and_perfect_accuracy():
  l = MetricLearner(dense_embedding(), 'protonet')
  _, _, _, qy = episode()
  out = tf.constant(np.random.default_rng(1).normal(size=qy.shape))
  log_p = out.numpy() - np.log(np.exp(out.numpy()).sum(-1, keepdims=True))
  np.testing.assert_allclose(l.loss_fn(qy, out, 2.0).numpy(), -(qy.numpy() * log_p).sum(-1).mean(-1))
  # One shot, queries = the support items: each query sits on its own prototype.
  sx, sy, _, _ = episode(k=1)
  result = l.make_eval_step(0)(sx, sy, sx, sy, tf.constant(0.0, tf.float64))
  assert result['loss'].shape == (1, 2) and result['metric'].shape == (1, 2)
  np.testing.assert_array_equal(result['metric'].numpy(), 100.0)


def reference_loss(kind, w, sx, sy, qx, qy):
  """The mean episode loss written directly in TensorFlow, independent of the learner."""
  s, qe = tf.einsum('tmd,de->tme', sx, w), tf.einsum('tmd,de->tme', qx, w)
  if kind == 'protonet':
    protos = tf.einsum('tsn,tse->tne', sy, s) / tf.reduce_sum(sy, 1)[..., None]
    logits = -tf.reduce_sum((qe[:, :, None] - protos[:, None]) ** 2, -1)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(qy, logits))
  cos = tf.einsum('tqe,tse->tqs', qe / tf.norm(qe, axis=-1, keepdims=True),
                  s / tf.norm(s, axis=-1, keepdims=True))
  p = tf.einsum('tqs,tsn->tqn', tf.nn.softmax(cos, -1), sy)
  return -tf.reduce_mean(tf.math.log(tf.reduce_sum(p * qy, -1)))


@pytest.mark.parametrize('kind', ['protonet', 'matching'])
def test_train_step_is_sgd_on_the_episode_loss(kind):
  l = MetricLearner(dense_embedding(), kind)
  ep = episode()
  w = tf.Variable(kernel(l))
  with tf.GradientTape() as tape:
    expected = reference_loss(kind, w, *ep)
  grad = tape.gradient(expected, w).numpy()
  result = l.make_train_step(keras.optimizers.SGD(0.25))(*ep)  # exact in float32
  for key in ('loss', 'pre_loss', 'post_loss'):
    np.testing.assert_allclose(result[key].numpy(), expected.numpy(), rtol=1e-10)
  np.testing.assert_allclose(kernel(l), w.numpy() - 0.25 * grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('transductive', [True, False])
def test_batch_norm_statistics_are_per_task(transductive):
  l = MetricLearner(dense_embedding(norm='batch_norm'), 'protonet', transductive=transductive)
  sx, sy, qx, qy = episode(tasks=3)
  out = l.logits(sx, sy, qx).numpy()
  other = l.logits(sx + [[[0.0]], [[5.0]], [[-2.0]]], sy, qx * [[[1.0]], [[3.0]], [[0.5]]]).numpy()
  np.testing.assert_allclose(other[0], out[0], rtol=1e-12)
  assert not np.allclose(other[1], out[1])
  np.testing.assert_allclose(l.logits(sx[:1], sy[:1], qx[:1]).numpy()[0], out[0], rtol=1e-12)


@pytest.mark.parametrize('kind', ['protonet', 'matching'])
@pytest.mark.parametrize('transductive', [True, False])
def test_batched_forward_matches_map_fn(kind, transductive):
  keras.utils.set_random_seed(0)
  net = models.conv_net((8, 8, 1), 3, num_filters=4)
  embedding = keras.Model(net.inputs, net.get_layer('head').input)
  ep = episode(shape=(8, 8, 1), dtype=np.float32)
  out = {p: MetricLearner(embedding, kind, transductive=transductive, task_parallelism=p,
                          batched_forward=models.task_batched_forward(embedding)
                          if p == 'batched' else None).logits(*ep[:3]).numpy()
         for p in ('batched', 'map_fn', 'loop')}
  np.testing.assert_allclose(out['batched'], out['map_fn'], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out['loop'], out['map_fn'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kind', ['protonet', 'matching'])
def test_non_transductive_queries_are_independent(kind):
  sx, sy, qx, _ = episode()
  changed = tf.tensor_scatter_nd_update(qx, [[0, 1]], [[4.0, -3.0, 2.0]])
  for transductive in (False, True):
    l = MetricLearner(dense_embedding(norm='batch_norm'), kind, transductive=transductive)
    before, after = l.logits(sx, sy, qx).numpy(), l.logits(sx, sy, changed).numpy()
    others = np.delete(np.arange(qx.shape[1]), 1)
    assert not np.allclose(before[0, 1], after[0, 1])
    np.testing.assert_allclose(after[1], before[1], rtol=1e-12)  # another task: never affected
    if transductive:  # the changed query moves the batch statistics of its task's queries
      assert not np.allclose(after[0, others], before[0, others])
    else:
      np.testing.assert_allclose(after[0, others], before[0, others], rtol=1e-12)
  # Training always embeds the joint batch, whatever `transductive` says.
  np.testing.assert_allclose(l.logits(sx, sy, qx, training_batch=True).numpy(), before)


def test_full_context_embeddings():
  l = MetricLearner(dense_embedding(), 'matching', full_context=True, fce_steps=3)
  assert l.extra_variables and len(l.variables) == 1 + len(l.extra_variables)
  sx, sy, qx, qy = episode()
  out = l.logits(sx, sy, qx).numpy()
  assert out.shape == (2, 6, 3)
  np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, rtol=1e-12)
  before = [v.numpy() for v in l.variables]
  result = l.make_train_step(keras.optimizers.SGD(0.1))(sx, sy, qx, qy)
  assert np.isfinite(result['loss'].numpy())
  for old, v in zip(before, l.variables):
    assert np.any(old != v.numpy()), v.name
  # One general trace serves episodes of different shapes (other K, Q), and non-transductively.
  l.transductive = False
  evaluate = l.make_eval_step(0)
  for ep in (episode(), episode(k=3, q=1, seed=2)):
    metric = evaluate(*ep, tf.constant(0.0, tf.float64))['metric'].numpy()
    assert metric.shape == (1, 2) and np.all((metric >= 0) & (metric <= 100))


@pytest.mark.parametrize('full_context', [False, True])
def test_steps_per_call_equals_single_calls(full_context):
  eps = [episode(seed=s) for s in (3, 4)]
  learners = [MetricLearner(dense_embedding(seed=5), 'matching', full_context=full_context,
                            fce_steps=2) for _ in range(2)]
  for v, w in zip(learners[1].variables, learners[0].variables):
    v.assign(w)
  single = learners[0].make_train_step(keras.optimizers.SGD(0.2))
  losses = [single(*ep)['loss'].numpy() for ep in eps]
  stacked = [tf.stack(parts) for parts in zip(*eps)]
  result = learners[1].make_train_step(keras.optimizers.SGD(0.2), steps_per_call=2)(*stacked)
  np.testing.assert_allclose(result['loss'].numpy(), losses, rtol=1e-10)
  for v, w in zip(learners[1].variables, learners[0].variables):
    np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-10, atol=1e-14)


def test_invalid_arguments_raise():
  l = MetricLearner(dense_embedding(), 'protonet')
  with pytest.raises(ValueError, match='fine-tuning'):
    l.make_eval_step(1)
  with pytest.raises(ValueError, match='pretrain'):
    l.make_train_step(keras.optimizers.SGD(0.1), 'pretrain')
  with pytest.raises(ValueError, match='strategy'):
    l.make_train_step(keras.optimizers.SGD(0.1), strategy=tf.distribute.get_strategy())
  with pytest.raises(ValueError):
    MetricLearner(dense_embedding(), 'relation')
  with pytest.raises(ValueError):
    MetricLearner(dense_embedding(), 'protonet', full_context=True)
  with pytest.raises(ValueError, match='cosine_scale'):
    MetricLearner(dense_embedding(), 'protonet', cosine_scale=10.0)
