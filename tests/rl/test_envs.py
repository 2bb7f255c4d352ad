"""RL task envs (rl/envs.py): shapes, rewards recomputed from the state, task slots, seeding, done rules."""

import hashlib
import pathlib

import numpy as np
import pytest

import rl.envs
from rl.envs import make_env

mujoco = rl.envs.mujoco
needs_mujoco = pytest.mark.skipif(
    mujoco is None, reason=f'gymnasium[mujoco] / mujoco not importable: {rl.envs.MUJOCO_IMPORT_ERROR}')
MUJOCO_NAMES = ('cheetah_vel', 'cheetah_dir', 'ant_vel', 'ant_dir')
# name -> (obs_dim without the task, act_dim, task_dim, horizon, env action bound)
SPECS = {'navigation': (2, 2, 2, 100, 0.1),
         'cheetah_vel': (20, 6, 1, 200, 1.0), 'cheetah_dir': (20, 6, 1, 200, 1.0),
         'ant_vel': (125, 8, 1, 200, 150.0), 'ant_dir': (125, 8, 1, 200, 150.0)}


def params(names):
  return [pytest.param(n, marks=needs_mujoco) if n != 'navigation' else n for n in names]


def ready(name, tasks, per_task, seed=0, oracle=False):
  env = make_env(name, oracle)
  env.set_tasks(np.asarray(tasks, np.float64), per_task)
  return env, env.reset(seed)


# ---------------------------------------------------------------------------------------------------------------
# All families.

@pytest.mark.parametrize('oracle', [False, True])
@pytest.mark.parametrize('name', params(rl.envs.ENV_NAMES))
def test_shapes_dtypes_and_oracle_inputs(name, oracle):
  obs_dim, act_dim, task_dim, horizon, _ = SPECS[name]
  env = make_env(name, oracle)
  assert (env.name, env.oracle, env.act_dim) == (name, oracle, act_dim)
  assert (env.task_dim, env.horizon) == (task_dim, horizon)
  assert env.obs_dim == obs_dim + oracle * task_dim
  tasks = env.sample_tasks(3, np.random.default_rng(0))
  assert tasks.shape == (3, task_dim) and tasks.dtype == np.float64
  env.set_tasks(tasks, 2)
  obs = env.reset(0)
  assert obs.shape == (6, env.obs_dim) and obs.dtype == np.float32
  np.testing.assert_array_equal(env.env_tasks, np.repeat(tasks, 2, 0))
  obs, reward, done = env.step(np.full((6, act_dim), 0.3, np.float32))
  assert obs.shape == (6, env.obs_dim) and obs.dtype == np.float32
  assert reward.shape == (6,) and reward.dtype == np.float32 and np.all(np.isfinite(reward))
  assert done.shape == (6,) and done.dtype == bool
  if oracle:
    np.testing.assert_array_equal(obs[:, obs_dim:], np.repeat(tasks, 2, 0).astype(np.float32))
  with pytest.raises(ValueError):
    env.step(np.zeros((5, act_dim)))


@pytest.mark.parametrize('name', params(rl.envs.ENV_NAMES))
def test_task_sampling_ranges(name):
  env = make_env(name)
  tasks = env.sample_tasks(4000, np.random.default_rng(1))
  if name == 'navigation':
    assert -0.5 <= tasks.min() < -0.49 and 0.49 < tasks.max() <= 0.5
  elif name.endswith('_vel'):
    high = 2.0 if name.startswith('cheetah') else 3.0
    assert 0.0 <= tasks.min() < 0.01 and high - 0.01 < tasks.max() <= high
  else:  # u ~ U[0, 2 thr], d = -1 if u < thr else +1 (rllab's split), so d = +-1 with probability 1/2 each
    high = 2.0 if name.startswith('cheetah') else 3.0
    u = np.random.default_rng(1).uniform(0.0, high, size=(4000, 1))
    np.testing.assert_array_equal(tasks, np.where(u < high / 2, -1.0, 1.0))
    assert set(np.unique(tasks)) == {-1.0, 1.0} and 0.47 < np.mean(tasks > 0) < 0.53


@pytest.mark.parametrize('name', params(rl.envs.ENV_NAMES))
def test_actions_are_clipped_and_scaled_onto_the_bounds(name):
  bound = SPECS[name][4]
  a = np.array([[-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 7.0, 0.1]])
  np.testing.assert_allclose(rl.envs.policy_to_env_action(a, -bound, bound),
                             bound * np.array([[-1, -1, -0.5, 0, 0.25, 1, 1, 0.1]]), rtol=1e-12, atol=1e-15)
  if name != 'navigation':
    env, _ = ready(name, [[1.0]], 1)
    np.testing.assert_array_equal(env.envs[0].action_space.low, -bound)
    np.testing.assert_array_equal(env.envs[0].action_space.high, bound)


@pytest.mark.parametrize('name', params(rl.envs.ENV_NAMES))
def test_two_tasks_give_different_rewards_for_identical_actions(name):
  """Swapping the tasks of two slots (same seed, same actions, so the same states) swaps which reward each gets."""
  env = make_env(name)
  tasks = np.array([[0.3, -0.2], [-0.4, 0.1]]) if name == 'navigation' else (
      np.array([[0.5], [1.5]]) if name.endswith('_vel') else np.array([[-1.0], [1.0]]))
  actions = np.random.default_rng(3).uniform(-1, 1, size=(5, 4, env.act_dim))
  rewards = []
  for order in ([0, 1], [1, 0]):
    env.set_tasks(tasks[order], 2)
    env.reset(7)
    rewards.append(np.array([env.step(a)[1] for a in actions]))
  a, b = rewards
  assert np.all(a != b)  # the same states and actions under the other task
  np.testing.assert_array_equal(env.env_tasks, np.repeat(tasks[[1, 0]], 2, 0))


# ---------------------------------------------------------------------------------------------------------------
# 2D navigation.

class PointEnvLoop:
  """A transcription of rllab's PointEnvRandGoal inside normalize(): one env, plain Python."""

  def __init__(self, goal):
    self.goal = np.asarray(goal, np.float64)

  def reset(self):
    self.state = np.zeros(2)
    return self.state.copy()

  def step(self, action):
    scaled = -0.1 + (np.asarray(action, np.float64) + 1.0) * 0.5 * 0.2  # normalize(): scale, then clip
    self.state = self.state + np.clip(scaled, -0.1, 0.1)
    x, y = self.state - self.goal
    return self.state.copy(), -(x ** 2 + y ** 2) ** 0.5, abs(x) < 0.01 and abs(y) < 0.01


def test_navigation_matches_a_per_env_loop_reference():
  rng = np.random.default_rng(4)
  env = make_env('navigation')
  goals = env.sample_tasks(4, rng)
  env.set_tasks(goals, 3)
  refs = [PointEnvLoop(g) for g in np.repeat(goals, 3, 0)]
  obs = env.reset(0)
  np.testing.assert_array_equal(obs, np.array([r.reset() for r in refs], np.float32))
  done_ref = np.zeros(12, bool)
  last = obs.astype(np.float64)
  for t in range(env.horizon):
    actions = rng.uniform(-1.5, 1.5, size=(12, 2))
    greedy = np.clip((env.env_tasks - obs) / 0.1, -1, 1)  # heads straight for the goal: half the envs finish
    actions[::2] = greedy[::2]
    obs, reward, done = env.step(actions)
    for i, ref in enumerate(refs):
      if done_ref[i]:  # rllab ends the path; here the env stays frozen with zero reward
        assert reward[i] == 0 and done[i]
        np.testing.assert_array_equal(obs[i], last[i].astype(np.float32))
        continue
      o, r, d = ref.step(actions[i])
      np.testing.assert_allclose(obs[i], o, atol=1e-7)
      np.testing.assert_allclose(reward[i], r, rtol=1e-6)
      assert done[i] == d
      done_ref[i], last[i] = d, o
  assert done_ref[::2].all() and not done_ref[1::2].any()


def test_navigation_reward_is_the_euclidean_distance_after_the_step():
  env, obs = ready('navigation', [[0.2, -0.3]], 2)
  np.testing.assert_array_equal(obs, 0)
  obs, reward, done = env.step(np.array([[0.5, 0.5], [-2.0, 1.0]]))  # -> (+0.05, +0.05) and (-0.1, +0.1)
  np.testing.assert_allclose(obs, [[0.05, 0.05], [-0.1, 0.1]], rtol=1e-6)
  want = -np.hypot(obs[:, 0].astype(np.float64) - 0.2, obs[:, 1].astype(np.float64) + 0.3)
  np.testing.assert_allclose(reward, want, rtol=1e-6)
  assert not done.any()


def test_navigation_done_rule_and_frozen_after_done():
  env, _ = ready('navigation', [[0.1, 0.0], [0.0, 0.0], [0.01, 0.0]], 1)
  # env 0 lands 0.009 away from its goal in x (done); env 1 moves 0.011 away in y from (0, 0) (not done);
  # env 2 stays at (0, 0), exactly 0.01 from its goal (not done: the rule is strict)
  obs, reward, done = env.step(np.array([[0.91, 0.0], [0.0, 0.11], [0.0, 0.0]]))
  np.testing.assert_allclose(obs, [[0.091, 0.0], [0.0, 0.011], [0.0, 0.0]], rtol=1e-6)
  np.testing.assert_array_equal(done, [True, False, False])
  np.testing.assert_allclose(reward, [-0.009, -0.011, -0.01], rtol=1e-6)
  frozen = obs[0].copy()
  obs, reward, done = env.step(np.array([[1.0, 1.0], [0.0, -0.11], [0.0, 0.0]]))
  np.testing.assert_array_equal(obs[0], frozen)
  assert reward[0] == 0 and done[0]
  assert done[1] and abs(reward[1]) < 1e-7  # back at (0, 0), its goal
  assert not done[2]


# ---------------------------------------------------------------------------------------------------------------
# MuJoCo families.

def com_x_velocity_from_jacobian(env):
  """x velocity of the torso subtree's COM from the COM Jacobian and qvel (independent of subtree_linvel)."""
  jacp = np.zeros((3, env.model.nv))
  mujoco.mj_jacSubtreeCom(env.model, env.data, jacp, env.model.body('torso').id)
  return float((jacp @ env.data.qvel)[0])


@needs_mujoco
def test_time_steps_match_rllab():
  cheetah, ant = make_env('cheetah_vel'), make_env('ant_dir')
  assert cheetah.dt == pytest.approx(0.01) and ant.dt == pytest.approx(0.02)
  c, a = cheetah._local.pool[0], ant._local.pool[0]  # the probe envs
  assert (c.frame_skip, c.model.opt.timestep) == (1, pytest.approx(0.01))
  assert (a.frame_skip, a.model.opt.timestep) == (1, pytest.approx(0.02))
  assert a.model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4


@needs_mujoco
@pytest.mark.parametrize('name', MUJOCO_NAMES)
def test_mujoco_reward_equals_the_formula_recomputed_from_the_state(name):
  rng = np.random.default_rng(5)
  tasks = np.array([[0.7], [1.6]]) if name.endswith('_vel') else np.array([[-1.0], [1.0]])
  env, _ = ready(name, tasks, 2, seed=3)
  ant = name.startswith('ant')
  contact_seen = False
  for _ in range(15):
    actions = rng.normal(size=(4, env.act_dim)) * 1.5
    _, reward, done = env.step(actions)
    a = np.clip(actions, -1, 1)  # a_env / bound
    for i, sim in enumerate(env.envs):
      if np.isnan(env.com_x_velocity[i]):
        continue
      v = com_x_velocity_from_jacobian(sim)
      assert env.com_x_velocity[i] == pytest.approx(v, rel=1e-9, abs=1e-9)
      goal = env.env_tasks[i, 0]
      forward = -abs(v - goal) if name.endswith('_vel') else goal * v
      if ant:
        contact = 5e-4 * np.sum(np.square(np.clip(sim.data.cfrc_ext, -1, 1)))
        contact_seen |= contact > 0
        want = forward + (1.0 if name == 'ant_vel' else 0.0) + 0.05 - 0.005 * np.sum(a[i] ** 2) - contact
      else:
        want = forward - 0.05 * np.sum(a[i] ** 2)
      assert reward[i] == pytest.approx(want, rel=1e-5, abs=1e-5)
  assert contact_seen or not ant


@needs_mujoco
@pytest.mark.parametrize('name', MUJOCO_NAMES)
def test_batched_step_equals_gymnasium_env_step(name):
  """The batched path (physics in a loop, rewards for all envs at once) against each env's own step()."""
  tasks = np.array([[0.3], [1.9]]) if name.endswith('_vel') else np.array([[-1.0], [1.0]])
  batched, _ = ready(name, tasks, 2, seed=4)
  single, _ = ready(name, tasks, 2, seed=4)
  rng = np.random.default_rng(8)
  done = np.zeros(4, bool)
  for _ in range(12):
    actions = rng.normal(size=(4, batched.act_dim)) * 1.5
    was_done = done
    obs, reward, done = batched.step(actions)
    a_env = rl.envs.policy_to_env_action(actions, single._low, single._high)
    for i, env in enumerate(single.envs):
      if was_done[i]:  # frozen in the batch (checked elsewhere); gymnasium would step on
        continue
      o, r, terminated, truncated, info = env.step(a_env[i])
      np.testing.assert_allclose(obs[i], o, rtol=1e-6, atol=1e-6)
      assert reward[i] == pytest.approx(r, rel=1e-6, abs=1e-6)
      assert (done[i], truncated) == (terminated, False)
      assert batched.com_x_velocity[i] == info['com_x_velocity']


@needs_mujoco
def test_cheetah_observation_layout_and_com_velocity():
  env, obs = ready('cheetah_vel', [[1.0]], 1, seed=2)
  sim = env.envs[0]
  com0 = obs[0, -3:].astype(np.float64)
  obs, _, _ = env.step(np.full((1, 6), 0.5))
  d = sim.data
  np.testing.assert_allclose(obs[0], np.concatenate([d.qpos[1:], d.qvel, d.subtree_com[1]]), rtol=1e-6, atol=1e-6)
  # the COM velocity that the reward uses is close to the COM's finite difference over one step
  fd = (obs[0, -3] - com0[0]) / 0.01
  assert env.com_x_velocity[0] == pytest.approx(fd, abs=0.05 + 0.05 * abs(fd))


@needs_mujoco
@pytest.mark.parametrize('name, task, shortcut', [
    ('cheetah_vel', 1.3, '_derive'), ('cheetah_dir', -1.0, '_derive'),
    ('ant_vel', 1.3, '_step_mujoco_simulation'), ('ant_dir', -1.0, '_step_mujoco_simulation')])
def test_physics_shortcuts_give_the_trajectory_of_plain_mujoco(name, task, shortcut, monkeypatch):
  """Each family skips work that MuJoCo would redo: the cheetah derives its new state's quantities
  without mj_forward's constraint solve, the ant's step reuses the position and velocity stages of the
  last full forward. 300 steps with contacts must give bit-identical observations, rewards, dones and COM
  velocities to the plain mj_forward / mj_step of _RllabMixin."""
  def run():
    env, obs = ready(name, [[task]], 3, seed=6)
    rng = np.random.default_rng(2)
    out, contacts = [obs], 0
    for _ in range(300):
      obs, reward, done = env.step(rng.normal(size=(3, env.act_dim)) * 1.5)
      out += [obs, reward, done, env.com_x_velocity]
      contacts += sum(sim.data.ncon for sim in env.envs)
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in out]), contacts
  light, contacts = run()
  assert contacts > 0  # the bodies touch the ground, so the skipped work (collisions, solve) mattered
  cls = rl.envs.HalfCheetahTask if name.startswith('cheetah') else rl.envs.AntTask
  monkeypatch.setattr(cls, shortcut, getattr(rl.envs._RllabMixin, shortcut))
  full, _ = run()
  np.testing.assert_array_equal(light, full)


@needs_mujoco
def test_ant_step_from_a_non_finite_state_resets_as_mj_step_does(monkeypatch):
  """MuJoCo's check resets a non-finite state before stepping; the step that reuses the last forward must
  then not reuse it, and end in the state plain mj_step ends in."""
  def run():
    env = rl.envs.AntTask('vel', 1.0)
    env.np_random = np.random.default_rng(0)
    env.reset()
    for _ in range(5):
      env.advance(np.full(8, 40.0))
    env.data.qvel[3] = np.nan
    env.advance(np.full(8, 40.0))
    return np.concatenate([env.data.qpos, env.data.qvel, env._get_obs()])
  light = run()
  assert np.isfinite(light).all()
  monkeypatch.setattr(rl.envs.AntTask, '_step_mujoco_simulation', rl.envs._RllabMixin._step_mujoco_simulation)
  np.testing.assert_array_equal(light, run())


@pytest.mark.parametrize('name', params(['cheetah_dir', 'ant_vel']))
def test_worker_processes_give_the_trajectories_of_one_process(name, monkeypatch):
  """3 worker processes over 7 envs (uneven ranges), then re-tasked to 2 envs (one range unused),
  with env 4 terminated at step 10: bit-identical observations, rewards, dones and COM velocities."""
  cls = rl.envs.HalfCheetahTask if name.startswith('cheetah') else rl.envs.AntTask
  calls = [0]

  def terminated(obs):  # computed in this process for all envs: workers never see it
    calls[0] += 1
    done = np.zeros(len(obs), bool)
    done[4:5] = calls[0] == 10
    return done
  monkeypatch.setattr(cls, 'batch_terminated', terminated)

  def run(workers):
    env, rng, out = make_env(name, workers=workers), np.random.default_rng(4), []
    calls[0] = 0
    for b, steps in ((7, 30), (2, 5)):
      env.set_tasks(env.sample_tasks(b, np.random.default_rng(3)), 1)
      out.append(env.reset(5))
      for _ in range(steps):
        obs, reward, done = env.step(rng.normal(size=(b, env.act_dim)) * 1.5)
        out += [obs, reward, done, env.com_x_velocity]
    assert out[4 * 10 - 1][4] and not out[4 * 9 - 1][4]  # done from step 10 on (out[4t - 1]: step t)
    return np.concatenate([np.ravel(x).astype(np.float64) for x in out])
  np.testing.assert_array_equal(run(3), run(1))


@needs_mujoco
def test_a_failing_or_dead_worker_raises_a_clear_error():
  env = make_env('cheetah_vel', workers=2)
  env.set_tasks(np.array([[0.5], [1.0]]), 2)
  env.reset(0)
  with pytest.raises(RuntimeError, match=r'(?s)env worker process \d+ failed:.*IndexError'):
    env._call('advance', [(np.zeros((0, 6)), np.ones(2, bool))] * 2)  # 2 live envs, no actions
  env.reset(0)  # both answers were read: the workers still serve
  env._workers[1].process.terminate()
  env._workers[1].process.join()
  with pytest.raises(RuntimeError, match=r'env worker process \d+ died'):
    env.step(np.zeros((4, 6)))


@needs_mujoco
def test_workers_must_be_positive():
  with pytest.raises(ValueError, match='workers'):
    rl.envs.MujocoTaskEnvs('cheetah_vel', workers=0)


# sha256 of rllab's ant.xml as the RLLAB_ANT_XML string that the env module held before rl/assets/ant.xml
ANT_XML_SHA256 = 'f2c49f273f2adbfed7621657df8711d170bc797e24637381ba228e697f6cc4cb'


@needs_mujoco
def test_the_ant_compiles_rllabs_xml_from_the_assets_file():
  """rl/assets/ant.xml holds, byte for byte, the XML the module once embedded, and it is what AntTask
  compiles: every numeric array of the env's model equals the one compiled from the file."""
  data = pathlib.Path(rl.envs.ANT_XML_PATH).read_bytes()
  assert hashlib.sha256(data).hexdigest() == ANT_XML_SHA256
  assert rl.envs.RLLAB_ANT_XML == data.decode()
  assert pathlib.Path(rl.envs.ANT_XML_PATH) == pathlib.Path(rl.envs.__file__).parent / 'assets' / 'ant.xml'
  model, from_file = rl.envs.AntTask('vel').model, mujoco.MjModel.from_xml_path(rl.envs.ANT_XML_PATH)
  arrays = [name for name in dir(from_file)
            if not name.startswith('_') and isinstance(getattr(from_file, name), np.ndarray)]
  assert 'body_mass' in arrays and 'geom_solimp' in arrays
  for name in arrays:
    np.testing.assert_array_equal(getattr(model, name), getattr(from_file, name), err_msg=name)
  assert (model.opt.timestep, model.opt.integrator) == (0.02, mujoco.mjtIntegrator.mjINT_RK4)


@needs_mujoco
def test_ant_observation_layout_and_initial_pose():
  env, obs = ready('ant_vel', [[1.0]], 2, seed=2)
  sim = env.envs[0]
  init = np.array([0, 0, 0.55, 1, 0, 0, 0, 0, 1, 0, -1, 0, -1, 0, 1], np.float64)  # rllab's init_qpos
  assert np.max(np.abs(obs[:, :15] - init)) < 0.06 and np.abs(obs[0, :15] - obs[1, :15]).max() > 0
  obs, _, _ = env.step(np.zeros((2, 8)))
  d = sim.data
  want = np.concatenate([d.qpos, d.qvel, np.clip(d.cfrc_ext, -1, 1).ravel(), d.xmat[1], d.subtree_com[1]])
  assert want.shape == (125,)
  np.testing.assert_allclose(obs[0], want, rtol=1e-6, atol=1e-6)


@needs_mujoco
def test_set_tasks_fills_the_slots_and_reuses_the_env_objects():
  env = make_env('cheetah_vel')
  env.set_tasks(np.array([[0.1], [0.2], [0.3]]), 2)
  first = [id(e) for e in env.envs]
  assert [e.task for e in env.envs] == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
  env.set_tasks(np.array([0.5, 0.6]), 2)  # smaller B: the same objects, re-tasked
  assert [id(e) for e in env.envs] == first[:4] and [e.task for e in env.envs] == [0.5, 0.5, 0.6, 0.6]
  env.set_tasks(np.array([[0.9]]), 7)  # larger B: only the missing envs are built
  assert [id(e) for e in env.envs][:6] == first and len(env.envs) == 7
  direc = make_env('ant_dir')
  with pytest.raises(ValueError):
    direc.set_tasks(np.array([[0.4]]), 1)  # rllab's raw u; the env takes the direction +-1


@needs_mujoco
@pytest.mark.parametrize('name', ['cheetah_dir', 'ant_vel'])
def test_mujoco_seeding(name):
  env = make_env(name)
  env.set_tasks(env.sample_tasks(2, np.random.default_rng(0)), 2)
  actions = np.random.default_rng(6).uniform(-1, 1, size=(10, 4, env.act_dim))

  def rollout(e, seed):
    out = [e.reset(seed)]
    for a in actions:
      o, r, d = e.step(a)
      out += [o, r, d]
    return out

  a, b = rollout(env, 11), rollout(env, 11)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  other = make_env(name)
  other.set_tasks(env.env_tasks, 1)
  for x, y in zip(a, rollout(other, 11)):
    np.testing.assert_array_equal(x, y)
  c = rollout(env, 12)
  assert not np.array_equal(a[0], c[0])
  assert not np.array_equal(a[0][0], a[0][1])  # the slots draw different reset noise


@needs_mujoco
def test_ant_terminates_when_the_torso_leaves_the_height_range():
  env, _ = ready('ant_dir', [[1.0]], 3, seed=0)
  high, low = env.envs[1], env.envs[2]
  qpos, qvel = high.data.qpos.copy(), np.zeros(high.model.nv)
  qpos[2] = 1.3  # above 1.0, at rest: still above after one step
  high.set_state(qpos, qvel)
  low.model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)  # let it sit below the floor
  qpos[2] = 0.1
  low.set_state(qpos, qvel)
  obs, reward, done = env.step(np.zeros((3, 8)))
  np.testing.assert_array_equal(done, [False, True, True])
  assert obs[1, 2] > 1.0 and obs[2, 2] < 0.2
  assert reward[1] == pytest.approx(env.com_x_velocity[1] + 0.05, abs=1e-4)  # still paid, as rllab
  frozen = obs.copy()
  obs, reward, done = env.step(np.ones((3, 8)))
  np.testing.assert_array_equal(done, [False, True, True])
  np.testing.assert_array_equal(reward[1:], 0)
  np.testing.assert_array_equal(obs[1:], frozen[1:])
  assert np.isnan(env.com_x_velocity[1]) and np.isfinite(env.com_x_velocity[0])
  assert not np.array_equal(obs[0], frozen[0])
  env.reset(0)  # a reset revives them
  assert not env.step(np.zeros((3, 8)))[2].any()


@needs_mujoco
def test_cheetah_never_terminates():
  env, _ = ready('cheetah_vel', [[1.0]], 2, seed=0)
  sim = env.envs[0]
  qpos = sim.data.qpos.copy()
  qpos[1] = 5.0  # rootz far up: the ant would terminate, the cheetah does not
  sim.set_state(qpos, sim.data.qvel.copy())
  assert not env.step(np.ones((2, 6)))[2].any()
