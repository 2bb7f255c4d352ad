"""The PyTorch peers of the speed comparison (benchmarks/peers/torch_func.py, higher_maml.py).

Each runs as the comparison runs it (a subprocess printing one JSON line) on tiny specs, and its
meta-gradient is checked: torch_func's against central finite differences of its meta-loss
(float64), higher's against torch_func's on the same theta and episode.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

import peer_specs

torch = pytest.importorskip('torch')

from benchmarks.peers import torch_func  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module', autouse=True)
def one_thread():
  """One PyTorch thread, as conftest.py gives TensorFlow: pytest runs two processes on two cores,
  and two OpenMP threads per process then wait at every small op's barrier for a descheduled peer
  (these tiny steps took 10x longer)."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def specs():
  """Tiny valid specs edited from work.py's (read in a subprocess: work.py imports TensorFlow).

  'second_order': 8x8x1 images, stride-2 convs, 'average' head, 2 inner steps; 'first_order':
  16x16x3 images, max-pool, 'flatten' head, clip 10; 'second_order_pool': that one second order;
  'sinusoid': meta-batch 2.
  """
  omniglot, mini_first_order, sinusoid = peer_specs.work_specs(
      'omniglot_5way_1shot', 'miniimagenet_5way_1shot_first_order', 'sinusoid')
  tiny = dict(num_filters=3, num_classes=2, outputs=2, query_per_class=2, meta_batch=2,
              inner_steps=2, work='tiny')
  first_order = dict(mini_first_order, input_shape=[16, 16, 3], **tiny)
  return {'second_order': dict(omniglot, input_shape=[8, 8, 1], **tiny),
          'first_order': first_order,
          'second_order_pool': dict(first_order, first_order=False),
          'sinusoid': dict(sinusoid, meta_batch=2, work='tiny')}


@pytest.mark.parametrize('module,impl,spec_name', [('torch_func', 'torch_func', 'second_order'),
                                                   ('torch_func', 'torch_func', 'sinusoid'),
                                                   ('higher_maml', 'higher', 'first_order')])
def test_peer_prints_one_record(module, impl, spec_name, specs, tmp_path):
  if impl == 'higher':
    pytest.importorskip('higher')
  path = tmp_path / 'spec.json'
  path.write_text(json.dumps(specs[spec_name]))
  proc = subprocess.run([sys.executable, '-m', f'benchmarks.peers.{module}', str(path), '3', '1'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env={**os.environ, 'OMP_NUM_THREADS': '1'})
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1, proc.stdout
  record = json.loads(lines[0])
  assert record['impl'] == impl and record['work'] == 'tiny'  # compare.py's names
  assert record['iterations'] == 3 and record['warmup'] == 1 and record['chunks'] == 1
  for key in ('its_median', 'its_mean', 'compile_s', 'final_loss', 'peak_rss_mb'):
    assert math.isfinite(record[key]) and record[key] >= 0, key
  assert record['its_median'] > 0 and record['versions']['torch'] == torch.__version__


def test_peers_import_no_tensorflow():
  pytest.importorskip('higher')
  code = ('import sys; import benchmarks.peers.torch_func, benchmarks.peers.higher_maml; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout
  assert out.strip() == '[]'


def _meta(spec):
  """theta and one episode in float64."""
  return (torch_func.init_params(spec, dtype=torch.float64),
          torch_func.episodes(spec, count=1, dtype=torch.float64)[0])


@pytest.mark.parametrize('spec_name', ['second_order', 'second_order_pool'])
def test_torch_func_meta_gradient_is_the_finite_differences(spec_name, specs):
  spec = specs[spec_name]
  params, episode = _meta(spec)
  _, grads = torch_func.meta_loss_and_grad(spec, params, episode)
  gen = torch.Generator().manual_seed(3)
  eps = 1e-6
  for _ in range(3):
    direction = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}

    def meta_loss(sign):
      moved = {k: (v + sign * eps * direction[k]).detach().requires_grad_()
               for k, v in params.items()}
      return float(torch_func.meta_loss_and_grad(spec, moved, episode)[0])

    numeric = (meta_loss(1) - meta_loss(-1)) / (2 * eps)
    analytic = float(sum((grads[k] * direction[k]).sum() for k in params))
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize('spec_name', ['second_order', 'first_order', 'second_order_pool'])
def test_higher_meta_gradient_is_torch_funcs(spec_name, specs):
  pytest.importorskip('higher')
  from benchmarks.peers import higher_maml
  spec = specs[spec_name]
  params, episode = _meta(spec)
  loss, grads = torch_func.meta_loss_and_grad(spec, params, episode)
  net, inner_opt = higher_maml.build(spec, params)
  # The inner SGD holds every parameter but batch norm's beta, which the inner loop does not adapt.
  held = {id(p) for group in inner_opt.param_groups for p in group['params']}
  assert {n for n, p in net.named_parameters() if id(p) not in held} == {
      f'norms.{i}.beta' for i in range(4)}
  higher_loss, higher_grads = higher_maml.meta_loss_and_grad(spec, net, inner_opt, episode)
  assert float(higher_loss) == pytest.approx(float(loss), rel=1e-12)
  assert set(higher_grads) == set(grads)
  for name in grads:
    torch.testing.assert_close(higher_grads[name], grads[name], rtol=1e-10, atol=1e-12,
                               msg=name)
  # First order differs from second order: the check would catch a flag that does nothing.
  other = dict(spec, first_order=not spec['first_order'])
  _, other_grads = torch_func.meta_loss_and_grad(other, params, episode)
  assert not torch.allclose(other_grads['layers.0.weight'], grads['layers.0.weight'])
