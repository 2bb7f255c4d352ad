"""The paper's networks (parameter counts, shapes, masks) and the classification loss and metric."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import experiments
from maml import MAML
import models
import utils


@pytest.mark.parametrize('row,params', [
    ('sinusoid_maml', 1_761), ('omniglot_5way_1shot', 112_005), ('omniglot_20way_1shot', 112_980),
    ('miniimagenet_5way_1shot', 32_773),
    # 784*256+256 + 256*128+128 + 128*64+64 + 64*64+64 + 64*5+5, plus BN betas 256+128+64+64
    ('omniglot_5way_1shot_noconv', 246_597 + 512)])
def test_parameter_counts_match_the_original(row, params):
  """Counts from the original's construct_*_weights plus BN beta (paper-protocol.md §1.3)."""
  assert models.build_model(experiments.get(row)).count_params() == params


def test_conv_shapes_and_heads():
  omni = models.build_model(experiments.get('omniglot_5way_1shot'))
  assert omni.output_shape == (None, 5)
  assert [l.output.shape[1] for l in omni.layers if isinstance(l, keras.layers.Conv2D)] == [14, 7, 4, 2]
  mini = models.build_model(experiments.get('miniimagenet_5way_1shot'))
  pools = [l.output.shape[1] for l in mini.layers if isinstance(l, keras.layers.MaxPool2D)]
  assert pools == [42, 21, 10, 5] and mini.get_layer('head').kernel.shape == (800, 5)


def test_inner_loop_mask_excludes_norm_unless_asked():
  model = models.build_model(experiments.get('omniglot_5way_1shot'))
  mask = models.inner_loop_mask(model)
  frozen = [v.path for v, m in zip(model.trainable_variables, mask) if not m]
  assert len(frozen) == 4 and all('beta' in p for p in frozen)
  assert all(models.inner_loop_mask(model, adapt_norm=True))


def test_normalization_uses_the_statistics_of_each_call():
  layer = models.norm_layer('batch_norm')
  x = tf.random.normal([6, 3, 3, 4]) * 5 + 2
  y = layer(x)
  np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0, atol=1e-5)
  np.testing.assert_allclose(tf.math.reduce_std(y, [0, 1, 2]), 1, atol=1e-3)  # eps 1e-3 vs var 25
  assert not layer.non_trainable_variables  # no moving averages: never used by the original


def test_xent_is_summed_cross_entropy_over_k_and_accuracy_in_percent():
  y = tf.one_hot([[0, 1, 2, 0, 1, 2]], 3)          # N=3, K=2: one task
  out = tf.constant([[[2., 0, 0], [0, 1, 0], [0, 0, 3], [0, 5, 0], [1, 0, 0], [0, 0, 1]]])
  ce = -np.log(tf.nn.softmax(out).numpy()[0][np.arange(6), [0, 1, 2, 0, 1, 2]])
  np.testing.assert_allclose(utils.xent(y, out, 2.0).numpy(), [ce.sum() / 2], rtol=1e-6)
  np.testing.assert_allclose(utils.accuracy(y, out).numpy(), [100 * 4 / 6], rtol=1e-6)


def test_query_loss_is_divided_by_the_support_k():
  """The original divides by update_batch_size (K) also on the query set: Q=15, K=1 sums 15*N CEs."""
  model = models.build_model(experiments.get('omniglot_5way_1shot_noconv'))
  learner = MAML(model, utils.xent, utils.accuracy, update_lr=0.4, num_updates=1)
  rng = np.random.default_rng(0)
  sx, qx = (tf.constant(rng.uniform(size=(2, n, 28, 28, 1)), tf.float32) for n in (5, 75))
  sy = tf.one_hot(np.tile(np.arange(5), (2, 1)), 5)
  qy = tf.one_hot(np.tile(np.arange(5), (2, 15)), 5)
  _, _, post = learner.meta_objective((sx, sy, qx, qy), learner.params())
  fast, _ = learner.adapt(learner.tile(learner.params(), 2), sx, sy, steps=1, lr=0.4,
                          first_order=False)
  ce = tf.nn.softmax_cross_entropy_with_logits(qy, learner.forward(fast, qx))
  np.testing.assert_allclose(post.numpy(), tf.reduce_sum(ce, -1).numpy() / 1.0, rtol=1e-5)
