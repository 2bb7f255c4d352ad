"""The JAX peer of the speed comparison (benchmarks/peers/jax_maml.py).

It runs as the comparison runs it (a subprocess printing one JSON line) on tiny specs, and its
meta-gradient (`jax_maml.meta_loss_and_grad`, what the timed step differentiates) is checked in
float64: against central finite differences of its meta-loss (second order) and against the
gradient of the query loss at inner-loop weights computed as plain numbers (first order: the inner
gradients constants); its im2col convolution against lax.conv_general_dilated; its tasks one after
another (lax.map, the default) against jax.vmap. float64 is switched
on in a subprocess, so it does not leak into other tests; that subprocess (compiling is most of
this file's time) starts as soon as the specs are read and runs while the command lines are tested.
"""

import json
import math
import pathlib
import subprocess
import sys

import pytest

import peer_specs

jax = pytest.importorskip('jax')

ROOT = pathlib.Path(__file__).resolve().parents[1]
# One pytest-xdist worker runs this file: the float64 subprocess every test starts (autouse
# fixture) is joined by one of them.
pytestmark = pytest.mark.xdist_group('jax_peer')


@pytest.fixture(scope='module')
def specs():
  """Tiny valid specs edited from work.py's (read in a subprocess: work.py imports TensorFlow).

  'second_order': 8x8x1 images, stride-2 convs, 'average' head, N = 2, 2 inner steps, T = 2;
  'first_order': the same, first order; 'pool': 16x16x3 images, max-pool, 'flatten' head, N = 5,
  1 inner step, clip 10, second order (sizes at which XLA:CPU miscompiled a reshape-max pool's
  meta-gradient, see jax_maml.forward); 'pool_first_order': that one first order;
  'sinusoid': meta-batch 2.
  """
  omniglot, mini, sinusoid = peer_specs.work_specs('omniglot_5way_1shot', 'miniimagenet_5way_1shot',
                                                   'sinusoid')
  tiny = dict(query_per_class=2, meta_batch=2, work='tiny')
  second_order = dict(omniglot, input_shape=[8, 8, 1], num_filters=3, num_classes=2, outputs=2,
                      inner_steps=2, **tiny)
  pool = dict(mini, input_shape=[16, 16, 3], num_filters=4, inner_steps=1, **tiny)
  return {'second_order': second_order, 'first_order': dict(second_order, first_order=True),
          'pool': pool, 'pool_first_order': dict(pool, first_order=True),
          'sinusoid': dict(sinusoid, meta_batch=2, work='tiny')}


@pytest.fixture(scope='module', autouse=True)
def float64_check(specs, tmp_path_factory):
  """The CHECK subprocess on every spec but 'pool_first_order', started first, joined by
  test_meta_gradient_float64."""
  cases = {name: spec for name, spec in specs.items() if name != 'pool_first_order'}
  path = tmp_path_factory.mktemp('jax_check') / 'cases.json'
  path.write_text(json.dumps(cases))
  proc = subprocess.Popen([sys.executable, '-c', CHECK, str(path)], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  yield cases, proc
  if proc.poll() is None:  # the test did not join it (failed or deselected)
    proc.kill()
    proc.communicate()


def run_peer(spec, tmp_path):
  path = tmp_path / 'spec.json'
  path.write_text(json.dumps(spec))
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.peers.jax_maml', str(path), '3', '1'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1, proc.stdout
  return json.loads(lines[0])


@pytest.mark.parametrize('spec_name', ['pool_first_order', 'sinusoid'])
def test_peer_prints_one_record(spec_name, specs, tmp_path):
  record = run_peer(specs[spec_name], tmp_path)
  assert record['impl'] == 'jax' and record['work'] == 'tiny'
  assert record['iterations'] == 3 and record['warmup'] == 1 and record['chunks'] == 1
  for key in ('its_median', 'its_mean', 'compile_s', 'final_loss', 'peak_rss_mb'):
    assert math.isfinite(record[key]) and record[key] >= 0, key
  assert record['its_median'] > 0 and record['versions']['jax'] == jax.__version__


# Runs in a subprocess (float64 on from the start). Reads {name: spec} from the JSON file argv[1],
# prints one JSON line {name: {check: [[computed, expected], ...]}}.
CHECK = r'''
import json, sys
import jax
jax.config.update('jax_enable_x64', True)
import jax.numpy as jnp
import numpy as np
from benchmarks.peers import jax_maml as m


def leaves_dot(a, b):
  return sum(float(jnp.vdot(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def finite_differences(spec, params, episode, grads, directions=3, eps=1e-6):
  """[<grad, d>, (L(p + eps d) - L(p - eps d)) / 2 eps] for random unit directions d."""
  loss = jax.jit(lambda p: m.meta_loss(p, episode, spec))
  rng = np.random.default_rng(0)
  pairs = []
  for _ in range(directions):
    d = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape)), params)
    norm = np.sqrt(leaves_dot(d, d))
    d = jax.tree.map(lambda x: x / norm, d)
    plus = loss(jax.tree.map(lambda p, v: p + eps * v, params, d))
    minus = loss(jax.tree.map(lambda p, v: p - eps * v, params, d))
    pairs.append([leaves_dot(grads, d), float(plus - minus) / (2 * eps)])
  return pairs, float(loss(params))


def first_order_reference(spec, params, episode):
  """The first-order meta-gradient a second way: each task's inner loop run as plain numbers
  (nothing to differentiate through), then the gradient of its query loss at theta_i with respect
  to theta_i and beta, averaged over the tasks by a Python loop."""
  support_grad = jax.jit(jax.grad(lambda f, b, x, y: m.loss(m.forward(f, b, x, spec), y, spec)))
  query_grad = jax.jit(jax.grad(lambda f, b, x, y: m.loss(m.forward(f, b, x, spec), y, spec),
                                argnums=(0, 1)))
  beta, grads = params['beta'], []
  for t in range(spec['meta_batch']):
    xs, ys, xq, yq = (a[t] for a in episode)
    fast = params['fast']
    for _ in range(spec['inner_steps']):
      fast = jax.tree.map(lambda w, g: w - spec['inner_lr'] * g, fast,
                          support_grad(fast, beta, xs, ys))
    g_fast, g_beta = query_grad(fast, beta, xq, yq)
    grads.append({'fast': g_fast, 'beta': g_beta})
  return jax.tree.map(lambda *g: sum(g) / len(g), *grads)


def pairs_of(a, b):
  return [[float(x), float(y)] for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
          for x, y in zip(np.ravel(u), np.ravel(v))]


def conv_pairs():
  """conv3x3 (im2col) against lax.conv_general_dilated's SAME convolution, stride 1 and 2, even and
  odd sizes (SAME puts the odd padding row/column at the end)."""
  rng, pairs = np.random.default_rng(1), []
  for size, stride in ((8, 2), (7, 2), (6, 1), (5, 1)):
    x = jnp.asarray(rng.standard_normal((2, size, size, 3)))
    w = jnp.asarray(rng.standard_normal((3, 3, 3, 4)))
    expected = jax.lax.conv_general_dilated(x, w, (stride, stride), 'SAME',
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    pairs += pairs_of(m.conv3x3(x, w, stride), expected)
  return pairs


out = {'conv3x3': {'lax_conv': conv_pairs()}}
for name, spec in json.load(open(sys.argv[1])).items():
  episode = m.make_episodes(spec, count=1, dtype=np.float64)[0]
  params = m.init_params(spec, seed=3, dtype=np.float64)
  assert all(x.dtype == jnp.float64 for x in jax.tree.leaves((params, episode[0], episode[2])))
  value, grads = jax.jit(lambda p, e: m.meta_loss_and_grad(p, e, spec))(params, episode)
  if spec['first_order']:
    checks = {'first_order': pairs_of(grads, first_order_reference(spec, params, episode))}
  else:
    pairs, loss = finite_differences(spec, params, episode, grads)
    checks = {'finite_differences': pairs, 'loss': [[float(value), loss]]}
    if spec['max_pool']:  # the other TASKS: value_and_grad of the vmapped meta-loss
      m.TASKS = 'vmap'
      vmap_value, vmap_grads = jax.jit(lambda p, e: m.meta_loss_and_grad(p, e, spec))(params,
                                                                                       episode)
      m.TASKS = 'map'
      checks['tasks_vmap'] = [[float(vmap_value), float(value)]] + pairs_of(vmap_grads, grads)
  out[name] = checks
print(json.dumps(out))
'''


def test_meta_gradient_float64(float64_check):
  """Second order: finite differences (directional derivatives), and (pool) TASKS 'vmap' == 'map';
  first order: the inner gradients held constant, computed a second way; conv3x3 (im2col) ==
  lax.conv_general_dilated."""
  cases, proc = float64_check
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr
  results = json.loads(stdout.strip().splitlines()[-1])
  assert set(results) == set(cases) | {'conv3x3'}
  for name, checks in results.items():
    if name == 'conv3x3':
      expected = {'lax_conv'}
    else:
      expected = {'first_order'} if cases[name]['first_order'] else {'finite_differences', 'loss'}
      if not cases[name]['first_order'] and cases[name]['max_pool']:
        expected.add('tasks_vmap')
    assert set(checks) == expected, name
    for check, pairs in checks.items():
      scale = max(abs(b) for _, b in pairs)
      assert scale > 0, (name, check)
      # Central differences, eps 1e-6, float64: error ~eps^2 (truncation) + 1e-16 * loss / eps.
      tol = 1e-6 if check == 'finite_differences' else 1e-9
      for a, b in pairs:
        assert math.isfinite(a) and abs(a - b) <= tol * max(scale, 1.0), (name, check, a, b)


def test_peer_imports_no_tensorflow():
  code = ('import sys; import benchmarks.peers.jax_maml; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout
  assert out.strip().splitlines()[-1] == '[]'
