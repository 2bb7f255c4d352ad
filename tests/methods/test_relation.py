"""Relation networks (methods/relation.py) against hand computations: the networks' shapes, the
pairs' concatenation order, K-shot summing, the MSE against one-hot labels, the clipped update, the
halved step size, evaluation's shapes, the options' checks and a resumed run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import experiments
from experiments import ConfigError
import image_datasets
import method_runs
import methods
from methods.relation import (RelationLearner, feature_shape, relation_embedding, relation_module,
                              relation_mse)
import models

SHAPE = (28, 28, 1)  # Omniglot's: the embedding gives 5x5 maps, the module pools them to 1x1


def networks(filters=4, seed=0):
  keras.utils.set_random_seed(seed)
  embedding = relation_embedding(SHAPE, filters)
  return embedding, relation_module(feature_shape(embedding), filters)


def learner(parallelism='map_fn', **kwargs):
  embedding, relation = networks()
  batched = parallelism == 'batched'
  return RelationLearner(
      embedding, relation, task_parallelism=parallelism,
      embed_forward=models.task_batched_forward(embedding) if batched else None,
      relation_forward=models.task_batched_forward(relation) if batched else None, **kwargs)


def episode(tasks=2, n=3, k=2, q=2, seed=0):
  """method_runs.tiny_episode of Omniglot-sized images."""
  return method_runs.tiny_episode(tasks, n, k, q, seed, SHAPE)


def test_network_shapes_follow_the_official_code():
  embedding, relation = networks(filters=64)
  assert embedding.output_shape == (None, 5 * 5 * 64) and feature_shape(embedding) == (5, 5, 64)
  assert relation.input_shape == (None, 5, 5, 128) and relation.output_shape == (None, 1)
  mini = relation_embedding((84, 84, 3), 64)
  assert feature_shape(mini) == (19, 19, 64)
  module = relation_module((19, 19, 64), 64, padding='valid')  # 19 -> 17 -> 8 -> 6 -> 3
  assert module.get_layer('relation_fc1').kernel.shape == (3 * 3 * 64, 8)
  r = module(tf.random.normal([4, 19, 19, 128]))
  assert r.shape == (4, 1) and np.all((r.numpy() > 0) & (r.numpy() < 1))
  # The official init: dense biases 1, batch norm beta 0.
  np.testing.assert_array_equal(relation.get_layer('relation_fc2').bias.numpy(), 1.0)


def test_pairs_concatenate_the_class_features_then_the_query():
  classes = tf.reshape(tf.range(2 * 3 * 1 * 1 * 2, dtype=tf.float32), [2, 3, 1, 1, 2])  # T=2, N=3
  query = -tf.reshape(tf.range(2 * 4 * 1 * 1 * 2, dtype=tf.float32), [2, 4, 1, 1, 2]) - 1  # Q=4
  pairs = RelationLearner.pairs(classes, query).numpy()
  assert pairs.shape == (2, 4 * 3, 1, 1, 4)
  for t in range(2):
    for q in range(4):
      for n in range(3):
        np.testing.assert_array_equal(pairs[t, q * 3 + n, 0, 0],
                                      np.concatenate([classes[t, n, 0, 0], query[t, q, 0, 0]]))


def test_k_shot_class_features_are_summed():
  rng = np.random.default_rng(0)
  support = rng.normal(size=(2, 6, 2, 2, 3))
  labels = np.stack([np.eye(3)[[2, 0, 1, 0, 2, 1]], np.eye(3)[[0, 0, 1, 1, 2, 2]]])
  got = RelationLearner.class_features(tf.constant(support), tf.constant(labels)).numpy()
  for t in range(2):
    for n in range(3):
      np.testing.assert_allclose(got[t, n], support[t][labels[t, :, n] == 1].sum(0), rtol=1e-12)


def test_loss_is_the_mse_against_one_hot_labels():
  rng = np.random.default_rng(1)
  r = rng.uniform(size=(2, 6, 3))
  y = np.eye(3)[rng.integers(0, 3, size=(2, 6))]
  np.testing.assert_allclose(relation_mse(tf.constant(y), tf.constant(r)).numpy(),
                             ((r - y) ** 2).mean((1, 2)), rtol=1e-12)


def test_scores_are_the_relation_module_on_each_tasks_own_batches():
  """An independent computation: each task's support set and queries embedded in their own calls,
  the pairs built in numpy, one relation module call per task."""
  l = learner()
  sx, sy, qx, _ = episode()
  got = l.scores(sx, sy, qx).numpy()
  assert got.shape == (2, 6, 3)
  for t in range(2):
    s = l.model(sx[t], training=True).numpy().reshape(-1, 5, 5, 4)
    q = l.model(qx[t], training=True).numpy().reshape(-1, 5, 5, 4)
    c = np.einsum('sn,shwf->nhwf', sy[t].numpy(), s)
    pairs = np.concatenate([np.repeat(c[None], 6, 0), np.repeat(q[:, None], 3, 1)], -1)
    r = l.relation(pairs.reshape(18, 5, 5, 8), training=True).numpy().reshape(6, 3)
    np.testing.assert_allclose(got[t], r, rtol=1e-5, atol=1e-6)


def test_batched_forward_matches_map_fn():
  ep = episode()
  outs = {p: learner(p).scores(*ep[:3]).numpy() for p in ('batched', 'map_fn')}
  np.testing.assert_allclose(outs['batched'], outs['map_fn'], rtol=1e-5, atol=1e-6)


def test_train_step_clips_each_network_and_lowers_the_loss():
  ep = episode(tasks=1, q=3)
  l = learner(clip_norm=None)
  variables = l.variables
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(relation_mse(ep[3], l.scores(*ep[:3])))
  grads = tape.gradient(loss, variables)
  before = [v.numpy() for v in variables]
  phi = len(l.model.trainable_variables)
  # Without clipping: plain SGD on the MSE.
  result = l.make_train_step(keras.optimizers.SGD(0.5))(*ep)
  np.testing.assert_allclose(result['loss'].numpy(), loss.numpy(), rtol=1e-6)
  for v, old, g in zip(variables, before, grads):
    np.testing.assert_allclose(v.numpy(), old - 0.5 * g.numpy(), rtol=1e-4, atol=1e-6)
  # With clipping: each network's step is its own gradient scaled to a global norm of at most
  # clip_norm (the other network's norm does not matter).
  norms = [np.sqrt(sum((g.numpy() ** 2).sum() for g in part)) for part in (grads[:phi], grads[phi:])]
  clip = float(np.sqrt(norms[0] * norms[1]))  # between the two: clips one network, not the other
  assert min(norms) < clip < max(norms)
  l2 = learner(clip_norm=clip)
  l2.make_train_step(keras.optimizers.SGD(1.0))(*ep)
  for part, norm in zip((slice(0, phi), slice(phi, None)), norms):
    change = [v.numpy() - old for v, old in zip(l2.variables[part], before[part])]
    direction = [g.numpy() for g in grads[part]]
    scale = min(1.0, clip / norm)
    for c, g in zip(change, direction):
      np.testing.assert_allclose(c, -scale * g, rtol=1e-3, atol=1e-7)
  # A few Adam steps on the same tiny batch lower its loss.
  l3 = learner()
  step = l3.make_train_step(keras.optimizers.Adam(1e-3))
  first = step(*ep)['loss'].numpy()
  for _ in range(4):
    last = step(*ep)['loss'].numpy()
  assert last < first


def test_evaluation_returns_one_step_per_task_and_ignores_lr():
  l = learner()
  sx, sy, qx, qy = episode(tasks=3)
  evaluate = l.make_eval_step(0, return_outputs=True)
  out = evaluate(sx, sy, qx, qy, tf.constant(0.0))
  assert out['loss'].shape == (1, 3) and out['metric'].shape == (1, 3)
  assert out['outputs'].shape == (1, 3, 6, 3)
  np.testing.assert_allclose(out['loss'].numpy()[0],
                             relation_mse(qy, out['outputs'][0]).numpy(), rtol=1e-6)
  np.testing.assert_allclose(out['metric'].numpy()[0], 100.0 * np.mean(
      out['outputs'].numpy()[0].argmax(-1) == qy.numpy().argmax(-1), -1), rtol=1e-6)
  again = evaluate(sx, sy, qx, qy, tf.constant(3.0))
  np.testing.assert_array_equal(again['metric'].numpy(), out['metric'].numpy())
  with pytest.raises(ValueError, match='no fine-tuning steps'):
    l.make_eval_step(2)


def test_step_size_is_halved_every_relation_lr_halving_iterations():
  cfg = experiments.get('omniglot_5way_1shot_relation')
  optimizer = methods.get(cfg).make_optimizer()
  assert cfg.meta_lr == 1e-3 and cfg.relation_lr_halving == 100_000

  def at(iteration):  # beta when `iteration` updates have been applied
    optimizer.iterations.assign(iteration)
    return float(optimizer.learning_rate)

  np.testing.assert_allclose([at(i) for i in (0, 99_999, 100_000, 200_000)],
                             [1e-3, 1e-3, 5e-4, 2.5e-4], rtol=1e-6)
  constant = methods.get(cfg.replace(relation_lr_halving=0)).make_optimizer()
  np.testing.assert_allclose(float(constant.learning_rate), 1e-3)


# --- the method and its rows ---------------------------------------------------------------------

def test_rows_follow_the_official_code():
  rows = experiments.METHOD_ROWS['relation']
  queries = {r: experiments.get(r).train_query_size for r in rows}
  assert queries == {'omniglot_5way_1shot_relation': 19, 'omniglot_5way_5shot_relation': 15,
                     'omniglot_20way_1shot_relation': 10, 'omniglot_20way_5shot_relation': 5,
                     'miniimagenet_5way_1shot_relation': 15, 'miniimagenet_5way_5shot_relation': 10}
  assert [p.value for r in rows for p in experiments.get(r).published] == [
      99.6, 99.8, 97.6, 99.1, 50.44, 65.32]
  for row in rows:
    cfg = experiments.get(row)
    assert (cfg.meta_batch_size, cfg.meta_lr, cfg.num_filters) == (1, 1e-3, 64)
    assert 'unverified' in cfg.source and cfg.metatrain_iterations == 100_000
    method = methods.get(cfg)
    assert method.label() == 'Relation' and not method.inner_loop
  assert 'omniglot_5way_1shot_relation' in experiments.COMPARE_ROWS['omniglot']
  assert 'miniimagenet_5way_1shot_relation' in experiments.COMPARE_ROWS['miniimagenet']


@pytest.mark.parametrize('changes,match', [
    (dict(report_step=1, test_num_updates=1), 'test_num_updates and report_step must be 0'),
    (dict(transductive=False), 'transductive=False must be True'),
    (dict(meta_grad_clip=10.0), 'meta_grad_clip=10.0 must be None'),
    (dict(min_meta_lr=1e-5), 'min_meta_lr=1e-05 must be None'),
    (dict(relation_lr_halving=-1), 'relation_lr_halving=-1 must not be negative'),
    (dict(relation_clip_norm=0.0), 'relation_clip_norm=0.0 must be positive or None'),
])
def test_invalid_relation_rows_raise(changes, match):
  with pytest.raises(ConfigError, match=match):
    experiments.get('omniglot_5way_1shot_relation').replace(**changes)


def test_relation_options_belong_to_relation_rows():
  with pytest.raises(ConfigError, match='relation_clip_norm=None is for relation networks only'):
    experiments.get('omniglot_5way_1shot_protonet').replace(relation_clip_norm=None)


def test_a_resumed_run_continues_exactly(sources, tmp_path, monkeypatch):
  """The relation module (extras) and Adam's state come back: 2 + 2 iterations equal 4."""
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  cfg = experiments.get('omniglot_5way_1shot_relation').replace(
      data_dir=sources['omniglot'], num_filters=4, query_size=2, val_every=0, metatrain_iterations=4,
      checkpoint_every=2, print_every=2, summary_every=2)
  a, b = method_runs.train_straight_and_resumed(cfg, tmp_path)
  assert len(a.learner.extra_variables) == len(a.learner.relation.trainable_variables) == 10
  for x, y in zip(a.learner.variables, b.learner.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
