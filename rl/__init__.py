"""MAML for reinforcement learning (paper §5.3, Fig. 5). The modules, in reading order:

  policy.py      the Gaussian MLP policy and its distribution (log-likelihood, KL, entropy)
  sampling.py    rollouts of every task's policy, rllab's linear baseline and advantages, MAML's (x, y)
  maml_trpo.py   the inner policy-gradient step (maml.MAML.adapt) and the TRPO meta-update: MamlTrpo
  envs.py        the task families (2D navigation, HalfCheetah, Ant), batched over environments
  pool.py        the worker processes that step the MuJoCo environments
  trainer.py     training and the Fig. 5 evaluation of an RL row (experiments.RLConfig)
  assets/        rllab's Ant model (ant.xml), which envs.py loads

Nothing is imported here: importing rl.envs and rl.pool (as an env worker process does) imports neither
TensorFlow nor the modules that use it.
"""
