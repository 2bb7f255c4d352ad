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
