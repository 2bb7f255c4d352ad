"""The paper's networks (parameter counts, shapes, masks) and the classification loss and metric."""

import os
import pathlib
import platform
import subprocess
import sys

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


def per_task_params(model, tasks, seed=0):
  """theta tiled over T tasks, each copy perturbed differently (so a mix-up of tasks shows)."""
  rng = np.random.default_rng(seed)
  return [tf.constant(v.numpy()[None] + 0.1 * rng.normal(size=(tasks, *v.shape)), v.dtype)
          for v in model.trainable_variables]


@pytest.mark.parametrize('row', ['omniglot_5way_1shot', 'miniimagenet_5way_1shot',
                                 'omniglot_5way_1shot_noconv'])
def test_task_batched_forward_equals_the_model_per_task(row):
  cfg = experiments.get(row).replace(num_filters=8)
  model = models.build_model(cfg)
  shape = models.IMAGE_SHAPES[cfg.datasource]
  x = tf.random.stateless_uniform([3, 4, *shape], seed=[0, 1])
  params = per_task_params(model, 3)
  batched = models.task_batched_forward(model)(params, x)
  for t in range(3):
    expected = model.stateless_call([p[t] for p in params], [], x[t], training=True)[0]
    np.testing.assert_allclose(batched[t].numpy(), expected.numpy(), rtol=2e-4, atol=2e-5)


def tiny_conv_net(norm, fused=True):
  """A small float32 conv net with every layer kind task_batched_forward knows."""
  keras.utils.set_random_seed(0)
  norm_kwargs = {'fused': fused} if norm == 'batch_norm' else {}
  inputs = keras.Input((6, 6, 2))
  h = keras.layers.Conv2D(3, 3, strides=2, padding='same')(inputs)
  h = models.norm_layer(norm, **norm_kwargs)(h)
  h = keras.layers.ReLU()(h)
  h = keras.layers.Conv2D(3, 3, padding='same')(h)
  h = keras.layers.MaxPool2D(2, 2, padding='valid')(h)
  h = keras.layers.Flatten()(h)
  h = keras.layers.Dense(4)(h)
  h = models.norm_layer(norm, **norm_kwargs)(h)
  return keras.Model(inputs, keras.layers.Dense(3)(h))


def classification_episode(tasks=3, n=3, k=1, q=2, size=6, channels=2, seed=0):
  rng = np.random.default_rng(seed)
  sx, qx = (tf.constant(rng.uniform(size=(tasks, n * m, size, size, channels)), tf.float32)
            for m in (k, q))
  sy, qy = (tf.one_hot(np.tile(np.arange(n), (tasks, m)), n) for m in (k, q))
  return sx, sy, qx, qy


def meta_gradient_fn(model, parallelism, first_order=False, num_updates=2):
  batched = models.task_batched_forward(model) if parallelism == 'batched' else None
  learner = MAML(model, utils.xent, utils.accuracy, update_lr=0.3, num_updates=num_updates,
                 first_order=first_order, adapt_mask=models.inner_loop_mask(model, True),
                 task_parallelism=parallelism, batched_forward=batched)
  return tf.function(lambda *ep: learner.meta_gradient(ep))  # grouped conv gradients: graph mode


def assert_same_gradients(a, b):
  """float32 gradients equal up to rounding, measured against the largest entry: conv biases before
  batch norm have a true gradient of 0, so theirs are rounding noise on both sides."""
  scale = max(float(tf.reduce_max(tf.abs(g))) for g in b)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize('norm', ['batch_norm', 'layer_norm'])
@pytest.mark.parametrize('first_order', [False, True])
def test_batched_task_parallelism_gives_the_same_meta_gradient(norm, first_order):
  """Second-order meta-gradient and losses of 'batched' equal those of the per-task map_fn."""
  model = tiny_conv_net(norm)
  ep = classification_episode()
  results = [meta_gradient_fn(model, p, first_order)(*ep) for p in ('map_fn', 'batched')]
  (grads_a, *losses_a), (grads_b, *losses_b) = results
  assert_same_gradients(grads_b, grads_a)
  for a, b in zip(losses_a, losses_b):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)


def test_fused_batch_norm_gives_the_exact_meta_gradient():
  """float32 batch norm runs TF's fused kernels; its second-order meta-gradient equals that of the
  explicit formula (whose exactness tests/test_maml.py checks against finite differences), while
  dropping the variance's dependence on the mean in the second derivative (tf.nn.moments) would
  shows as a difference of the gradients' own size. ('loop': the model's own call per task, the
  fused kernel's path, and the cheapest of them to trace.)"""
  ep = classification_episode(k=2, q=3)
  fused = meta_gradient_fn(tiny_conv_net('batch_norm', fused=True), 'loop')(*ep)[0]
  formula = meta_gradient_fn(tiny_conv_net('batch_norm', fused=False), 'loop')(*ep)[0]
  assert_same_gradients(fused, formula)

  def moments_variance(self, x, axes, beta, gamma):  # the variance as tf.nn.moments computes it
    mean = tf.reduce_mean(x, axes, keepdims=True)
    var = tf.reduce_mean(tf.square(x - tf.stop_gradient(mean)), axes, keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + self.epsilon) + beta

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(models.Normalization, 'normalize', moments_variance)
    wrong = meta_gradient_fn(tiny_conv_net('batch_norm', fused=False), 'loop')(*ep)[0]
  with pytest.raises(AssertionError):
    assert_same_gradients(wrong, formula)


def test_fused_batch_norm_in_task_chunks_gives_the_exact_meta_gradient():
  """task_chunk runs the fused kernels inside a tf.while_loop (the memory-lean default of the large
  rows). TensorFlow's second derivative of the fused kernel is wrong inside a TF1 (v1 control flow)
  loop; the project's TF2 while loop must give the meta-gradient of the explicit formula for the
  whole meta-batch, second order, over 2 inner steps."""
  ep = classification_episode(tasks=4, k=2, q=3)

  def meta_gradient(fused, chunk, in_flight=1):
    model = tiny_conv_net('batch_norm', fused=fused)
    learner = MAML(model, utils.xent, utils.accuracy, update_lr=0.3, num_updates=2,
                   task_parallelism='batched', batched_forward=models.task_batched_forward(model),
                   task_chunk=chunk, chunks_in_flight=in_flight)
    fn = learner.chunked_meta_gradient if chunk else lambda e: learner.meta_gradient(e, clip=False)
    return tf.function(fn)(ep)[0]

  formula = meta_gradient(fused=False, chunk=0)
  for chunk, in_flight in ((1, 1), (2, 1), (1, 2), (2, 2)):
    assert_same_gradients(meta_gradient(fused=True, chunk=chunk, in_flight=in_flight), formula)


def test_auto_task_chunk_fits_the_largest_layer_output_in_the_budget():
  model = models.conv_net((28, 28, 1), 5)  # largest output: the first conv's 14 x 14 x 64
  per_example = 14 * 14 * 64
  # Omniglot 5-way 1-shot, 1 query per class: 32 tasks x 10 images fit, so no chunks.
  assert models.auto_task_chunk(model, 32, 10) == 0
  # 15 queries per class: 80 images a task; chunks of the largest divisor of 32 that fits.
  budget = 4 * 80 * per_example
  assert models.auto_task_chunk(model, 32, 80, budget=budget) == 4
  assert models.auto_task_chunk(model, 32, 80, budget=budget - 1) == 2
  assert models.auto_task_chunk(model, 32, 80, budget=10) == 1  # one task never fits: one at a time
  assert models.auto_task_chunk(model, 6, 80, budget=5 * 80 * per_example) == 3  # a divisor of T
  # P chunks in flight: at least P chunks (C <= T/P), each within the budget.
  assert models.auto_task_chunk(model, 32, 10, budget=2 ** 30, in_flight=2) == 16
  assert models.auto_task_chunk(model, 32, 10, budget=models.CHUNK_IN_FLIGHT_ACTIVATIONS,
                                in_flight=2) == 4  # 4 x 10 x 14 x 14 x 64 = 501,760 floats
  assert models.auto_task_chunk(model, 32, 80, budget=models.CHUNK_IN_FLIGHT_ACTIVATIONS,
                                in_flight=2) == 1


def test_task_batched_forward_rejects_unknown_layers():
  inputs = keras.Input((4, 4, 1))
  h = keras.layers.Conv2D(2, 3)(inputs)
  h = keras.layers.BatchNormalization()(h)
  model = keras.Model(inputs, keras.layers.Flatten()(h))
  with pytest.raises(ValueError, match='BatchNormalization'):
    models.task_batched_forward(model)


def test_batched_without_grouped_conv_gradients_is_one_clear_error():
  """With oneDNN off, TensorFlow's CPU kernels cannot differentiate grouped convolutions."""
  if tf.config.list_physical_devices('GPU'):
    pytest.skip('GPUs differentiate grouped convolutions')
  code = ('import experiments, models\n'
          'models.task_batched_forward(models.build_model(experiments.get("omniglot_5way_1shot")))')
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS='0', TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                        cwd=pathlib.Path(__file__).resolve().parents[1], timeout=120)
  assert proc.returncode != 0 and 'ConfigError: task_parallelism=batched needs gradients' in proc.stderr
  assert '--task_parallelism=map_fn' in proc.stderr


@pytest.mark.skipif(platform.machine().lower() not in ('x86_64', 'amd64'),
                    reason="TensorFlow's oneDNN CPU kernels are checked on x86 only")
def test_main_turns_on_the_onednn_kernels_the_batched_rows_need():
  """TensorFlow enables oneDNN by default only on AVX-512 VNNI CPUs; on an AVX2 one (AMD EPYC) the
  batched image rows failed until main.py set TF_ENABLE_ONEDNN_OPTS=1 before importing TensorFlow."""
  code = ('import os, main, models\n'
          'models._check_grouped_conv_gradients()\n'
          'print(os.environ["TF_ENABLE_ONEDNN_OPTS"])')
  env = {k: v for k, v in os.environ.items() if k != 'TF_ENABLE_ONEDNN_OPTS'}
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                        cwd=pathlib.Path(__file__).resolve().parents[1], timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == '1'


def test_anil_adapts_only_the_head():
  """ANIL's inner loop never changes the body: after adaptation every body tensor is theta's."""
  model = models.build_model(experiments.get('miniimagenet_5way_1shot_anil').replace(num_filters=4))
  mask = models.inner_loop_mask(model, inner_loop='head')
  adapted = [v.path for v, m in zip(model.trainable_variables, mask) if m]
  assert adapted == ['head/kernel', 'head/bias']
  learner = MAML(model, utils.xent, utils.accuracy, update_lr=0.5, num_updates=3, adapt_mask=mask,
                 task_parallelism='map_fn')
  sx, sy, _, _ = classification_episode(tasks=2, n=5, k=1, size=84, channels=3)
  params = learner.params()
  fast, _ = learner.adapt(learner.tile(params, 2), sx, sy, steps=3, lr=0.5, first_order=False)
  for f, p, m in zip(fast, params, mask):
    if m:
      assert np.abs(f.numpy() - p.numpy()[None]).max() > 1e-4
    else:
      np.testing.assert_array_equal(f.numpy(), np.broadcast_to(p.numpy(), f.shape))
