"""Task families of the paper's reinforcement-learning experiments (Fig. 5), batched over environments.

`make_env(name, oracle)` returns a `TaskEnvs`: B environments grouped by task (env i runs task
i // per_task), stepped together with policy-space actions [B, act_dim]. The settings follow the original code
(cbfinn/maml_rl: maml_examples/point_env_randgoal*.py, rllab/envs/mujoco/{half_cheetah,ant}_env_*.py):

| name        | obs (+oracle) | env action | reward per step                          | horizon | task              |
|-------------|---------------|------------|------------------------------------------|---------|-------------------|
| navigation  | 2 (+2 goal)   | 2, +-0.1   | -||s' - g||_2; done if |dx|,|dy| < 0.01  | 100     | g ~ U[-.5, .5]^2  |
| cheetah_vel | 20 (+1 v)     | 6, +-1     | -|v_x - v| - 0.05 ||a||^2                | 200     | v ~ U[0, 2]       |
| cheetah_dir | 20 (+1 d)     | 6, +-1     | d v_x - 0.05 ||a||^2                     | 200     | d = -1 if u < 1   |
| ant_vel     | 125 (+1 v)    | 8, +-150   | -|v_x - v| + 1 + 0.05 - ctrl - contact   | 200     | v ~ U[0, 3]       |
| ant_dir     | 125 (+1 d)    | 8, +-150   | d v_x + 0.05 - ctrl - contact            | 200     | d = -1 if u < 1.5 |

For the direction tasks u ~ U[0, 2] (cheetah) or U[0, 3] (ant) and d = +1 otherwise, so d = +-1 with probability
1/2 each.

Ant: ctrl = 0.005 ||a / 150||^2, contact = 5e-4 ||clip(cfrc_ext, -1, 1)||^2, and an env terminates when the torso
height qpos[2] leaves [0.2, 1.0] or the state (qpos, qvel) is not finite. Cheetah never terminates. v_x is the x
velocity of the torso's subtree centre of mass (rllab's `get_body_comvel("torso")`).

Policy actions are clipped to [-1, 1] and mapped linearly onto the env's action bounds (rllab's `normalize`).
Observations are qpos[1:] (8) + qvel (9) + torso subtree COM (3) for the cheetah, and qpos (15, with x, y)
+ qvel (14) + clip(cfrc_ext of all 14 bodies, -1, 1) (84) + torso xmat (9) + torso subtree COM (3) for the ant.
MuJoCo resets draw qpos + N(0, 0.01^2) and qvel + N(0, 0.1^2) around rllab's initial pose.

The MuJoCo families subclass gymnasium's v5 `HalfCheetahEnv` / `AntEnv` (overriding `_get_rew`, `_get_obs`,
`reset_model` and the simulation step) and keep one persistent env object per slot, re-tasked with `set_task`. The
batch is stepped in a plain Python loop that only advances the physics and reads the observations (an
AsyncVectorEnv is 5-10x slower on 2 cores, and gymnasium's per-env `step` bookkeeping costs more than the
HalfCheetah physics); rewards and terminations are then computed for the whole batch with the formulas that
the envs' own `step` uses. With `workers` > 1 the slots are split into contiguous ranges, each stepped by
a worker process (rl/pool.py); any number of workers gives the same trajectories.

Remaining differences to rllab (cbfinn/maml_rl):
- Simulator: MuJoCo 4.0 through gymnasium 1.4 instead of MuJoCo 1.31 through rllab's mujoco_py. The models and
  time steps are the same, but the constraint solver, contact model and integrator details changed between these
  versions (for example, MuJoCo 4's Euler integrator treats joint damping implicitly by default, which matters
  for the cheetah; 1.31's explicit form, mjDSBL_EULERDAMP, moves the random policy's Fig. 5 returns further
  from the published ones, docs/rl.md), so trajectories are not bit-identical and returns can differ.
- HalfCheetah uses gymnasium's half_cheetah.xml, which equals rllab's apart from an added tracking camera (timestep
  0.01, frame_skip 1). Its `settotalmass` attribute is deprecated in MuJoCo 4 (same masses); the compiler warning
  is dropped while an env is built, so it neither reaches stderr nor MUJOCO_LOG.TXT.
- Ant uses rllab's ant.xml, kept in assets/ant.xml (timestep 0.02 RK4, frame_skip 1, ctrl +-150 with gear 1, solimp
  .8 .8 .01), not gymnasium's (timestep 0.01, ctrl +-1 with gear 150, default solimp).
- After each step we recompute the derived quantities of the new state (rllab's `model.forward()`) so that
  observations and rewards see it: for the ant mj_forward and then mj_rnePostConstraint, which fills cfrc_ext
  (MuJoCo >= 2.0 no longer computes it inside mj_forward, openai/gym#1541, while rllab's MuJoCo 1.31 did); for
  the cheetah only mj_forward's position and velocity stages, which give the same numbers.
- v_x is MuJoCo's `subtree_linvel` of the torso (the mass-weighted mean of the bodies' COM velocities). rllab
  summed `mj_objectVelocity(mjOBJ_BODY)` momenta itself, which is the same quantity provided that MuJoCo 1.31
  measured body velocities at the body COM, as current MuJoCo does (not verified on 1.31). gymnasium's own `x_velocity`
  (finite difference of the root position) stays in `info` but is not used in the reward.
- Random numbers: every env slot has its own numpy Generator seeded from (seed, slot) at `reset(seed)`, instead
  of rllab's global `np.random`; the noise distributions are the same.
- Episode end: an env that is done stays frozen (its obs stays the same, later rewards are 0) until the next
  reset, where rllab's sampler cut the path; the sampler masks these steps. The horizon is not signalled through
  `done`; the sampler runs `horizon` steps.
- Direction tasks are given as the direction d = +-1 itself (sample_tasks draws u ~ U[0, 2 thr] and thresholds it
  as rllab did), where rllab passed u through `reset_args`. The dir oracle appends d, as rllab's oracle envs did
  (rllab's HalfCheetahEnvDirecOracle thresholded an explicit reset_args at 0.4 in an early version and at
  1.0 in cbfinn/maml_rl 9c8e2eb, and drew d = +-1 with probability 1/2 each without one; here every dir env
  uses the split of the table; docs/rl.md).
- Observations and rewards are float32 (computed in float64); rllab returned float64.
- rllab's Ant contact cost had a trailing comma that made the reward a 1-element array; the value is the same.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import weakref

import numpy as np

from config import ConfigError
from rl import pool

try:
  import mujoco
  from gymnasium import utils as gym_utils
  from gymnasium.envs.mujoco import ant_v5, half_cheetah_v5
  from gymnasium.spaces import Box
  _CheetahBase, _AntBase = half_cheetah_v5.HalfCheetahEnv, ant_v5.AntEnv
  MUJOCO_IMPORT_ERROR = None
except ImportError as e:  # navigation still works without gymnasium / mujoco
  mujoco = None
  _CheetahBase = _AntBase = object
  MUJOCO_IMPORT_ERROR = e

ENV_NAMES = ('navigation', 'cheetah_vel', 'cheetah_dir', 'ant_vel', 'ant_dir')


def policy_to_env_action(actions: np.ndarray, low, high) -> np.ndarray:
  """rllab's normalize(): policy actions [..., d] clipped to [-1, 1], mapped linearly onto [low, high].

  Returns float64 env actions [..., d].
  """
  a = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
  low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
  return low + (a + 1.0) * 0.5 * (high - low)


class TaskEnvs:
  """B environments grouped by task. Subclasses set the attributes below and implement the four methods.

  name, obs_dim, act_dim, task_dim, horizon, oracle (task appended to the observation), dt (simulated seconds per
  step; 1 for navigation). After `set_tasks`, `env_tasks` is [B, task_dim] float64, the task of every env.
  """
  name: str
  obs_dim: int
  act_dim: int
  task_dim: int
  horizon: int
  oracle: bool
  dt: float

  def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
    """Draws tasks from the training distribution: [num_tasks, task_dim] float64."""
    raise NotImplementedError

  def set_tasks(self, tasks: np.ndarray, per_task: int) -> None:
    """tasks [T, task_dim] (or [T] when task_dim is 1); B = T * per_task and env i gets tasks[i // per_task]."""
    raise NotImplementedError

  def reset(self, seed: int) -> np.ndarray:
    """Resets all B envs; returns obs [B, obs_dim] float32. The same seed gives the same obs."""
    raise NotImplementedError

  def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """actions [B, act_dim] in policy space. Returns obs [B, obs_dim] float32, reward [B] float32, done [B] bool.

    Once an env is done it stays done: later rewards are 0 and its obs stays the same.
    """
    raise NotImplementedError

  @property
  def batch_size(self) -> int:
    """B, the number of envs set by the last `set_tasks` (0 before)."""
    return len(getattr(self, 'env_tasks', ()))

  def _tasks_per_env(self, tasks, per_task: int) -> np.ndarray:
    tasks = np.asarray(tasks, np.float64).reshape(len(tasks), self.task_dim)
    if per_task < 1 or len(tasks) < 1:
      raise ValueError(f'need at least one task and per_task >= 1, got {len(tasks)} and {per_task}')
    return np.repeat(tasks, per_task, axis=0)


class NavigationEnvs(TaskEnvs):
  """2D point navigation (rllab PointEnvRandGoal), numpy-vectorised over B envs.

  State = position [B, 2], starting at (0, 0); next state = s + a with the action (a velocity) in +-0.1;
  reward = -||s' - goal||_2; an env is done when |dx| < 0.01 and |dy| < 0.01. The observation is the position
  (+ the goal for the oracle).
  """
  GOAL_RANGE = (-0.5, 0.5)
  ACTION_BOUND = 0.1
  DONE_TOL = 0.01

  def __init__(self, oracle: bool = False):
    self.name, self.oracle = 'navigation', oracle
    self.obs_dim, self.act_dim, self.task_dim = 2 + 2 * oracle, 2, 2
    self.horizon, self.dt = 100, 1.0
    self.env_tasks = np.zeros((0, 2))
    self._pos = self._done = None

  def sample_tasks(self, num_tasks, rng):
    return rng.uniform(*self.GOAL_RANGE, size=(num_tasks, 2))

  def set_tasks(self, tasks, per_task):
    self.env_tasks = self._tasks_per_env(tasks, per_task)
    self._pos = self._done = None

  def reset(self, seed):
    """Every env starts at (0, 0), so `seed` changes nothing; it is taken for the common interface."""
    del seed
    b = self.batch_size
    if b == 0:
      raise RuntimeError('call set_tasks before reset')
    self._pos = np.zeros((b, 2))
    self._done = np.zeros(b, bool)
    return self._obs()

  def step(self, actions):
    if self._pos is None:
      raise RuntimeError('call reset before step')
    actions = np.asarray(actions)
    if actions.shape != (self.batch_size, self.act_dim):
      raise ValueError(f'actions must be [{self.batch_size}, {self.act_dim}], got {actions.shape}')
    live = ~self._done
    a = policy_to_env_action(actions, -self.ACTION_BOUND, self.ACTION_BOUND)
    self._pos = np.where(live[:, None], self._pos + a, self._pos)
    delta = self._pos - self.env_tasks
    reward = np.where(live, -np.sqrt(np.sum(np.square(delta), -1)), 0.0)
    self._done = self._done | (live & np.all(np.abs(delta) < self.DONE_TOL, -1))
    return self._obs(), reward.astype(np.float32), self._done.copy()

  def _obs(self):
    obs = np.concatenate([self._pos, self.env_tasks], -1) if self.oracle else self._pos
    return obs.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# MuJoCo families.

# rllab's vendor/mujoco_models/ant.xml (MIT licence), unchanged apart from formatting: the text AntTask compiles.
ANT_XML_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets', 'ant.xml')
RLLAB_ANT_XML = pathlib.Path(ANT_XML_PATH).read_text(encoding='utf-8')


@contextlib.contextmanager
def _quiet_settotalmass():
  """Drops MuJoCo 4's 'settotalmass is deprecated' compiler warning (harmless; half_cheetah.xml uses it).

  MuJoCo's default handler would print it to stderr and append it to MUJOCO_LOG.TXT in the working directory
  once per env construction. Other warnings still go to stderr. The previous handler is restored afterwards.
  """
  previous = mujoco.get_mju_user_warning()

  def handler(message):
    if 'settotalmass' not in message:
      print(f'WARNING (MuJoCo): {message}', file=sys.stderr)

  mujoco.set_mju_user_warning(handler)
  try:
    yield
  finally:
    mujoco.set_mju_user_warning(previous)


def _forward(kind: str, task: np.ndarray, v: np.ndarray) -> np.ndarray:
  """The task reward [B]: -|v_x - v_goal| ('vel') or d v_x ('dir'), from task [B] and v_x [B]."""
  return -np.abs(v - task) if kind == 'vel' else task * v


class _RllabMixin:
  """What rllab's MujocoEnv did differently from gymnasium's: initial pose, reset noise, derived quantities.

  Expects `self.kind` ('vel' or 'dir') and `self.task` (v_goal, or the direction +-1).
  """
  QPOS_NOISE, QVEL_NOISE = 0.01, 0.1

  def _rllab_init(self):
    self._torso = self.model.body('torso').id
    for i in range(self.model.nnumeric):  # rllab takes the initial pose from the XML's <numeric name="init_qpos">
      if self.model.numeric(i).name == 'init_qpos':
        self.init_qpos = np.array(self.model.numeric(i).data, np.float64)
    self.observation_space = Box(-np.inf, np.inf, (len(self._get_obs()),), np.float64)

  def set_task(self, task: float) -> None:
    """v_goal for 'vel', the direction +-1 for 'dir'; takes effect from the next step."""
    task = float(task)
    if self.kind == 'dir' and abs(task) != 1.0:
      raise ValueError(f'a direction task must be -1 or +1, got {task}')
    self.task = task

  def com_x_velocity(self) -> float:
    """x velocity of the torso's subtree centre of mass (rllab's get_body_comvel('torso')[0])."""
    return float(self.data.subtree_linvel[self._torso, 0])

  def _get_rew(self, x_velocity, action):
    """gymnasium's single-env `step` pays the reward of the batched path (`batch_rewards`)."""
    del x_velocity  # gymnasium's finite difference of the root position; rllab used the COM velocity
    v = self.com_x_velocity()
    reward = self.batch_rewards(self.kind, np.array([self.task]), np.array([v]),
                                np.asarray(action, np.float64)[None], self._get_obs()[None])
    return float(reward[0]), {'com_x_velocity': v}

  def advance(self, env_action: np.ndarray) -> None:
    """One simulation step of rllab's env with the env action [act_dim] (env.step without gymnasium's
    per-step bookkeeping, which costs more than the physics; MujocoTaskEnvs.step uses this)."""
    self._step_mujoco_simulation(env_action, self.frame_skip)

  def reset_model(self):
    qpos = self.init_qpos + self.QPOS_NOISE * self.np_random.standard_normal(self.model.nq)
    qvel = self.init_qvel + self.QVEL_NOISE * self.np_random.standard_normal(self.model.nv)
    self.set_state(qpos, qvel)  # runs mj_forward
    self._post_forward()
    return self._get_obs()

  def _post_forward(self):
    mujoco.mj_subtreeVel(self.model, self.data)

  def _derive(self):
    """rllab's model.forward() after a step: the derived quantities of the new state."""
    mujoco.mj_forward(self.model, self.data)
    self._post_forward()

  def _step_mujoco_simulation(self, ctrl, n_frames):
    self.data.ctrl[:] = ctrl
    mujoco.mj_step(self.model, self.data, nstep=n_frames)
    self._derive()


class HalfCheetahTask(_RllabMixin, _CheetahBase):
  """rllab's HalfCheetahEnvRand ('vel') / HalfCheetahEnvRandDirec ('dir') on gymnasium's HalfCheetah-v5.

  dt 0.01 (frame_skip 1); obs (20) = qpos[1:] (8) + qvel (9) + torso subtree COM (3); actions +-1 (6);
  reward = forward - 0.05 ||a||^2 with forward = -|v_x - v_goal| ('vel') or d v_x ('dir'). Never terminates.
  """
  CTRL_COST = 0.05

  def __init__(self, kind: str = 'vel', task: float | None = None):
    if kind not in ('vel', 'dir'):
      raise ValueError(f'kind must be vel or dir, got {kind!r}')
    self.kind, self.task = kind, 0.0
    with _quiet_settotalmass():
      super().__init__(frame_skip=1, ctrl_cost_weight=self.CTRL_COST, reset_noise_scale=0.0)
    gym_utils.EzPickle.__init__(self, kind, task)  # pickles as this class, not the parent
    self._rllab_init()
    self.set_task((0.0 if kind == 'vel' else 1.0) if task is None else task)

  def _derive(self):
    """The cheetah's observation and reward read only positions and velocities (subtree COM and its
    velocity), so mj_forward's position and velocity stages suffice: its constraint solve, most of
    its cost, is done again by the next mj_step from the same state and warm start anyway. The
    trajectories are bit-identical (tests/rl/test_envs.py) and a batched step costs ~20% less."""
    mujoco.mj_kinematics(self.model, self.data)
    mujoco.mj_comPos(self.model, self.data)
    mujoco.mj_comVel(self.model, self.data)
    self._post_forward()

  def _get_obs(self):
    d = self.data
    return np.concatenate([d.qpos[1:], d.qvel, d.subtree_com[self._torso]])

  @classmethod
  def batch_rewards(cls, kind, task, v, action, obs):
    """Rewards [B] of B envs from task [B], v_x [B], env actions [B, 6] and float64 obs [B, 20]."""
    del obs
    return _forward(kind, task, v) - cls.CTRL_COST * np.sum(np.square(action), -1)

  @classmethod
  def batch_terminated(cls, obs):
    """The cheetah never terminates: [B] False."""
    return np.zeros(len(obs), bool)


class AntTask(_RllabMixin, _AntBase):
  """rllab's AntEnvRand ('vel') / AntEnvRandDirec ('dir') on gymnasium's Ant-v5 with rllab's ant.xml.

  dt 0.02 (timestep 0.02 RK4, frame_skip 1); obs (125) = qpos (15) + qvel (14) + clip(cfrc_ext, -1, 1) (14 x 6)
  + torso xmat (9) + torso subtree COM (3); actions +-150 (8). reward = forward + 0.05 - 0.005 ||a/150||^2
  - 5e-4 ||clip(cfrc_ext, -1, 1)||^2 with forward = -|v_x - v_goal| + 1 ('vel') or d v_x ('dir').
  Terminates when qpos[2] is not in [0.2, 1.0] or the state is not finite.
  """
  CTRL_COST, CONTACT_COST, SURVIVE, VEL_BONUS = 0.005, 5e-4, 0.05, 1.0
  ACTION_BOUND, HEALTHY_Z = 150.0, (0.2, 1.0)
  CFRC = slice(29, 29 + 84)  # where clip(cfrc_ext) lies in the observation

  def __init__(self, kind: str = 'vel', task: float | None = None):
    if kind not in ('vel', 'dir'):
      raise ValueError(f'kind must be vel or dir, got {kind!r}')
    self.kind, self.task = kind, 0.0
    super().__init__(frame_skip=1, ctrl_cost_weight=self.CTRL_COST, contact_cost_weight=self.CONTACT_COST,
                     healthy_reward=self.SURVIVE, terminate_when_unhealthy=True, healthy_z_range=self.HEALTHY_Z,
                     contact_force_range=(-1.0, 1.0), reset_noise_scale=0.0,
                     exclude_current_positions_from_observation=False, include_cfrc_ext_in_observation=True)
    gym_utils.EzPickle.__init__(self, kind, task)  # pickles as this class, not the parent
    self.fullpath = ANT_XML_PATH
    self._rk4 = self.model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4  # as rllab's ant.xml sets
    self._rllab_init()
    self.set_task((0.0 if kind == 'vel' else 1.0) if task is None else task)

  def _initialize_simulation(self):
    model = mujoco.MjModel.from_xml_string(RLLAB_ANT_XML)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
    return model, mujoco.MjData(model)

  def _post_forward(self):
    mujoco.mj_rnePostConstraint(self.model, self.data)  # cfrc_ext (MuJoCo >= 2 no longer fills it in forward)
    mujoco.mj_subtreeVel(self.model, self.data)

  def _step_mujoco_simulation(self, ctrl, n_frames):
    """mj_step without redoing what the last full mj_forward (`_derive`'s, or reset's) did on this state.

    mj_step = check position and velocity, mj_forward, check acceleration, integrate. Only the acceleration
    stage of mj_forward reads ctrl, so on the first frame its position and velocity stages (collisions,
    inertia, factorization: ~2/3 of its cost) are reused. Trajectories are bit-identical (tests/rl/test_envs.py);
    the physics call costs ~10% less (RK4 runs four forward passes, `_derive` a fifth), a batched step of
    800 ants with 2 workers ~6% less CPU."""
    m, d = self.model, self.data
    d.ctrl[:] = ctrl
    time = d.time
    mujoco.mj_checkPos(m, d)  # these reset a non-finite state, and its time to 0: then nothing can be reused
    mujoco.mj_checkVel(m, d)
    if time == 0.0 or d.time != time or not self._rk4:
      mujoco.mj_step(m, d, nstep=n_frames)
    else:
      mujoco.mj_forwardSkip(m, d, mujoco.mjtStage.mjSTAGE_VEL, 0)
      mujoco.mj_checkAcc(m, d)
      mujoco.mj_RungeKutta(m, d, 4)
      if n_frames > 1:
        mujoco.mj_step(m, d, nstep=n_frames - 1)
    self._derive()

  def _get_obs(self):
    d = self.data
    return np.concatenate([d.qpos, d.qvel, np.clip(d.cfrc_ext, -1.0, 1.0).ravel(), d.xmat[self._torso],
                           d.subtree_com[self._torso]])

  @classmethod
  def batch_rewards(cls, kind, task, v, action, obs):
    """Rewards [B] of B envs from task [B], v_x [B], env actions [B, 8] and float64 obs [B, 125]."""
    forward = _forward(kind, task, v) + (cls.VEL_BONUS if kind == 'vel' else 0.0)
    ctrl = cls.CTRL_COST * np.sum(np.square(action / cls.ACTION_BOUND), -1)
    contact = cls.CONTACT_COST * np.sum(np.square(obs[:, cls.CFRC]), -1)  # obs holds clip(cfrc_ext, -1, 1)
    return forward + cls.SURVIVE - ctrl - contact  # rllab pays the survive bonus on every step

  @classmethod
  def batch_terminated(cls, obs):
    """[B]: the torso height qpos[2] is outside HEALTHY_Z or the state (qpos, qvel) is not finite."""
    low, high = cls.HEALTHY_Z
    state = obs[:, :cls.CFRC.start]
    return ~(np.isfinite(state).all(-1) & (low <= state[:, 2]) & (state[:, 2] <= high))


class MujocoTaskEnvs(TaskEnvs):
  """B persistent gymnasium envs (one per slot), stepped in a Python loop; see the module docstring.

  The loop only advances the physics and reads the observations; rewards and terminations are
  computed for all B envs at once (`batch_rewards`, `batch_terminated`), the same formulas as
  env.step. With workers > 1 the slots are split into that many contiguous ranges, each stepped by
  its own process (started once, kept until the object is collected): every env owns its MjData
  and random numbers, so any number of workers gives the same trajectories.

  `com_x_velocity` [B] holds the envs' v_x after the last step (NaN for envs done earlier); `envs`
  lists the B env objects when they live in this process (workers = 1).
  """
  # name -> (robot, kind, hi): tasks come from u ~ U[0, hi] (v_goal = u, or d = -1 if u < hi / 2 else +1)
  FAMILIES = {'cheetah_vel': ('cheetah', 'vel', 2.0), 'cheetah_dir': ('cheetah', 'dir', 2.0),
              'ant_vel': ('ant', 'vel', 3.0), 'ant_dir': ('ant', 'dir', 3.0)}

  def __init__(self, name: str, oracle: bool = False, workers: int = 1):
    if mujoco is None:
      raise ConfigError(f'{name} needs gymnasium[mujoco] and mujoco ({MUJOCO_IMPORT_ERROR}); run '
                        'pip install -r requirements.txt')
    if workers < 1:
      raise ValueError(f'workers must be at least 1, got {workers}')
    robot, self.kind, self.task_high = self.FAMILIES[name]
    self._cls = HalfCheetahTask if robot == 'cheetah' else AntTask
    self.name, self.oracle = name, oracle
    self._local = pool.Slots(self._cls, self.kind)
    self._local.set_tasks(np.ones(1))  # the probe env, kept for workers = 1
    probe = self._local.pool[0]
    self.act_dim, self.task_dim = probe.action_space.shape[0], 1
    self.obs_dim = probe.observation_space.shape[0] + oracle
    self.horizon, self.dt = 200, probe.dt
    self._low = probe.action_space.low.astype(np.float64)
    self._high = probe.action_space.high.astype(np.float64)
    self.env_tasks = np.zeros((0, 1))
    self.com_x_velocity = np.zeros(0)
    self._obs = self._done = None
    self._workers = [pool.Worker(self._cls, self.kind) for _ in range(workers)] if workers > 1 else []
    weakref.finalize(self, pool.Worker.stop, self._workers)
    self._ranges = []  # one slice of the B slots per worker in use (one in all for workers = 1)

  @property
  def envs(self) -> list:
    if self._workers:
      raise RuntimeError('the env objects live in the worker processes (workers > 1)')
    return self._local.pool[:self.batch_size]

  def _call(self, method: str, args: list) -> list:
    """Runs Slots.method(*args[k]) on range k, in parallel over the workers; their results."""
    if not self._workers:
      return [getattr(self._local, method)(*args[0])]
    for worker, a in zip(self._workers, args):
      worker.send(method, *a)
    results, error = [], None
    for worker in self._workers[:len(args)]:  # every answer is read, so none is left in a pipe
      try:
        results.append(worker.receive())
      except RuntimeError as e:
        error = error or e
    if error:
      raise error
    return results

  def sample_tasks(self, num_tasks, rng):
    """vel: v_goal ~ U[0, hi]. dir: u ~ U[0, hi], d = -1 if u < hi / 2 else +1 (rllab's split)."""
    u = rng.uniform(0.0, self.task_high, size=(num_tasks, 1))
    return u if self.kind == 'vel' else np.where(u < 0.5 * self.task_high, -1.0, 1.0)

  def set_tasks(self, tasks, per_task):
    env_tasks = self._tasks_per_env(tasks, per_task)
    if self.kind == 'dir' and not np.all(np.abs(env_tasks) == 1.0):
      raise ValueError('direction tasks must be -1 or +1 (see sample_tasks)')
    bounds = np.linspace(0, len(env_tasks), max(1, len(self._workers)) + 1).astype(int)
    self._ranges = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    self._call('set_tasks', [(env_tasks[r, 0],) for r in self._ranges])
    self.env_tasks = env_tasks
    self._obs = self._done = None

  def reset(self, seed):
    """Env i draws its reset noise from a Generator seeded with (seed, i)."""
    b = self.batch_size
    if b == 0:
      raise RuntimeError('call set_tasks before reset')
    obs = np.empty((b, self.obs_dim), np.float32)
    obs[:, :self.obs_dim - self.oracle] = np.concatenate(
        self._call('reset', [(seed, r.start) for r in self._ranges]))
    if self.oracle:
      obs[:, -1] = self.env_tasks[:, 0]
    self._obs, self._done = obs, np.zeros(b, bool)
    self.com_x_velocity = np.full(b, np.nan)
    return obs.copy()

  def step(self, actions):
    if self._obs is None:
      raise RuntimeError('call reset before step')
    actions = np.asarray(actions)
    if actions.shape != (self.batch_size, self.act_dim):
      raise ValueError(f'actions must be [{self.batch_size}, {self.act_dim}], got {actions.shape}')
    a_env = policy_to_env_action(actions, self._low, self._high)
    live = ~self._done
    n = self.obs_dim - self.oracle
    results = self._call('advance', [(a_env[r], live[r]) for r in self._ranges])
    raw = np.concatenate([r[0] for r in results])  # float64, as the reward terms are computed in
    v = np.concatenate([r[1] for r in results])
    reward = np.where(live, self._cls.batch_rewards(self.kind, self.env_tasks[:, 0], v, a_env, raw), 0.0)
    self._obs[live, :n] = raw[live]
    self._done |= live & self._cls.batch_terminated(raw)
    self.com_x_velocity = v
    return self._obs.copy(), reward.astype(np.float32), self._done.copy()


def make_env(name: str, oracle: bool = False, workers: int = 1) -> TaskEnvs:
  """One of ENV_NAMES; oracle=True appends the task (goal, v_goal or direction) to the observation.

  workers: processes that step the MuJoCo families' envs (speed only; navigation is one numpy op).
  """
  if name == 'navigation':
    return NavigationEnvs(oracle)
  if name in MujocoTaskEnvs.FAMILIES:
    return MujocoTaskEnvs(name, oracle, workers)
  raise ValueError(f'unknown env {name!r}; expected one of {ENV_NAMES}')
