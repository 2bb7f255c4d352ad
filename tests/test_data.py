"""Sinusoid episodes: shapes, ranges, the target function, seeding and resumable RNG state."""

import numpy as np
import pytest

import data_generator
from data_generator import SinusoidTasks
import experiments


def test_shapes_and_dtypes():
  ep = SinusoidTasks(0).sample(25, 10, 7)
  assert ep.support_x.shape == (25, 10, 1) and ep.support_y.shape == (25, 10, 1)
  assert ep.query_x.shape == (25, 7, 1) and ep.query_y.shape == (25, 7, 1)
  assert ep.task.shape == (25, 2)
  assert all(a.dtype == np.float32 for a in ep)


def test_ranges_and_target_function():
  ep = SinusoidTasks(1).sample(2000, 5, 5)
  amp, phase = ep.task[:, 0], ep.task[:, 1]
  assert 0.1 <= amp.min() and amp.max() <= 5.0 and amp.max() > 4.9 and amp.min() < 0.2
  assert 0.0 <= phase.min() and phase.max() <= np.pi and phase.max() > 3.1
  x = np.concatenate([ep.support_x, ep.query_x], 1)
  y = np.concatenate([ep.support_y, ep.query_y], 1)
  assert -5 <= x.min() and x.max() <= 5 and x.min() < -4.99
  np.testing.assert_allclose(y, amp[:, None, None] * np.sin(x - phase[:, None, None]), atol=1e-5)


def test_support_and_query_are_different_points_of_the_same_task():
  ep = SinusoidTasks(2).sample(10, 5, 5)
  assert not np.allclose(ep.support_x, ep.query_x)


def test_oracle_inputs_carry_amplitude_and_phase():
  ep = SinusoidTasks(3, oracle=True).sample(4, 5, 6)
  assert ep.support_x.shape == (4, 5, 3) and ep.query_x.shape == (4, 6, 3)
  np.testing.assert_allclose(ep.support_x[:, :, 1], np.repeat(ep.task[:, :1], 5, 1))
  np.testing.assert_allclose(ep.query_x[:, :, 2], np.repeat(ep.task[:, 1:], 6, 1))
  plain = SinusoidTasks(3).sample(4, 5, 6)  # same seed: the same tasks, minus the extra inputs
  np.testing.assert_array_equal(plain.support_x[..., 0], ep.support_x[..., 0])


def test_seeding():
  a, b, c = SinusoidTasks(7).sample(3, 5, 5), SinusoidTasks(7).sample(3, 5, 5), SinusoidTasks(8).sample(3, 5, 5)
  for x, y, z in zip(a, b, c):
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)


def test_state_round_trip_replays_the_stream():
  s = SinusoidTasks(5)
  s.sample(2, 3, 3)
  state = s.get_state()
  want = s.sample(2, 3, 3)
  other = SinusoidTasks(99)
  other.set_state(state)
  for x, y in zip(want, other.sample(2, 3, 3)):
    np.testing.assert_array_equal(x, y)


def test_grid_for_plots():
  s = SinusoidTasks(0)
  task = np.array([[2.0, 0.5], [1.0, 3.0]], np.float32)
  x, y = s.grid(task, num_points=50)
  assert x.shape == (2, 50, 1) and y.shape == (2, 50, 1)
  np.testing.assert_allclose(x[0, [0, -1], 0], [-5, 5])
  np.testing.assert_allclose(y[1, :, 0], 1.0 * np.sin(x[1, :, 0] - 3.0), atol=1e-6)


def test_evaluation_tasks_depend_on_eval_seed_and_k_only():
  cfg = experiments.get('sinusoid_maml')
  test = data_generator.make_sampler(cfg, 'test', 5).sample(3, 5, 5)
  other_seed = data_generator.make_sampler(cfg.replace(seed=123), 'test', 5).sample(3, 5, 5)
  val = data_generator.make_sampler(cfg, 'val', 5).sample(3, 5, 5)
  train = data_generator.make_sampler(cfg, 'train').sample(3, 5, 5)
  np.testing.assert_array_equal(test.support_x, other_seed.support_x)
  assert not np.array_equal(test.support_x, val.support_x)
  assert not np.array_equal(test.support_x, train.support_x)
  with pytest.raises(ValueError, match='unknown split'):
    data_generator.make_sampler(cfg, 'bogus')


def test_sample_tasks_is_independent_of_how_tasks_are_batched():
  cfg = experiments.get('sinusoid_maml')
  ten = data_generator.sample_tasks(data_generator.make_sampler(cfg, 'test', 5), 10, 5, 5)
  four = data_generator.sample_tasks(data_generator.make_sampler(cfg, 'test', 5), 4, 5, 5)
  for a, b in zip(ten, four):
    np.testing.assert_array_equal(a[:4], b)


# --- the training loop's episodes (data_generator.episode_stream) ---------------------------------

SIZES = (4, 5, 3)
CALLS = [(7, 7), (7, 1), (1, 1), (1, 3), (3, 7), (7, 0)]  # (count, the next call's count)


def _in_turn(sampler, count):
  """A call's episodes drawn when it starts, as the loop did before prefetching (one episode's
  fields, or the fields of `count` stacked)."""
  episodes = [tuple(sampler.sample(*SIZES)[:4]) for _ in range(count)]
  return episodes[0] if count == 1 else tuple(np.stack(f) for f in zip(*episodes))


def _assert_same(got, want):
  for g, w in zip(got, want, strict=True):
    assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape
    np.testing.assert_array_equal(g, w)


def _wait_for_the_worker(stream):
  """Lets the worker finish the episodes drawn ahead: the sampler's RNG is then past them."""
  stream._ahead[2].result()
  assert stream._sampler.get_state() != stream.get_state()


def test_prefetched_episodes_are_the_samplers_in_the_same_order():
  stream = data_generator.episode_stream(SinusoidTasks((0, 0)), SIZES)
  assert isinstance(stream, data_generator.Prefetched)
  reference = SinusoidTasks((0, 0))
  for count, then in CALLS:
    _assert_same(stream.next(count, then), _in_turn(reference, count))
  stream.close()


@pytest.mark.parametrize('stopped', [False, True], ids=['checkpoint_while_drawing_ahead',
                                                        'checkpoint_after_close'])
def test_a_resumed_stream_draws_the_episodes_drawn_ahead_again(tmp_path, stopped):
  """A checkpoint keeps the position after the episodes handed out, whether the worker has drawn
  the next call's (a periodic checkpoint, or a crash) or the loop stopped and closed the stream."""
  import tensorflow as tf
  reference = SinusoidTasks(3)
  want = [_in_turn(reference, count) for count, _ in CALLS]
  stream = data_generator.episode_stream(SinusoidTasks(3), SIZES)
  ckpt = tf.train.Checkpoint(data=stream.trackable())
  for count, then in CALLS[:3]:
    stream.next(count, then)
  _wait_for_the_worker(stream)
  if stopped:
    stream.close()
  path = ckpt.write(str(tmp_path / 'ckpt'))
  resumed = data_generator.episode_stream(SinusoidTasks(99), SIZES)
  tf.train.Checkpoint(data=resumed.trackable()).read(path).assert_consumed()
  for (count, then), w in zip(CALLS[3:], want[3:]):
    _assert_same(resumed.next(count, then), w)
  resumed.close()
  if not stopped:
    stream.close()


def test_a_stream_refuses_a_call_size_it_was_not_told_and_a_restore_while_drawing():
  stream = data_generator.episode_stream(SinusoidTasks(0), SIZES)
  stream.next(2, 3)
  with pytest.raises(ValueError, match='asked for 2 episodes; 3 were announced'):
    stream.next(2, 3)
  with pytest.raises(RuntimeError, match='restored before the first episodes'):
    stream.set_state(SinusoidTasks(1).get_state())
  stream.close()


def test_an_error_drawing_ahead_reaches_the_caller(monkeypatch):
  real = SinusoidTasks.sample
  calls = []

  def failing(self, *sizes):
    calls.append(1)
    if len(calls) == 4:
      raise FloatingPointError('episode 4')
    return real(self, *sizes)

  monkeypatch.setattr(SinusoidTasks, 'sample', failing)
  stream = data_generator.episode_stream(SinusoidTasks(0), SIZES)
  stream.next(2, 2)  # episodes 1-2; 3-4 are drawn on the worker
  with pytest.raises(FloatingPointError, match='episode 4'):
    stream.next(2, 0)
  after_two = SinusoidTasks(0)
  for _ in range(2):
    real(after_two, *SIZES)
  assert stream.get_state() == after_two.get_state()  # a checkpoint now resumes with episode 3
  stream.close()
  stream = data_generator.episode_stream(SinusoidTasks(0), SIZES)
  calls.clear()
  stream.next(2, 2)
  with pytest.raises(FloatingPointError, match='episode 4'):  # never used, still not swallowed
    stream.close()


def test_tf_data_samplers_are_read_in_turn():
  """Image samplers prefetch in their tf.data pipeline; their iterator keeps the position."""

  class Stream:
    def __init__(self):
      self.i = 0

    def sample(self, *sizes):
      self.i += 1
      return (np.full([2], self.i, np.float32),) * 4

    def trackable(self):
      return 'iterator'

  stream = data_generator.episode_stream(Stream(), SIZES)
  assert type(stream) is data_generator.Episodes and stream.trackable() == 'iterator'
  assert stream.next(1, 3)[0].tolist() == [1, 1]
  assert stream.next(3, 0)[0].tolist() == [[2, 2], [3, 3], [4, 4]]
  stream.close()
