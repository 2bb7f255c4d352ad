"""RL returns, baseline and advantages (rl/sampling.py) against numpy."""

import numpy as np

import rl.sampling


def test_discounted_returns():
  rewards = np.array([[1.0, 2.0, 3.0]])
  np.testing.assert_allclose(rl.sampling.discounted_returns(rewards, 0.5),
                             [[1 + 0.5 * 2 + 0.25 * 3, 2 + 1.5, 3]])


def test_linear_baseline_is_the_ridge_least_squares_fit_on_valid_steps():
  rng = np.random.default_rng(1)
  obs, returns = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 5))
  mask = np.ones((3, 5))
  mask[0, 3:] = 0
  fitted = rl.sampling.fit_linear_baseline(obs, returns, mask, reg=1e-5)
  features = rl.sampling.baseline_features(obs)
  valid = mask.astype(bool)
  f = features[valid]
  coef = np.linalg.solve(f.T @ f + 1e-5 * np.eye(f.shape[1]), f.T @ returns[valid])
  np.testing.assert_allclose(fitted, features @ coef, rtol=1e-9)
  assert features.shape == (3, 5, 2 * 2 + 4)
  np.testing.assert_allclose(features[0, 2, 4:], [0.02, 0.02 ** 2, 0.02 ** 3, 1])


def test_advantages_are_returns_minus_baseline_standardized_per_task():
  rng = np.random.default_rng(2)
  obs, rewards = rng.normal(size=(2, 4, 6, 2)), rng.normal(size=(2, 4, 6))
  mask = np.ones((2, 4, 6))
  mask[1, 0, 4:] = 0
  adv = rl.sampling.advantages(obs, rewards, mask, gamma=0.99)
  for i in range(2):
    valid = mask[i].astype(bool)
    assert abs(adv[i][valid].mean()) < 1e-5 and abs(adv[i][valid].std() - 1) < 1e-4
  assert np.all(adv[1, 0, 4:] == 0)
  returns = rl.sampling.discounted_returns(rewards[0], 0.99)
  raw = returns - rl.sampling.fit_linear_baseline(obs[0], returns, mask[0])
  np.testing.assert_allclose(adv[0], (raw - raw.mean()) / (raw.std() + 1e-8), rtol=1e-4, atol=1e-5)
