"""Siamese networks (methods/siamese.py) against hand computations in numpy and an independent
tf.GradientTape: the weighted-L1 score, the pair loss, the most-similar-support prediction, per-task
batch norm, evaluation's shapes, the options' checks and a resumed run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import experiments
from experiments import ConfigError
import image_datasets
import method_runs
import methods
import models
from methods.siamese import SiameseLearner
from test_metric_learning import dense_embedding, episode  # the same tiny embedding and episodes


def learner(**kwargs):
  l = SiameseLearner(dense_embedding(), **kwargs)
  rng = np.random.default_rng(7)  # a head with both signs and a non-zero bias
  l.head.kernel.assign(rng.normal(size=(4, 1)))
  l.head.bias.assign([0.3])
  return l


def numpy_pair_logits(l, sx, qx):
  """z [T, Q, S] = w . |f(x_q) - f(x_s)| + b for the bias-free linear embedding."""
  w_embed = l.model.trainable_variables[0].numpy()
  w, b = l.head.kernel.numpy()[:, 0], l.head.bias.numpy()[0]
  s, q = sx @ w_embed, qx @ w_embed
  return np.abs(q[:, :, None] - s[:, None]) @ w + b


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def test_identical_images_score_sigmoid_of_the_bias():
  """Zero distance: z = b, whatever w, so p(x, x) = sigmoid(b)."""
  l = learner()
  sx, sy, _, _ = episode(k=1)
  support, query = l.embed_episode(sx, sx, joint=True)
  z = l.pair_logits(support, query).numpy()
  np.testing.assert_allclose(np.diagonal(z, axis1=1, axis2=2), 0.3, rtol=1e-12)
  scores = l.class_scores(tf.constant(z), sy).numpy()             # K = 1: log p of that image
  own = np.einsum('tqn,tqn->tq', scores, sy.numpy())
  np.testing.assert_allclose(np.exp(own), sigmoid(0.3), rtol=1e-12)


def test_pair_logits_are_the_weighted_l1_distance():
  l = learner()
  sx, _, qx, _ = episode()
  support, query = l.embed_episode(sx, qx, joint=True)
  np.testing.assert_allclose(l.pair_logits(support, query).numpy(),
                             numpy_pair_logits(l, sx.numpy(), qx.numpy()), rtol=1e-12)


def test_prediction_is_the_most_similar_support_image_or_the_best_mean_similarity():
  l = learner()
  for k in (1, 3):
    sx, sy, qx, _ = episode(k=k, q=4, seed=k)
    support, query = l.embed_episode(sx, qx, joint=True)
    z = l.pair_logits(support, query)
    scores = l.class_scores(z, sy).numpy()
    p, y = sigmoid(z.numpy()), sy.numpy()
    mean = np.einsum('tqs,tsn->tqn', p, y) / y.sum(1)[:, None]       # (1/K) sum_{i in n} p(x, x_i)
    np.testing.assert_allclose(np.exp(scores), mean, rtol=1e-10)
    if k == 1:  # the class of the single most similar support image
      nearest = np.take_along_axis(y.argmax(-1), p.argmax(-1), 1)
      np.testing.assert_array_equal(scores.argmax(-1), nearest)


def test_scores_rank_similarities_that_round_to_one():
  """z = 40 and 60 both give sigmoid 1.0 in float32; their log-similarities still differ."""
  z = tf.constant([[[40.0, 60.0]]], tf.float32)
  scores = SiameseLearner.class_scores(z, tf.constant([[[1.0, 0.0], [0.0, 1.0]]]))
  assert scores.numpy().argmax(-1)[0, 0] == 1


@pytest.mark.parametrize('balanced', [True, False])
def test_pair_loss_is_the_binary_cross_entropy_of_same_class_pairs(balanced):
  l = learner(balanced=balanced)
  sx, sy, qx, qy = episode()
  z = numpy_pair_logits(l, sx.numpy(), qx.numpy())
  same = np.einsum('tqn,tsn->tqs', qy.numpy(), sy.numpy())
  bce = -(same * np.log(sigmoid(z)) + (1 - same) * np.log(1 - sigmoid(z)))
  if balanced:
    want = 0.5 * ((bce * same).sum((1, 2)) / same.sum((1, 2))
                  + (bce * (1 - same)).sum((1, 2)) / (1 - same).sum((1, 2)))
  else:
    want = bce.mean((1, 2))
  got = l.pair_loss(tf.constant(z), sy, qy).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-10)
  loss, _ = l.episode_outputs(sx, sy, qx, qy, joint=True)
  np.testing.assert_allclose(loss.numpy(), want, rtol=1e-10)


def test_train_step_is_sgd_on_the_mean_pair_loss_and_lowers_it():
  l = learner()
  ep = episode()
  w_embed, w, b = (tf.Variable(v.numpy()) for v in l.variables)
  sx, sy, qx, qy = ep
  with tf.GradientTape() as tape:  # the loss written directly, independent of the learner
    s, q = tf.einsum('tmd,de->tme', sx, w_embed), tf.einsum('tmd,de->tme', qx, w_embed)
    z = tf.einsum('tqse,e->tqs', tf.abs(q[:, :, None] - s[:, None]), w[:, 0]) + b[0]
    same = tf.einsum('tqn,tsn->tqs', qy, sy)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(same, z)
    expected = tf.reduce_mean(0.5 * (tf.reduce_sum(bce * same, [1, 2]) / tf.reduce_sum(same, [1, 2])
                                     + tf.reduce_sum(bce * (1 - same), [1, 2])
                                     / tf.reduce_sum(1 - same, [1, 2])))
  grads = tape.gradient(expected, [w_embed, w, b])
  step = l.make_train_step(keras.optimizers.SGD(0.25))  # exact in float32
  result = step(*ep)
  for key in ('loss', 'pre_loss', 'post_loss'):
    np.testing.assert_allclose(result[key].numpy(), expected.numpy(), rtol=1e-10)
  for v, old, g in zip(l.variables, (w_embed, w, b), grads):
    np.testing.assert_allclose(v.numpy(), old.numpy() - 0.25 * g.numpy(), rtol=1e-10, atol=1e-12)
  assert step(*ep)['loss'].numpy() < result['loss'].numpy()  # the step lowered the batch's loss


def test_evaluation_returns_one_step_per_task_and_ignores_lr():
  l = learner()
  sx, sy, qx, qy = episode(tasks=3)
  evaluate = l.make_eval_step(0, return_outputs=True)
  out = evaluate(sx, sy, qx, qy, tf.constant(0.0, tf.float64))
  assert out['loss'].shape == (1, 3) and out['metric'].shape == (1, 3)
  assert out['outputs'].shape == (1, 3, 6, 3)
  again = evaluate(sx, sy, qx, qy, tf.constant(5.0, tf.float64))
  np.testing.assert_array_equal(again['metric'].numpy(), out['metric'].numpy())
  # Queries identical to the support images (K = 1) sit at zero distance; with w < 0 every other
  # image is less similar, so each query is labelled like its own copy.
  l.head.kernel.assign(-np.ones((4, 1)))
  sx1, sy1, _, _ = episode(k=1)
  np.testing.assert_array_equal(evaluate(sx1, sy1, sx1, sy1, tf.constant(0.0, tf.float64))[
      'metric'].numpy(), 100.0)
  with pytest.raises(ValueError, match='no fine-tuning steps'):
    l.make_eval_step(1)


@pytest.mark.parametrize('transductive', [True, False])
def test_batch_norm_statistics_are_per_task(transductive):
  l = SiameseLearner(dense_embedding(norm='batch_norm'), transductive=transductive)
  sx, sy, qx, qy = episode(tasks=3)
  _, out = l.episode_outputs(sx, sy, qx, qy)
  _, other = l.episode_outputs(sx + [[[0.0]], [[5.0]], [[-2.0]]], sy, qx * [[[1.0]], [[3.0]], [[0.5]]],
                               qy)
  np.testing.assert_allclose(other.numpy()[0], out.numpy()[0], rtol=1e-12)
  assert not np.allclose(other.numpy()[1], out.numpy()[1])


def test_conv_embedding_shapes_and_batched_forward_match_map_fn():
  keras.utils.set_random_seed(0)
  embedding = models.conv_net((8, 8, 1), 3, num_filters=4, head=False)
  ep = episode(shape=(8, 8, 1), dtype=np.float32)
  outs = {}
  for parallelism in ('batched', 'map_fn'):
    keras.utils.set_random_seed(1)  # the same head
    l = SiameseLearner(embedding, task_parallelism=parallelism,
                       batched_forward=models.task_batched_forward(embedding)
                       if parallelism == 'batched' else None)
    loss, outs[parallelism] = l.episode_outputs(*ep)
    assert loss.shape == (2,) and outs[parallelism].shape == (2, 6, 3)
  np.testing.assert_allclose(outs['batched'], outs['map_fn'], rtol=1e-5, atol=1e-5)


# --- the method and its rows ---------------------------------------------------------------------

def test_rows_follow_maml_table_1():
  rows = experiments.METHOD_ROWS['siamese']
  assert [(experiments.get(r).num_classes, experiments.get(r).update_batch_size) for r in rows] == [
      (5, 1), (5, 5), (20, 1), (20, 5)]
  assert [p.value for r in rows for p in experiments.get(r).published] == [97.3, 98.4, 88.2, 97.0]
  for row in rows:
    cfg = experiments.get(row)
    assert 'unverified' in cfg.source and cfg.published[0].step == 0
    method = methods.get(cfg)
    assert method.label() == 'Siamese' and not method.inner_loop and not method.tunes_step_size
    assert method.log_losses({'loss': 0.5, 'pre_loss': 0.5, 'post_loss': 0.5}) == 'query loss 0.5000'
  assert 'omniglot_5way_1shot_siamese' in experiments.COMPARE_ROWS['omniglot']


@pytest.mark.parametrize('changes,match', [
    (dict(test_num_updates=1), 'test_num_updates and report_step must be 0'),
    (dict(meta_grad_clip=10.0), 'meta_grad_clip=10.0 must be None'),
    (dict(conv=False, task_parallelism='map_fn'), 'conv=False must be True'),
])
def test_invalid_siamese_rows_raise(changes, match):
  with pytest.raises(ConfigError, match=match):
    experiments.get('omniglot_5way_1shot_siamese').replace(**changes)


def test_siamese_options_belong_to_siamese_rows():
  with pytest.raises(ConfigError, match='siamese_balanced=False is for Siamese networks only'):
    experiments.get('omniglot_5way_1shot_protonet').replace(siamese_balanced=False)
  assert not experiments.get('omniglot_5way_1shot_siamese').replace(
      siamese_balanced=False).siamese_balanced


def test_a_resumed_run_continues_exactly(sources, tmp_path, monkeypatch):
  """The head (extras) and Adam's state come back: 2 + 2 iterations equal 4 in one go."""
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  cfg = experiments.get('omniglot_5way_1shot_siamese').replace(
      data_dir=sources['omniglot'], meta_batch_size=2, num_filters=4, query_size=2, val_every=0,
      metatrain_iterations=4, checkpoint_every=2, print_every=2, summary_every=2)
  a, b = method_runs.train_straight_and_resumed(cfg, tmp_path)
  assert len(a.learner.extra_variables) == 2  # w and b of the head
  for x, y in zip(a.learner.variables, b.learner.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
