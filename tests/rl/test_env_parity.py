"""HalfCheetah goal direction: this repo's environment (rl/envs.py) against the original's (cbfinn/maml_rl).

The original's model, stepping and reward are embedded below from cbfinn/maml_rl at commit
9c8e2ebd741cb0c7b8bf2d040c4caeeb8e06cc95: vendor/mujoco_models/half_cheetah.xml, rllab/envs/mujoco/mujoco_env.py
(reset noise, forward_dynamics), rllab/mujoco_py/mjcore.py (MjModel.body_comvels), rllab/envs/normalized_env.py
(action scaling) and rllab/envs/mujoco/half_cheetah_env_rand_direc.py (reward, direction). The first four are
unchanged since the ICML-deadline commit 7fe27d7; the direction threshold went from 0.4 to 1.0 in 7a92e6e.
No network access is needed.

    python -m pytest tests/rl/test_env_parity.py   # the checks
    python tests/rl/test_env_parity.py             # the measurements of docs/rl.md (about 15 s)
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import rl.envs  # noqa: E402  (the repo root must be on sys.path when run as a script)

mujoco = rl.envs.mujoco
needs_mujoco = pytest.mark.skipif(
    mujoco is None, reason=f'gymnasium[mujoco] / mujoco not importable: {rl.envs.MUJOCO_IMPORT_ERROR}')

# vendor/mujoco_models/half_cheetah.xml at 9c8e2eb (MIT licence), verbatim apart from its header comment (a
# list of the state and actuator names) and the line breaks of the attribute lists. gymnasium 1.4's
# half_cheetah.xml, which rl.envs.HalfCheetahTask loads, differs from it only by a tracking camera.
ORIGINAL_XML = """
<mujoco model='cheetah'>
  <compiler inertiafromgeom='true' coordinate='local' angle='radian' settotalmass='14' />
  <default>
    <joint limited='true' damping='.01' armature='.1' stiffness='8' solreflimit='.02 1' solimplimit='0 .8 .03' />
    <geom contype='1' conaffinity='0' condim='3' friction='.4 .1 .1' rgba='0.8 0.6 .4 1' solimp='0.0 0.8 0.01'
          solref='0.02 1' />
    <motor ctrlrange='-1 1' ctrllimited='true' />
  </default>
  <size nstack='300000' nuser_geom='1' />
  <option timestep='0.01' gravity='0 0 -9.81' />
  <asset>
    <texture type="skybox" builtin="gradient" width="100" height="100" rgb1="1 1 1" rgb2="0 0 0" />
    <texture name="texgeom" type="cube" builtin="flat" mark="cross" width="127" height="1278" rgb1="0.8 0.6 0.4"
             rgb2="0.8 0.6 0.4" markrgb="1 1 1" random="0.01" />
    <texture name="texplane" type="2d" builtin="checker" rgb1="0 0 0" rgb2="0.8 0.8 0.8" width="100" height="100" />
    <material name='MatPlane' texture="texplane" shininess="1" texrepeat="60 60" specular="1"  reflectance="0.5" />
    <material name='geom' texture="texgeom" texuniform="true" />
  </asset>
  <worldbody>
    <light directional="true" cutoff="100" exponent="1" diffuse="1 1 1" specular=".1 .1 .1" pos="0 0 1.3"
           dir="-0 0 -1.3" />
    <geom name='floor' material="MatPlane" pos='0 0 0' size='40 40 40' type='plane' conaffinity='1'
          rgba='0.8 0.9 0.8 1' condim='3' />
    <body name='torso' pos='0 0 .7'>
      <joint name='rootx' type='slide' pos='0 0 0' axis='1 0 0' limited='false' damping='0' armature='0'
             stiffness='0' />
      <joint name='rootz' type='slide' pos='0 0 0' axis='0 0 1' limited='false' damping='0' armature='0'
             stiffness='0' />
      <joint name='rooty' type='hinge' pos='0 0 0' axis='0 1 0' limited='false' damping='0' armature='0'
             stiffness='0' />
      <geom name='torso' type='capsule' fromto='-.5 0 0 .5 0 0' size='0.046' />
      <geom name='head' type='capsule' pos='.6 0 .1' axisangle='0 1 0 .87' size='0.046 .15' />
      <!-- <site name='tip'  pos='.15 0 .11'/> -->
      <body name='bthigh' pos='-.5 0 0'>
        <joint name='bthigh' type='hinge' pos='0 0 0' axis='0 1 0' range='-.52 1.05' stiffness='240' damping='6' />
        <geom name='bthigh' type='capsule' pos='.1 0 -.13' axisangle='0 1 0 -3.8' size='0.046 .145' />
        <body name='bshin' pos='.16 0 -.25'>
          <joint name='bshin' type='hinge' pos='0 0 0' axis='0 1 0' range='-.785 .785' stiffness='180'
                 damping='4.5' />
          <geom name='bshin' type='capsule' pos='-.14 0 -.07' axisangle='0 1 0 -2.03' size='0.046 .15'
                rgba='0.9 0.6 0.6 1' />
          <body name='bfoot' pos='-.28 0 -.14'>
            <joint name='bfoot' type='hinge' pos='0 0 0' axis='0 1 0' range='-.4 .785' stiffness='120'
                   damping='3' />
            <geom name='bfoot' type='capsule' pos='.03 0 -.097' axisangle='0 1 0 -.27' size='0.046 .094'
                  rgba='0.9 0.6 0.6 1' />
          </body>
        </body>
      </body>
      <body name='fthigh' pos='.5 0 0'>
        <joint name='fthigh' type='hinge' pos='0 0 0' axis='0 1 0' range='-1 .7' stiffness='180' damping='4.5' />
        <geom name='fthigh' type='capsule' pos='-.07 0 -.12' axisangle='0 1 0 .52' size='0.046 .133' />
        <body name='fshin' pos='-.14 0 -.24'>
          <joint name='fshin' type='hinge' pos='0 0 0' axis='0 1 0' range='-1.2 .87' stiffness='120' damping='3' />
          <geom name='fshin' type='capsule' pos='.065 0 -.09' axisangle='0 1 0 -.6' size='0.046 .106'
                rgba='0.9 0.6 0.6 1' />
          <body name='ffoot' pos='.13 0 -.18'>
            <joint name='ffoot' type='hinge' pos='0 0 0' axis='0 1 0' range='-.5 .5' stiffness='60'
                   damping='1.5' />
            <geom name='ffoot' type='capsule' pos='.045 0 -.07' axisangle='0 1 0 -.6' size='0.046 .07'
                  rgba='0.9 0.6 0.6 1' />
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name='bthigh' joint='bthigh' gear='120' />
    <motor name='bshin' joint='bshin' gear='90' />
    <motor name='bfoot' joint='bfoot' gear='60' />
    <motor name='fthigh' joint='fthigh' gear='120' />
    <motor name='fshin' joint='fshin' gear='60' />
    <motor name='ffoot' joint='ffoot' gear='30' />
  </actuator>
</mujoco>
"""

# Values read from that XML (the compiled model must hold them). Joint order: rootx rootz rooty bthigh bshin bfoot
# fthigh fshin ffoot; actuator order: bthigh bshin bfoot fthigh fshin ffoot.
ORIGINAL = dict(
    timestep=0.01, total_mass=14.0, gear=[120, 90, 60, 120, 60, 30], ctrlrange=[-1.0, 1.0],
    jnt_range=[[-.52, 1.05], [-.785, .785], [-.4, .785], [-1, .7], [-1.2, .87], [-.5, .5]],
    stiffness=[0, 0, 0, 240, 180, 120, 180, 120, 60], damping=[0, 0, 0, 6, 4.5, 3, 4.5, 3, 1.5],
    armature=[0, 0, 0, .1, .1, .1, .1, .1, .1], friction=[.4, .1, .1], geom_solref=[.02, 1],
    geom_solimp=[0.0, 0.8, 0.01], limit_solref=[.02, 1], limit_solimp=[0, .8, .03])
# rllab's MujocoEnv: frame_skip from a <numeric name="frame_skip"> (absent: 1); reset noise N(0, .01^2) on qpos and
# N(0, .1^2) on qvel around qpos0 = 0 (no <numeric name="init_qpos">); HalfCheetahEnvRandDirec: reward
# d v_x - 1e-1 * 0.5 ||a||^2 with d = -1 if u < 1.0 else +1; max_path_length 200 (cluster_maml_trpo_cheetah.py).
FRAME_SKIP, QPOS_NOISE, QVEL_NOISE, CTRL_COST, HORIZON = 1, 0.01, 0.1, 1e-1 * 0.5, 200
# The body masses MuJoCo < 2.1.1 compiled from this XML (torso, bthigh, bshin, bfoot, fthigh, fshin, ffoot); they
# are the values mujoco-py (MuJoCo 1.50 / 2.0) printed for HalfCheetah.
PRE_2_1_1_MASSES = [6.36031332, 1.53524804, 1.58093995, 1.0691906, 1.42558747, 1.17885117, 0.84986945]


# ---------------------------------------------------------------------------------------------------------------
# The original's procedures, transcribed.

def original_model():
  with rl.envs._quiet_settotalmass():  # MuJoCo 4: settotalmass is deprecated (same masses)
    return mujoco.MjModel.from_xml_string(ORIGINAL_XML)


def rllab_normalize(action, lb=-1.0, ub=1.0):
  """rllab's NormalizedEnv.step: scale [-1, 1] onto [lb, ub], then clip."""
  scaled = lb + (np.asarray(action, np.float64) + 1.) * 0.5 * (ub - lb)
  return np.clip(scaled, lb, ub)


def rllab_body_comvels(m, d, origin=False):
  """rllab's MjModel._compute_subtree: each body's mj_objectVelocity (world frame), its linear part times the
  body's mass, summed up the tree and divided by the subtree mass: [nbody, 3].

  origin=True takes the velocity at each body's frame origin (mjOBJ_XBODY) instead of at its centre of mass
  (current MuJoCo's mjOBJ_BODY), in case MuJoCo 1.31's mjOBJ_BODY meant the frame origin."""
  kind = mujoco.mjtObj.mjOBJ_XBODY if origin else mujoco.mjtObj.mjOBJ_BODY
  vel, tmp = np.zeros((m.nbody, 6)), np.zeros(6)
  for i in range(m.nbody):
    mujoco.mj_objectVelocity(m, d, kind, i, tmp, 0)
    vel[i] = tmp
  momenta, mass = vel[:, 3:] * m.body_mass[:, None], m.body_mass.copy()
  for i in range(m.nbody - 1, 0, -1):
    momenta[m.body_parentid[i]] += momenta[i]
    mass[m.body_parentid[i]] += mass[i]
  return momenta / mass[:, None]


def original_rollout(m, actions, direction, origin=False):
  """normalize(HalfCheetahEnvRandDirec) from qpos0 with no reset noise, rllab's way: ctrl = the scaled action,
  mj_step (frame_skip 1), mj_forward; reward d * body_comvels[torso, x] - 0.05 ||clip(a)||^2.

  Returns qpos [T, 9], qvel [T, 9], obs [T, 20], reward [T], and three other velocity terms' rewards [T]:
  at the bodies' frame origins, the root slider's finite difference (gymnasium's x_velocity) and the torso
  COM's finite difference."""
  d = mujoco.MjData(m)
  mujoco.mj_forward(m, d)
  torso = m.body('torso').id
  out = {k: [] for k in ('qpos', 'qvel', 'obs', 'reward', 'reward_origin', 'reward_root_fd', 'reward_com_fd')}
  x, com = d.qpos[0], d.subtree_com[torso, 0]
  for a in actions:
    a = rllab_normalize(a)
    d.ctrl[:] = a
    for _ in range(FRAME_SKIP):
      mujoco.mj_step(m, d)
    mujoco.mj_forward(m, d)
    ctrl = CTRL_COST * np.sum(np.square(a))
    out['reward'].append(direction * rllab_body_comvels(m, d)[torso, 0] - ctrl)
    out['reward_origin'].append(direction * rllab_body_comvels(m, d, origin=True)[torso, 0] - ctrl)
    out['reward_root_fd'].append(direction * (d.qpos[0] - x) / m.opt.timestep - ctrl)
    out['reward_com_fd'].append(direction * (d.subtree_com[torso, 0] - com) / m.opt.timestep - ctrl)
    x, com = d.qpos[0], d.subtree_com[torso, 0]
    out['qpos'].append(d.qpos.copy())
    out['qvel'].append(d.qvel.copy())
    out['obs'].append(np.concatenate([d.qpos[1:], d.qvel, d.subtree_com[torso]]))
  return {k: np.array(v) for k, v in out.items()}


def repo_rollout(actions, direction):
  """This repo's batched cheetah_dir env (one slot) from the same state: qpos [T, 9], qvel [T, 9], obs, reward,
  com_x_velocity [T]. Its reset noise is switched off for the call."""
  saved = rl.envs._RllabMixin.QPOS_NOISE, rl.envs._RllabMixin.QVEL_NOISE
  rl.envs._RllabMixin.QPOS_NOISE = rl.envs._RllabMixin.QVEL_NOISE = 0.0
  try:
    env = rl.envs.make_env('cheetah_dir')
    env.set_tasks(np.array([[direction]]), 1)
    env.reset(0)
  finally:
    rl.envs._RllabMixin.QPOS_NOISE, rl.envs._RllabMixin.QVEL_NOISE = saved
  sim = env.envs[0]
  out = {k: [] for k in ('qpos', 'qvel', 'obs', 'reward', 'v')}
  for a in actions:
    obs, reward, _ = env.step(np.asarray(a)[None])
    out['qpos'].append(sim.data.qpos.copy())
    out['qvel'].append(sim.data.qvel.copy())
    out['obs'].append(obs[0])
    out['reward'].append(reward[0])
    out['v'].append(env.com_x_velocity[0])
  return {k: np.array(v) for k, v in out.items()}


def capsule_mass_inertia(radius, half_length, pre_2_1_1):
  """Mass (density 1) and diagonal inertia about the centre of a capsule along z.

  MuJoCo >= 2.1.1 computes the capsule exactly; earlier versions (MuJoCo 1.31 included) used "a cylinder,
  formed by the capsule's cylindrical middle section, extended on both ends by half the capsule radius", for the
  mass and the inertia (MuJoCo changelog, version 2.1.1)."""
  r = radius
  if pre_2_1_1:
    length = 2 * half_length + r
    mass = np.pi * r * r * length
    return mass, mass * np.array([(3 * r * r + length ** 2) / 12] * 2 + [r * r / 2])
  length = 2 * half_length
  cylinder, sphere = np.pi * r * r * length, 4 / 3 * np.pi * r ** 3
  transverse = (cylinder * (3 * r * r + length ** 2) / 12
                + sphere * (2 * r * r / 5 + length ** 2 / 4 + 3 * length * r / 8))
  return cylinder + sphere, np.array([transverse, transverse, cylinder * r * r / 2 + sphere * 2 * r * r / 5])


def body_inertials(m, pre_2_1_1, total_mass=14.0):
  """[(mass, centre of mass in the body frame [3], inertia tensor about it [3, 3])] of bodies 1.. from their
  capsule geoms (inertiafromgeom), scaled to total_mass (settotalmass)."""
  out = []
  for b in range(1, m.nbody):
    parts = []
    for g in np.flatnonzero(m.geom_bodyid == b):
      mass, diag = capsule_mass_inertia(m.geom_size[g, 0], m.geom_size[g, 1], pre_2_1_1)
      rot = np.zeros(9)
      mujoco.mju_quat2Mat(rot, m.geom_quat[g])
      rot = rot.reshape(3, 3)
      parts.append((mass, m.geom_pos[g].copy(), rot @ np.diag(diag) @ rot.T))
    mass = sum(p[0] for p in parts)
    com = sum(p[0] * p[1] for p in parts) / mass
    inertia = sum(i + mi * (np.dot(c - com, c - com) * np.eye(3) - np.outer(c - com, c - com))
                  for mi, c, i in parts)
    out.append((mass, com, inertia))
  scale = total_mass / sum(o[0] for o in out)
  return [(mass * scale, com, inertia * scale) for mass, com, inertia in out]


def use_pre_2_1_1_inertia(m, d):
  """Gives model m the masses and inertias MuJoCo < 2.1.1 compiled for it (the original ran MuJoCo 1.31)."""
  for b, (mass, com, inertia) in enumerate(body_inertials(m, pre_2_1_1=True), 1):
    principal, vectors, quat = np.zeros(3), np.zeros(9), np.zeros(4)
    mujoco.mju_eig3(principal, vectors, quat, inertia.ravel())
    m.body_mass[b], m.body_ipos[b], m.body_iquat[b], m.body_inertia[b] = mass, com, quat, principal
  mujoco.mj_setConst(m, d)


# ---------------------------------------------------------------------------------------------------------------
# Checks.

@needs_mujoco
def test_the_repos_compiled_model_is_the_originals():
  """Every numeric mjModel array of the repo's cheetah equals the one compiled from the original's XML, apart
  from the camera gymnasium's file adds (and the name tables that list it)."""
  original, repo = original_model(), rl.envs.HalfCheetahTask('dir').model
  differ = []
  for name in dir(original):
    a = getattr(original, name)
    if name.startswith('_') or not isinstance(a, np.ndarray):
      continue
    if a.shape != getattr(repo, name).shape or not np.array_equal(a, getattr(repo, name)):
      differ.append(name)
  assert differ and all(n.startswith(('cam_', 'name_', 'names')) for n in differ), differ
  for field in ('timestep', 'gravity', 'integrator', 'solver', 'iterations', 'tolerance', 'cone', 'impratio',
                'disableflags', 'enableflags', 'noslip_iterations'):
    np.testing.assert_array_equal(getattr(original.opt, field), getattr(repo.opt, field))


@needs_mujoco
def test_the_repos_model_holds_the_originals_values():
  env = rl.envs.make_env('cheetah_dir')
  sim = env._local.pool[0]  # the probe env
  m = sim.model
  assert (sim.frame_skip, env.dt, env.horizon) == (FRAME_SKIP, pytest.approx(ORIGINAL['timestep']), HORIZON)
  assert m.opt.timestep == ORIGINAL['timestep'] and m.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
  assert m.body_mass.sum() == pytest.approx(ORIGINAL['total_mass'], rel=1e-12)
  np.testing.assert_array_equal(m.actuator_gear[:, 0], ORIGINAL['gear'])
  np.testing.assert_array_equal(m.actuator_ctrlrange, [ORIGINAL['ctrlrange']] * 6)
  np.testing.assert_array_equal(m.jnt_range[3:], ORIGINAL['jnt_range'])
  np.testing.assert_array_equal(m.jnt_limited, [0, 0, 0, 1, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(m.jnt_stiffness, ORIGINAL['stiffness'])
  np.testing.assert_array_equal(m.dof_damping, ORIGINAL['damping'])
  np.testing.assert_array_equal(m.dof_armature, ORIGINAL['armature'])
  np.testing.assert_array_equal(m.geom_friction, [ORIGINAL['friction']] * m.ngeom)
  np.testing.assert_array_equal(m.geom_solref, [ORIGINAL['geom_solref']] * m.ngeom)
  np.testing.assert_array_equal(m.geom_solimp[:, :3], [ORIGINAL['geom_solimp']] * m.ngeom)
  np.testing.assert_array_equal(m.jnt_solref[3:], [ORIGINAL['limit_solref']] * 6)
  np.testing.assert_array_equal(m.jnt_solimp[3:, :3], [ORIGINAL['limit_solimp']] * 6)
  np.testing.assert_array_equal(env._low, -1.0)
  np.testing.assert_array_equal(env._high, 1.0)


@needs_mujoco
def test_capsule_inertia_is_the_one_compiled_difference_to_mujoco_1_31():
  """MuJoCo 4 computes capsule inertias exactly; MuJoCo < 2.1.1 approximated each capsule by a cylinder. All the
  cheetah's geoms are capsules, so its masses and inertias differ from those the original simulated."""
  m = rl.envs.HalfCheetahTask('dir').model
  for b, (mass, com, inertia) in enumerate(body_inertials(m, pre_2_1_1=False), 1):  # the formula is MuJoCo 4's
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, m.body_iquat[b])
    rot = rot.reshape(3, 3)
    assert mass == pytest.approx(m.body_mass[b], rel=1e-12)
    np.testing.assert_allclose(com, m.body_ipos[b], atol=1e-12)
    np.testing.assert_allclose(inertia, rot @ np.diag(m.body_inertia[b]) @ rot.T, rtol=1e-9, atol=1e-12)
  old = np.array([mass for mass, _, _ in body_inertials(m, pre_2_1_1=True)])
  np.testing.assert_allclose(old, PRE_2_1_1_MASSES, rtol=1e-8)
  assert np.max(np.abs(m.body_mass[1:] / old - 1)) > 0.04  # ffoot: 0.885 here, 0.850 in MuJoCo < 2.1.1
  legacy = original_model()
  use_pre_2_1_1_inertia(legacy, mujoco.MjData(legacy))
  np.testing.assert_allclose(legacy.body_mass[1:], PRE_2_1_1_MASSES, rtol=1e-8)
  assert legacy.body_subtreemass[1] == pytest.approx(14.0)


@needs_mujoco
@pytest.mark.parametrize('direction', [-1.0, 1.0])
def test_identical_actions_give_the_originals_trajectory_and_rewards(direction):
  """From qpos0 with no reset noise, 200 steps of the same actions (half of them outside [-1, 1]): the repo's
  env and rllab's stepping of the original's XML reach bit-identical states; the velocity in the reward is
  rllab's momentum sum to 1e-12, the rewards agree to float32 rounding."""
  actions = np.random.default_rng(int(direction) + 5).normal(size=(HORIZON, 6)) * 1.5
  want = original_rollout(original_model(), actions, direction)
  got = repo_rollout(actions, direction)
  np.testing.assert_array_equal(got['qpos'], want['qpos'])
  np.testing.assert_array_equal(got['qvel'], want['qvel'])
  np.testing.assert_allclose(got['obs'], want['obs'], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(direction * got['v'] - CTRL_COST * np.sum(np.clip(actions, -1, 1) ** 2, -1),
                             want['reward'], rtol=0, atol=1e-12)
  np.testing.assert_allclose(got['reward'], want['reward'], rtol=1e-6, atol=1e-6)
  assert abs(got['qpos'][-1, 0]) > 0.05  # it moved


def test_action_scaling_is_rllabs_normalize():
  a = np.random.default_rng(0).normal(size=(1000, 6)) * 2
  np.testing.assert_array_equal(rl.envs.policy_to_env_action(a, -np.ones(6), np.ones(6)), rllab_normalize(a))


@needs_mujoco
def test_reset_noise_is_rllabs():
  env = rl.envs.make_env('cheetah_dir')
  env.set_tasks(np.ones((1, 1)), 600)
  env.reset(0)
  qpos = np.array([sim.data.qpos for sim in env.envs])
  qvel = np.array([sim.data.qvel for sim in env.envs])
  for x, sd in ((qpos, QPOS_NOISE), (qvel, QVEL_NOISE)):  # 600 x 9 draws: sd within ~1.5% (one sigma)
    assert np.std(x) == pytest.approx(sd, rel=0.06)
    assert abs(np.mean(x)) < 4 * sd / np.sqrt(x.size)


@needs_mujoco
def test_direction_split_is_rllabs():
  """HalfCheetahEnvRandDirec: u ~ U[0, 2], d = -1 if u < 1.0 else +1."""
  env = rl.envs.make_env('cheetah_dir')
  u = np.random.default_rng(3).uniform(0.0, 2.0, size=(500, 1))
  np.testing.assert_array_equal(env.sample_tasks(500, np.random.default_rng(3)), np.where(u < 1.0, -1.0, 1.0))


# ---------------------------------------------------------------------------------------------------------------
# Measurements (docs/rl.md, "HalfCheetah: this environment against the original's").

def _variant(name):
  """The original's model in MuJoCo 4, with the named changes towards what MuJoCo 1.31 may have done."""
  m = original_model()
  if 'inertia' in name:
    use_pre_2_1_1_inertia(m, mujoco.MjData(m))
  if 'damping' in name:
    m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_EULERDAMP)
  if 'PGS' in name:
    m.opt.solver = mujoco.mjtSolver.mjSOL_PGS
  return m


def _run(m, actions, perturb=0.0):
  """x positions [T] and torso-COM x velocities [T] under clip(actions) from qpos0 (qvel[0] + perturb)."""
  d = mujoco.MjData(m)
  d.qvel[0] += perturb
  mujoco.mj_forward(m, d)
  x, v = np.empty(len(actions)), np.empty(len(actions))
  for t, a in enumerate(np.clip(actions, -1, 1)):
    d.ctrl[:] = a
    mujoco.mj_step(m, d)
    mujoco.mj_forward(m, d)
    mujoco.mj_subtreeVel(m, d)
    x[t], v[t] = d.qpos[0], d.subtree_linvel[1, 0]
  return x, v


def measure():
  rng = np.random.default_rng(0)
  n = 40
  actions = rng.normal(size=(n, HORIZON, 6))  # a std-1 policy with zero mean
  ctrl = CTRL_COST * np.sum(np.clip(actions, -1, 1) ** 2, -1)

  print('1. Identical action sequences, original (rllab stepping of its XML) vs this repo, '
        f'{n} sequences x {HORIZON} steps, directions alternating')
  rows = []
  for k in range(n):
    direction = 1.0 if k % 2 == 0 else -1.0
    want, got = original_rollout(original_model(), actions[k], direction), repo_rollout(actions[k], direction)
    rows.append([np.max(np.abs(got['qpos'] - want['qpos'])), np.max(np.abs(got['qvel'] - want['qvel'])),
                 np.max(np.abs(got['reward'] - want['reward'])),
                 abs(got['reward'].astype(np.float64).sum() - want['reward'].sum())]
                + [f(want[key] - want['reward']) for key in ('reward_origin', 'reward_root_fd', 'reward_com_fd')
                   for f in (lambda e: np.max(np.abs(e)), lambda e: abs(e.sum()))])
  rows = np.array(rows)
  print(f'   max |qpos diff| {rows[:, 0].max():.3g}, max |qvel diff| {rows[:, 1].max():.3g}, max |reward diff| '
        f'{rows[:, 2].max():.2g} per step, {rows[:, 3].max():.2g} per return (float32 rewards)')
  for i, label in enumerate(('v at body frame origins (mjOBJ_XBODY)', 'root slider finite difference',
                             'torso COM finite difference')):
    print(f'   reward with {label} instead: per step max |diff| {rows[:, 4 + 2 * i].max():.3f}; per 200-step '
          f'return mean |diff| {rows[:, 5 + 2 * i].mean():.2f}, max {rows[:, 5 + 2 * i].max():.2f}')

  print('\n2. MuJoCo 4 changes towards MuJoCo 1.31, same action sequences from qpos0')
  t = np.arange(HORIZON)[:, None] * 0.01
  gaits = np.stack([rng.uniform(0.5, 1.0, 6) * np.sin(2 * np.pi * rng.uniform(0.5, 4.0) * t + rng.uniform(0, 7, 6))
                    for _ in range(300)])  # open-loop sinusoidal gaits
  gait_ctrl = CTRL_COST * np.sum(gaits ** 2, -1).sum(-1)
  base = None
  for name in ('MuJoCo 4 (this repo)', 'MuJoCo 4, qvel[0] + 1e-9', 'pre-2.1.1 capsule inertia',
               'explicit damping', 'PGS solver', 'inertia + damping + PGS'):
    m = _variant(name)
    perturb = 1e-9 if '1e-9' in name else 0.0
    x, v = map(np.array, zip(*[_run(m, a, perturb) for a in actions]))
    gait_v = np.array([_run(m, g)[1].sum() for g in gaits])
    if base is None:
      base = x, gait_v
    back, fwd = np.sort(-gait_v - gait_ctrl)[-10:].mean(), np.sort(gait_v - gait_ctrl)[-10:].mean()
    print(f'   {name:28s} mean |x_200 - repo| {np.mean(np.abs(x[:, -1] - base[0][:, -1])):.3f} m '
          f'(mean |x_200| {np.mean(np.abs(x[:, -1])):.3f}); random-action return d=+1 '
          f'{np.mean(v.sum(1) - ctrl.sum(1)):6.1f}, d=-1 {np.mean(-v.sum(1) - ctrl.sum(1)):5.1f}; gaits: mean |sum v| '
          f'{np.mean(np.abs(gait_v)):5.1f}, best 10 returns forward {fwd:5.1f}, backward {back:5.1f}, '
          f'correlation of sum v with the repo\'s {np.corrcoef(gait_v, base[1])[0, 1]:.3f}')

  print('\n3. Fresh policies (Glorot-uniform weights, zero biases, std 1), 30 networks x 20 trajectories, '
        'this repo\'s env')
  nets, per = 30, 20
  env = rl.envs.make_env('cheetah_dir')
  env.set_tasks(np.ones((nets, 1)), per)
  obs = env.reset(0).astype(np.float64)

  def glorot(i, o):
    return rng.uniform(-1, 1, (i, o)) * np.sqrt(6 / (i + o))
  weights = [(glorot(20, 100), glorot(100, 100), glorot(100, 6)) for _ in range(nets)]
  total = np.zeros(nets * per)
  for _ in range(HORIZON):
    o = obs.reshape(nets, per, 20)
    mean = np.stack([np.maximum(np.maximum(o[k] @ w1, 0) @ w2, 0) @ w3
                     for k, (w1, w2, w3) in enumerate(weights)]).reshape(-1, 6)
    obs = env.step(mean + rng.normal(size=mean.shape))[0].astype(np.float64)
    total += env.com_x_velocity
  per_net = total.reshape(nets, per).mean(1)
  print(f'   sum of v_x over 200 steps (the return\'s velocity term for d=+1), per network: mean {per_net.mean():.1f},'
        f' sd {per_net.std(ddof=1):.1f}, range {per_net.min():.1f} .. {per_net.max():.1f}')


if __name__ == '__main__':
  measure()
