"""MANN and its LSTM baseline (methods/mann.py) against hand computations: the least-used and write
weights, the usage update and the whole memory step in numpy, the cosine read, the labels one step
late, the sequence order, the per-presentation accuracy, evaluation's shapes and independent queries,
the training step, the options' checks and a resumed run."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import experiments
from experiments import ConfigError
import image_datasets
import method_runs
import methods
from methods.mann import (MANNLearner, MANNNetwork, cosine_read_weights, instance_accuracy,
                          least_used, previous_labels, sequence_order, write_weights)
import trainer

ROW = 'omniglot_5way_1shot_mann'
TINY = dict(units=6, slots=5, width=3, reads=2)


def network(memory=True, seed=0, image_size=28 * 28, n=3):
  keras.utils.set_random_seed(seed)
  return MANNNetwork(image_size, n, memory=memory, **TINY)


def episode(tasks=2, n=3, k=2, q=2, seed=0, size=(28, 28, 1)):
  """Images [T, N*K, ...], one-hot [T, N*K, N] in the sampler's slot order, queries likewise."""
  rng = np.random.default_rng(seed)
  labels = lambda shots: np.eye(n)[np.tile(np.arange(n), (tasks, shots))]
  return (tf.constant(rng.uniform(size=(tasks, n * k, *size)), tf.float32),
          tf.constant(labels(k), tf.float32),
          tf.constant(rng.uniform(size=(tasks, n * q, *size)), tf.float32),
          tf.constant(labels(q), tf.float32))


# --- the memory's pieces ----------------------------------------------------------------------------

def test_least_used_marks_the_n_smallest_usages_and_ties_go_to_the_lower_slot():
  usage = tf.constant([[0.5, 0.1, 0.9, 0.1, 0.3], [1.0, 1.0, 1.0, 1.0, 1.0]])
  lu, least = least_used(usage, 2)
  np.testing.assert_array_equal(lu.numpy(), [[0, 1, 0, 1, 0], [1, 1, 0, 0, 0]])
  np.testing.assert_array_equal(least.numpy(), [1, 0])


def test_write_weights_gate_the_previous_read_and_the_least_used_slots():
  alpha = tf.constant([[0.0, np.log(3.0)]])              # sigmoid: 1/2 and 3/4
  prev_read = tf.constant([[[0.2, 0.8, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
  lu = tf.constant([[0.0, 1.0, 0.0, 1.0]])
  np.testing.assert_allclose(write_weights(alpha, prev_read, lu).numpy(),
                             [[[0.1, 0.9, 0.0, 0.5], [0.0, 0.25, 0.75, 0.25]]], rtol=1e-6)


def test_cosine_read_weights_on_a_hand_made_memory():
  memory = tf.constant([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [3.0, 3.0]]])
  keys = tf.constant([[[2.0, 0.0], [-1.0, 0.0]]])
  cos = np.array([[1.0, 0.0, 0.0, np.sqrt(0.5)], [-1.0, 0.0, 0.0, -np.sqrt(0.5)]])  # zero slot: 0
  want = np.exp(cos) / np.exp(cos).sum(-1, keepdims=True)
  np.testing.assert_allclose(cosine_read_weights(keys, memory).numpy()[0], want, rtol=1e-6)


def test_a_memory_step_against_numpy():
  """One step from a hand-set state: the controller, the heads, w^lu, w^w, the zeroed least used
  slot, the write, the cosine read, the usage update and the output, computed in numpy."""
  net = network()
  s, d, h_ = TINY['slots'], TINY['width'], TINY['reads']
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(1, 28 * 28 + 3)).astype(np.float32)
  usage = np.array([[0.9, 0.2, 0.7, 0.05, 0.4]], np.float32)
  w_read = rng.dirichlet(np.ones(s), size=(1, h_)).astype(np.float32)
  memory = rng.normal(size=(1, s, d)).astype(np.float32)
  state = {'h': rng.normal(size=(1, 6)).astype(np.float32), 'c': rng.normal(size=(1, 6)).astype(np.float32),
           'read': rng.normal(size=(1, h_ * d)).astype(np.float32), 'w_read': w_read, 'usage': usage,
           'memory': memory}
  logits, new = net.step(tf.constant(x), {k: tf.constant(v) for k, v in state.items()})

  sig = lambda z: 1 / (1 + np.exp(-z))
  kernel, recurrent, bias = (v.numpy() for v in net.controller.weights)
  z = np.concatenate([x, state['read']], -1) @ kernel + state['h'] @ recurrent + bias
  i, f, g, o = np.split(z, 4, -1)                          # Keras' gate order
  c = sig(f) * state['c'] + sig(i) * np.tanh(g)
  h = sig(o) * np.tanh(c)
  params = h @ net.heads.kernel.numpy() + net.heads.bias.numpy()
  keys = np.tanh(params[:, :h_ * d]).reshape(h_, d)
  adds = np.tanh(params[:, h_ * d:2 * h_ * d]).reshape(h_, d)
  gate = sig(params[0, 2 * h_ * d:])[:, None]
  lu = np.array([0, 1, 0, 1, 0.0])                          # usages 0.2 and 0.05 are the smallest
  w_write = gate * w_read[0] + (1 - gate) * lu
  m = memory[0].copy()
  m[3] = 0.0                                                # the least used slot, zeroed first
  m += w_write.T @ adds
  cos = (keys / np.linalg.norm(keys, axis=1, keepdims=True)) @ (
      m / np.linalg.norm(m, axis=1, keepdims=True)).T
  w_r = np.exp(cos) / np.exp(cos).sum(-1, keepdims=True)
  read = (w_r @ m).reshape(1, -1)
  out = np.concatenate([h, read], -1) @ net.classifier.kernel.numpy() + net.classifier.bias.numpy()

  tol = dict(rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(new['memory'].numpy()[0], m, **tol)
  np.testing.assert_allclose(new['w_read'].numpy()[0], w_r, **tol)
  np.testing.assert_allclose(new['usage'].numpy()[0],
                             0.95 * usage[0] + w_r.sum(0) + w_write.sum(0), **tol)
  np.testing.assert_allclose(new['read'].numpy(), read, **tol)
  np.testing.assert_allclose(logits.numpy(), out, **tol)


def test_initial_state_follows_the_reference_implementation():
  state = network().initial_state(tf.constant(2))
  np.testing.assert_array_equal(state['usage'].numpy(), [[1, 0, 0, 0, 0]] * 2)
  np.testing.assert_array_equal(state['w_read'].numpy(), [[[1, 0, 0, 0, 0]] * 2] * 2)
  np.testing.assert_allclose(state['memory'].numpy(), 1e-6)
  assert state['read'].shape == (2, 6) and not np.any(state['h'].numpy())
  assert set(network(memory=False).initial_state(tf.constant(2))) == {'h', 'c'}


# --- sequences ----------------------------------------------------------------------------------------

def test_labels_come_one_step_late():
  y = tf.constant(np.eye(3)[[[2, 0, 1, 1]]], tf.float32)
  np.testing.assert_array_equal(previous_labels(y).numpy()[0],
                                [[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize('memory', [True, False])
def test_the_output_at_step_t_sees_the_labels_before_t_only(memory):
  net = network(memory)
  x, y, _, _ = episode(tasks=1, k=2)
  other = np.array(y)
  other[0, 2] = np.roll(other[0, 2], 1)                     # change the label of step 2
  run = lambda labels: net.run(x, previous_labels(tf.constant(labels)))[0].numpy()
  a, b = run(y), run(other)
  np.testing.assert_array_equal(a[0, :3], b[0, :3])         # steps 0..2 have not seen it
  assert not np.allclose(a[0, 3], b[0, 3])                  # step 3 gets it as y_{t-1}


def test_sequence_order_is_a_permutation_that_depends_on_the_task_alone():
  x, _, _, _ = episode(tasks=3, k=4)
  order = sequence_order(x).numpy()
  assert all(sorted(o) == list(range(12)) for o in order)
  assert len({tuple(o) for o in order}) == 3                # different tasks, different orders
  np.testing.assert_array_equal(sequence_order(x[1:2]).numpy()[0], order[1])  # in any batch


def test_instance_accuracy_by_presentation():
  # Classes in the order shown: 0 1 0 2 1 0; hits: 1 0 1 1 1 0.
  labels = [0, 1, 0, 2, 1, 0]
  y = tf.constant(np.eye(3)[[labels]], tf.float32)
  guesses = [0, 2, 0, 2, 1, 1]
  logits = tf.constant(np.eye(3)[[guesses]], tf.float32)
  got = instance_accuracy(y, logits, 3).numpy()[:, 0]
  # 1st presentations: steps 0, 1, 3 (2 of 3 right); 2nd: steps 2, 4 (both); 3rd: step 5 (wrong).
  np.testing.assert_allclose(got, [200 / 3, 100.0, 0.0], rtol=1e-6)


# --- the learner --------------------------------------------------------------------------------------

@pytest.mark.parametrize('memory', [True, False])
def test_evaluation_shapes_and_queries_predicted_on_their_own(memory):
  learner = MANNLearner(network(memory))
  sx, sy, qx, qy = episode(tasks=2, k=2, q=2)
  evaluate = learner.make_eval_step(0, return_outputs=True)
  out = evaluate(sx, sy, qx, qy, tf.constant(0.0))
  assert out['loss'].shape == (1, 2) and out['metric'].shape == (1, 2)
  assert out['outputs'].shape == (1, 2, 6, 3) and out['instance_accuracy'].shape == (3, 2)
  np.testing.assert_array_equal(out['instance_accuracy'].numpy()[-1], out['metric'].numpy()[0])
  np.testing.assert_allclose(out['metric'].numpy()[0], 100 * np.mean(
      out['outputs'].numpy()[0].argmax(-1) == qy.numpy().argmax(-1), -1), rtol=1e-6)
  # each query is one step from the support sequence's end: alone, it gets the same logits
  alone = learner.predict(sx, sy, qx[:, 3:4])[0].numpy()
  np.testing.assert_allclose(alone[:, 0], out['outputs'].numpy()[0, :, 3], rtol=1e-5, atol=1e-6)
  again = evaluate(sx, sy, qx, qy, tf.constant(5.0))          # lr is ignored
  np.testing.assert_array_equal(again['metric'].numpy(), out['metric'].numpy())
  with pytest.raises(ValueError, match='no fine-tuning steps'):
    learner.make_eval_step(1)


def test_support_order_does_not_change_the_prediction():
  learner = MANNLearner(network())
  sx, sy, qx, _ = episode(tasks=1, k=2)
  perm = [3, 0, 5, 1, 4, 2]
  a = learner.predict(sx, sy, qx)[0].numpy()
  b = learner.predict(tf.gather(sx, perm, axis=1), tf.gather(sy, perm, axis=1), qx)[0].numpy()
  np.testing.assert_array_equal(a, b)                       # shown in sequence_order either way


@pytest.mark.parametrize('memory', [True, False])
def test_training_steps_lower_the_sequence_loss(memory):
  learner = MANNLearner(network(memory))
  ep = episode(tasks=2, k=1, q=3)
  step = learner.make_train_step(keras.optimizers.Adam(3e-3))
  first = step(*ep)['loss'].numpy()
  for _ in range(5):
    last = step(*ep)['loss'].numpy()
  assert last < first
  with pytest.raises(ValueError, match='one update per call'):
    learner.make_train_step(keras.optimizers.Adam(), steps_per_call=2)


# --- the method and its rows ----------------------------------------------------------------------

def test_rows_follow_the_paper_and_the_reimplementations():
  rows = experiments.METHOD_ROWS['mann']
  assert rows == ('omniglot_5way_1shot_mann', 'omniglot_5way_1shot_mann_lstm')
  for row in rows:
    cfg = experiments.get(row)
    assert (cfg.meta_batch_size, cfg.meta_lr, cfg.metatrain_iterations) == (16, 1e-4, 100_000)
    assert cfg.num_classes * (cfg.update_batch_size + cfg.train_query_size) == 50
    assert (cfg.mann_units, cfg.mann_slots, cfg.mann_slot_width, cfg.mann_reads,
            cfg.mann_gamma) == (200, 128, 40, 4, 0.95)
    assert cfg.eval_shots == (1, 5, 10) and 'unverified' in cfg.source
    assert not methods.get(cfg).inner_loop
  assert [p.value for p in experiments.get(rows[0]).published] == [82.8, 94.9]
  assert [p.value for p in experiments.get(rows[1]).published] == [49.5, 63.6]
  assert experiments.MANN_SANTORO_TABLE1[rows[0]][1::3] == (82.8, 94.9)
  assert experiments.MANN_SANTORO_TABLE1[rows[1]][1::3] == (49.5, 63.6)
  assert [methods.get(experiments.get(r)).label() for r in rows] == ['MANN',
                                                                     "LSTM (MANN's baseline)"]
  assert rows[0] in experiments.COMPARE_ROWS['omniglot']
  # The LSTM's kernel reads [x (28*28), y_{t-1} (5), r (4*40)]; the heads emit 4 x (40 + 40 + 1).
  lstm = (28 * 28 + 5 + 160) * 800 + 200 * 800 + 800
  sizes = [methods.get(experiments.get(r)).build_model().count_params() for r in rows]
  assert sizes == [lstm + 200 * 324 + 324 + 360 * 5 + 5, lstm - 160 * 800 + 200 * 5 + 5]


@pytest.mark.parametrize('changes,match', [
    (dict(report_step=1, test_num_updates=1), 'test_num_updates and report_step must be 0'),
    (dict(mann_reads=200), 'must not exceed mann_slots'),
    (dict(mann_gamma=1.5), r'must lie in \[0, 1\]'),
    (dict(steps_per_call=2), 'steps_per_call=2 must be 1'),
    (dict(meta_grad_clip=1.0), 'meta_grad_clip=1.0 and min_meta_lr must be None'),
    (dict(mann_units=0), 'mann_units=0 must be at least 1'),
])
def test_invalid_mann_rows_raise(changes, match):
  with pytest.raises(ConfigError, match=match):
    experiments.get(ROW).replace(**changes)


def test_mann_options_belong_to_mann_rows():
  with pytest.raises(ConfigError, match='mann_memory=False is for MANN rows only'):
    experiments.get('omniglot_5way_1shot_protonet').replace(mann_memory=False)


def test_a_resumed_run_continues_exactly_and_evaluation_keeps_the_instance_accuracy(
    sources, tmp_path, monkeypatch):
  """Theta and Adam's state come back: 2 + 2 iterations equal 4. The result file holds the accuracy
  at each presentation (K = 2: the 1st and 2nd on the support sequence, the 3rd on the queries)."""
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  cfg = experiments.get(ROW).replace(
      data_dir=sources['omniglot'], mann_units=8, mann_slots=8, mann_slot_width=4, mann_reads=2,
      query_size=2, meta_batch_size=2, val_every=0, metatrain_iterations=4, checkpoint_every=2,
      print_every=2, summary_every=2, eval_shots=(2,), num_test_tasks=4, eval_chunk=2)
  a, b = method_runs.train_straight_and_resumed(cfg, tmp_path)
  assert len(a.learner.variables) == 7                      # LSTM 3, heads 2, output 2
  for x, y in zip(a.learner.variables, b.learner.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
  (result,) = trainer.evaluate(cfg, str(tmp_path / 'a'))
  extra = result['extra_metrics']['instance_accuracy']
  assert len(extra['mean']) == len(extra['ci95']) == 3
  assert extra['mean'][-1] == pytest.approx(result['mean'][0])
