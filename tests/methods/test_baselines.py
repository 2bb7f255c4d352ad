"""The classifier baselines on tiny inputs: nearest neighbour, the N-way copy, the batch stream."""

import keras
import numpy as np
import tensorflow as tf

from methods import baselines
import experiments
import methods
import image_datasets


def test_nearest_neighbor_labels_each_query_like_its_closest_support_example():
  features = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
  support_x = tf.constant([[[0., 0.], [10., 0.], [0., 10.]]])        # one task, 3-way 1-shot
  support_y = tf.one_hot([[2, 0, 1]], 3)
  query_x = tf.constant([[[9., 1.], [1., 9.], [1., 1.], [8., 0.]]])
  query_y = tf.one_hot([[0, 1, 2, 1]], 3)                            # the last one is wrong
  acc = baselines.nearest_neighbor_accuracy(features, (support_x, support_y, query_x, query_y),
                                            'euclidean')
  np.testing.assert_allclose(acc, [75.0])


def test_nearest_neighbor_by_cosine_compares_directions_not_lengths():
  features = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
  support_x = tf.constant([[[1., 0.], [0., 10.]]])                     # 2-way 1-shot
  support_y = tf.one_hot([[0, 1]], 2)
  query_x = tf.constant([[[5., 1.], [0.2, 0.9], [0.5, 0.6]]])          # nearest in angle: 0, 1, 1
  query_y = tf.one_hot([[0, 1, 1]], 2)
  episode = (support_x, support_y, query_x, query_y)
  np.testing.assert_allclose(baselines.nearest_neighbor_accuracy(features, episode, 'cosine'), [100.0])
  # Euclidean: the long support vector (0, 10) is far from every query, so all get label 0.
  np.testing.assert_allclose(baselines.nearest_neighbor_accuracy(features, episode, 'euclidean'),
                             [100 / 3])


def test_task_model_keeps_the_backbone_and_zeroes_an_n_way_head():
  cfg = experiments.get('miniimagenet_5way_1shot_finetune')
  keras.utils.set_random_seed(0)
  import models
  classifier = methods.get(cfg).build_model()
  assert classifier.output_shape == (None, 64)
  model = baselines.task_model(classifier, cfg)
  assert model.output_shape == (None, 5)
  np.testing.assert_array_equal(model.get_layer('conv0').kernel.numpy(),
                                classifier.get_layer('conv0').kernel.numpy())
  x = tf.random.uniform([3, 84, 84, 3])
  np.testing.assert_array_equal(model(x, training=True).numpy(), np.zeros((3, 5)))
  np.testing.assert_allclose(baselines.backbone(model)(x, training=True),
                             baselines.backbone(classifier)(x, training=True))


def test_classification_batches_are_seeded_and_labelled():
  # Class c's images are all equal to c, so a label can be read off its image.
  counts = np.array([3, 5, 2])
  images = np.repeat(np.arange(3, dtype=np.uint8), counts)[:, None, None, None] * np.ones(
      (1, 2, 2, 1), np.uint8)
  data = image_datasets.ClassImages('miniimagenet', 'train', images, np.r_[0, np.cumsum(counts)[:-1]],
                                    counts, np.arange(3, dtype=np.int32), ('a', 'b', 'c'))
  a = iter(baselines.classification_batches(data, 8, (0, 0), invert=False))
  b = iter(baselines.classification_batches(data, 8, (0, 0), invert=False))
  for _ in range(3):
    (xa, ya), (xb, yb) = next(a), next(b)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_allclose(xa[:, 0, 0, 0] * 255, ya.numpy().astype(np.float32))
  assert len(set(ya.numpy())) > 1
