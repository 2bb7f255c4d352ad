"""The RL policy (rl/policy.py): its log-likelihood, KL and entropy against closed forms."""

import math

import numpy as np
import tensorflow as tf

import rl.policy


def gaussian_outputs(rng, shape, act_dim):
  return tf.constant(np.concatenate([rng.normal(size=shape + (act_dim,)),
                                     0.3 * rng.normal(size=shape + (act_dim,))], -1))


def test_log_prob_kl_and_entropy_match_closed_forms():
  rng = np.random.default_rng(0)
  old, new = gaussian_outputs(rng, (4,), 3), gaussian_outputs(rng, (4,), 3)
  actions = tf.constant(rng.normal(size=(4, 3)))
  mean, log_std = old.numpy()[:, :3], old.numpy()[:, 3:]
  std = np.exp(log_std)
  want = np.sum(-0.5 * ((actions.numpy() - mean) / std) ** 2 - np.log(std * math.sqrt(2 * math.pi)), -1)
  np.testing.assert_allclose(rl.policy.log_prob(old, actions).numpy(), want, rtol=1e-12)
  m1, s1 = new.numpy()[:, :3], np.exp(new.numpy()[:, 3:])
  kl = np.sum(np.log(s1 / std) + (std ** 2 + (mean - m1) ** 2) / (2 * s1 ** 2) - 0.5, -1)
  np.testing.assert_allclose(rl.policy.kl_divergence(old, new).numpy(), kl, rtol=1e-12)
  np.testing.assert_allclose(rl.policy.kl_divergence(old, old).numpy(), 0, atol=1e-12)
  np.testing.assert_allclose(rl.policy.entropy(old).numpy(),
                             np.sum(np.log(std) + 0.5 * np.log(2 * math.pi * math.e), -1), rtol=1e-12)
