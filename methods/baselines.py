"""The paper's MiniImagenet baselines (Table 1, taken from Ravi & Larochelle 2017).

Both start from the same network: the row's conv4 trained as an ordinary classifier over all
meta-training classes (64 for MiniImagenet). At meta-test
  * "fine-tuning": the backbone gets a new N-way head (zeros) and every parameter is fine-tuned on the
    task's support set by plain SGD (the MAML evaluation step, with alpha tuned on validation tasks);
  * "nearest neighbour": each query gets the label of the support image nearest in the backbone's
    feature space (the input of the head), by cosine distance (or Euclidean).

As methods (`FineTuning` and `NearestNeighbor`, selected by a row's `baseline`): both train the
classifier with the 'pretrain' objective on batches of single images (no episodes) and differ at
meta-test only; fine-tuning's step size is tuned, nearest neighbour has nothing to tune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

import config
from config import option
import data_generator
import image_datasets
from maml import MAML
import methods
from methods.maml_family import MAMLFamily, maml_learner
import models

if TYPE_CHECKING:  # the row's type only: methods/ and its modules import nothing above them
  from experiments import Config

def classification_batches(data: image_datasets.ClassImages, batch_size: int, seed: tuple[int, ...],
                           invert: bool) -> tf.data.Dataset:
  """Endless batches (images float32 [B, H, W, C] in [0, 1], labels int32 [B] in 0..C-1).

  Batch i is a pure function of (seed, i) (stateless draws with replacement), so the checkpointed
  iterator resumes exactly.
  """
  images = tf.constant(data.images)
  labels = tf.constant(np.repeat(np.arange(data.num_classes), data.counts), tf.int32)
  key = tf.constant([seed[0], seed[-1]], tf.int64)

  def batch(i):
    rows = tf.random.stateless_uniform([batch_size], tf.random.experimental.stateless_fold_in(key, i),
                                       0, len(data.images), tf.int32)
    x = tf.cast(tf.gather(images, rows), tf.float32) / 255.0
    return (1.0 - x if invert else x), tf.gather(labels, rows)

  options = tf.data.Options()
  options.experimental_symbolic_checkpoint = True  # checkpoint the position, not the buffer
  ds = tf.data.Dataset.range(np.iinfo(np.int64).max).map(batch, num_parallel_calls=tf.data.AUTOTUNE,
                                                         deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


class ClassificationSampler:
  """The training stream of a classifier baseline: batches of cfg.meta_batch_size images of the
  row's training split, with the trainer's sampler interface (`sample`, `trackable`)."""

  def __init__(self, cfg: Config):
    data = data_generator.load_images(cfg, 'train')
    if data.num_classes != cfg.classifier_classes:
      raise image_datasets.DataError(
          f'the {cfg.datasource} train split has {data.num_classes} classes, the row\'s classifier '
          f'{cfg.classifier_classes}: set classifier_classes to match')
    self._iterator = iter(classification_batches(data, cfg.meta_batch_size, (cfg.seed, 0),
                                                 invert=data_generator.inverts(cfg)))

  def sample(self, *sizes) -> tuple[tf.Tensor, tf.Tensor]:
    del sizes  # a batch of single images, not episodes
    return next(self._iterator)

  def trackable(self) -> tf.data.Iterator:
    return self._iterator


def make_classify_step(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                       jit_compile: bool = False):
  """A compiled classifier update: (images, labels) -> {'loss', 'pre_loss', 'post_loss'}.

  The mean cross-entropy is minimized; 'pre_loss' is the same loss and 'post_loss' the batch error
  rate (%), so the training loop logs them like a meta-update.
  """
  variables = model.trainable_variables

  def step(x, y):
    with tf.GradientTape() as tape:
      logits = model(x, training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    optimizer.apply(tape.gradient(loss, variables), variables)
    error = 100.0 * tf.reduce_mean(tf.cast(tf.not_equal(tf.argmax(logits, -1, tf.int32), y),
                                           tf.float32))
    return {'loss': loss, 'pre_loss': loss, 'post_loss': error}

  return tf.function(step, jit_compile=jit_compile)


def backbone(model: keras.Model) -> keras.Model:
  """The network up to the head's input (features [B, D])."""
  return keras.Model(model.inputs, model.get_layer('head').input)


def task_model(classifier: keras.Model, cfg: Config) -> keras.Model:
  """An N-way copy of the classifier: the same backbone weights and a zero-initialized head."""
  model = models.build_model(cfg)
  for layer in model.layers:
    if layer.name != 'head' and layer.weights:
      layer.set_weights(classifier.get_layer(layer.name).get_weights())
  head = model.get_layer('head')
  head.set_weights([np.zeros(w.shape, np.float32) for w in head.weights])
  return model


NN_DISTANCES = ('cosine', 'euclidean')


def nearest_labels(features: keras.Model, support_x, support_y, query_x,
                   distance: str = 'cosine') -> tf.Tensor:
  """The label (int64 [Q]) of each query's nearest support example in feature space, for one task.

  support_x [N*K, ...], support_y [N*K, N] one-hot, query_x [Q, ...]. distance: 'cosine'
  (Euclidean between L2-normalized features) or 'euclidean'. Each set is embedded in its own call,
  so batch norm sees the same batches as in MAML.
  """
  if distance not in NN_DISTANCES:
    raise ValueError(f'distance={distance!r} is not one of {NN_DISTANCES}')
  s, q = features(support_x, training=True), features(query_x, training=True)  # [N*K, D], [Q, D]
  if distance == 'cosine':  # the nearest by cosine is the nearest of the unit vectors
    s, q = tf.math.l2_normalize(s, -1), tf.math.l2_normalize(q, -1)
  distances = (tf.reduce_sum(q ** 2, -1)[:, None] - 2 * tf.matmul(q, s, transpose_b=True)
               + tf.reduce_sum(s ** 2, -1)[None, :])
  return tf.gather(tf.argmax(support_y, -1), tf.argmin(distances, -1))


def nearest_neighbor_accuracy(features: keras.Model, episode, distance: str = 'cosine') -> np.ndarray:
  """Accuracy (%) [T] of labelling each query like its nearest support example (nearest_labels).

  episode: support_x [T, N*K, ...], support_y [T, N*K, N], query_x [T, N*Q, ...], query_y [T, N*Q, N].
  """
  nearest = tf.function(lambda *task: nearest_labels(features, *task, distance),
                        reduce_retracing=True)
  accuracies = []
  for support_x, support_y, query_x, query_y in zip(*episode[:4]):
    predicted = nearest(support_x, support_y, query_x)
    accuracies.append(100.0 * np.mean(predicted.numpy() == tf.argmax(query_y, -1).numpy()))
  return np.array(accuracies)


@config.Part
class BaselineOptions:
  """The classifier baselines' options."""
  classifier_classes: int = option(
      64, 'Classifier baselines: outputs while training (the meta-training classes).')
  nn_distance: str = option(
      'cosine', 'Nearest-neighbour baseline: the distance between backbone features.', flag=True,
      resumable=True, choices=('cosine', 'euclidean'))

  def check(self, bad: config.Bad) -> None:
    if self.baseline not in ('finetune', 'nearest_neighbor'):
      return
    if self.datasource == 'sinusoid' or self.metatrain_iterations or self.val_every:
      bad('baseline', 'is a classifier trained with pretrain_iterations on image data only '
          '(no meta-training, no meta-validation)')
    if self.distribute != 'none':
      bad('distribute', 'is for meta-training; the classifier baselines train on one device')
    if self.steps_per_call > 1:
      bad('steps_per_call', 'must be 1 for the classifier baselines (their step is not looped)')


@methods.register('finetune')
class FineTuning(MAMLFamily):
  """The classifier, fine-tuned at meta-test by MAML's evaluation step (alpha tunable). Its
  learner is a MAML over the classifier, whose variables the optimizer updates."""
  selected_by = 'baseline'
  options = BaselineOptions
  episodic = False
  chunks_meta_gradient = False

  def build_model(self) -> keras.Model:
    """The classifier: the row's network with one output per meta-training class (it gets an
    N-way head at meta-test)."""
    return models.build_model(self.cfg, outputs=self.cfg.classifier_classes)

  def train_sampler(self) -> ClassificationSampler:
    """Batches (images [B, H, W, C], labels [B]) of cfg.meta_batch_size training images."""
    return ClassificationSampler(self.cfg)

  def make_train_step(self, learner: MAML, optimizer, objective, steps_per_call=1, strategy=None):
    """The classifier update: (images, labels) -> {'loss', 'pre_loss': the cross-entropy,
    'post_loss': the batch error rate (%)}."""
    if objective != methods.PRETRAIN or steps_per_call != 1 or strategy is not None:
      raise ValueError(f'{self.cfg.name}: a classifier baseline trains the pretrain objective only, '
                       'one step per call on one device')
    return make_classify_step(learner.model, optimizer, self.cfg.jit_compile)

  def make_eval_fn(self, learner: MAML, steps: int, return_outputs: bool = False):
    """MAML's evaluation step on an N-way copy of the classifier (task_model)."""
    model = task_model(learner.model, self.cfg)
    return maml_learner(self.cfg, model, learner.loss_fn, learner.metric_fn,
                        num_updates=0).make_eval_step(steps, return_outputs=return_outputs)

  def label(self) -> str:
    return 'fine-tuning'


@methods.register('nearest_neighbor')
class NearestNeighbor(FineTuning):
  """The classifier's backbone as a feature space: each query gets the label of the nearest
  support example (cfg.nn_distance). Training is FineTuning's."""

  @property
  def tunes_step_size(self) -> bool:
    return False

  def make_eval_fn(self, learner: MAML, steps: int, return_outputs: bool = False):
    """fn(*episode, lr) -> {'loss': zeros, 'metric': accuracy (%)} [1, T]; steps and lr unused."""
    if return_outputs:
      raise ValueError('nearest neighbour records no outputs')
    features = backbone(learner.model)

    def nearest(*episode):
      metric = nearest_neighbor_accuracy(features, episode, self.cfg.nn_distance)[None]
      return {'loss': tf.zeros_like(metric), 'metric': tf.constant(metric)}
    return nearest

  def make_predict_fn(self, learner: MAML, steps: int):
    """fn(support_x, support_y, query_x, lr) -> one-hot [T, Q, N]: the class of each query's
    nearest support example (cfg.nn_distance). The baseline has no scores to turn into graded
    probabilities, so the one it picks gets 1; steps and lr are unused."""
    features = backbone(learner.model)
    nearest = tf.function(lambda *task: nearest_labels(features, *task, self.cfg.nn_distance),
                          reduce_retracing=True)

    def predict(support_x, support_y, query_x, lr):
      del lr
      labels = tf.stack([nearest(*task) for task in zip(support_x, support_y, query_x)])
      return tf.one_hot(labels, tf.shape(support_y)[-1], dtype=support_y.dtype)
    return predict

  def label(self) -> str:
    return 'nearest neighbour'
