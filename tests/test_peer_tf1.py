"""The original 2017 code as a benchmark peer (benchmarks/peers/tf1_original.py).

The driver skips (status 3, one 'skipped:' line) without a checkout; with one (MAML_TF1_ORIGINAL,
or the mirror of github.com/cbfinn/maml cloned into a tmp dir), a tiny run prints a valid JSON line,
and one meta-update of the original is checked against an independent float64 numpy computation
from its own weights on the fed episode: its pre-update loss and its query loss after each inner
step (inner gradients by central differences), its meta-gradient along random directions (central
differences of the meta-loss), and Adam's first step from that gradient.
"""

import json
import math
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip('tensorflow')

ROOT = pathlib.Path(__file__).resolve().parents[1]
MIRROR = pathlib.Path('/work/.mirror/cbfinn+maml/repo')
MODULE = 'benchmarks.peers.tf1_original'
EPS = 1e-3  # tf.contrib batch_norm's epsilon


def tiny_spec(**overrides) -> dict:
  """A valid spec of a small omniglot-like conv row (stride-2 convs, 'average' head)."""
  spec = {'work': 'tiny', 'label': 'tiny', 'experiment': 'tiny', 'network': 'conv4',
          'input_shape': [8, 8, 1], 'hidden': [256, 128, 64, 64], 'num_filters': 3,
          'max_pool': False, 'head': 'average', 'norm': 'batch_norm', 'outputs': 2,
          'num_classes': 2, 'support_per_class': 1, 'query_per_class': 2, 'meta_batch': 2,
          'inner_steps': 2, 'inner_lr': 0.4, 'meta_lr': 0.001, 'first_order': False,
          'meta_grad_clip': None, 'loss': 'xent', 'gflop': 0.0}
  spec.update(overrides)
  return spec


def run_module(args, env_checkout, timeout=300, code=None):
  env = {k: v for k, v in os.environ.items() if k != 'MAML_TF1_ORIGINAL'}
  env.update(TF_CPP_MIN_LOG_LEVEL='3', TF_ENABLE_ONEDNN_OPTS='1')
  if env_checkout is not None:
    env['MAML_TF1_ORIGINAL'] = str(env_checkout)
  command = [sys.executable, '-c', code] if code else [sys.executable, '-m', MODULE]
  return subprocess.run(command + list(args), capture_output=True, text=True, env=env, cwd=ROOT,
                        timeout=timeout)


@pytest.fixture(scope='module')
def original(tmp_path_factory):
  """A checkout of github.com/cbfinn/maml: MAML_TF1_ORIGINAL, else the mirror cloned, else skip."""
  if os.environ.get('MAML_TF1_ORIGINAL'):
    return pathlib.Path(os.environ['MAML_TF1_ORIGINAL'])
  if not MIRROR.exists():
    pytest.skip('no checkout of github.com/cbfinn/maml (set MAML_TF1_ORIGINAL)')
  path = tmp_path_factory.mktemp('cbfinn') / 'maml'
  subprocess.run(['git', 'clone', '-q', str(MIRROR), str(path)], check=True, timeout=120)
  return path


def test_without_a_checkout_it_skips_with_one_line(tmp_path):
  spec = tmp_path / 'spec.json'
  spec.write_text(json.dumps(tiny_spec()))
  for checkout in (None, tmp_path):  # unset; a directory without maml.py
    proc = run_module([str(spec), '2', '1'], checkout)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('skipped: ') and 'MAML_TF1_ORIGINAL' in lines[0]
    assert proc.stdout == ''


def test_a_spec_the_original_cannot_express_is_skipped(tmp_path, original):
  spec = tmp_path / 'spec.json'
  spec.write_text(json.dumps(tiny_spec(head='flatten')))  # omniglot's head is 'average'
  proc = run_module([str(spec), '2', '1'], original)
  assert proc.returncode == 3 and proc.stderr.strip().splitlines() == [
      'skipped: the original cannot express this spec: head flatten on omniglot (the original: '
      'average)']


def test_tiny_run_prints_one_json_line(tmp_path, original):
  spec = tmp_path / 'spec.json'
  spec.write_text(json.dumps(tiny_spec(input_shape=[28, 28, 1], num_classes=3, outputs=3,
                                       inner_steps=1)))
  proc = run_module([str(spec), '3', '1'], original)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1
  line = json.loads(lines[0])
  assert line['impl'] == 'tf1_original' and line['work'] == 'tiny'
  assert line['iterations'] == 3 and line['warmup'] == 1 and line['chunks'] == 1
  for key in ('compile_s', 'its_median', 'its_mean', 'its_min', 'its_max', 'final_loss',
              'peak_rss_mb'):
    assert math.isfinite(line[key]), key
  assert line['its_median'] > 0 and line['peak_rss_mb'] > 0
  assert line['versions']['cbfinn_maml'] == subprocess.run(
      ['git', '-C', str(original), 'rev-parse', 'HEAD'], capture_output=True,
      text=True).stdout.strip()


# --- An independent float64 numpy MAML of the original's network ---------------------------------
# Every function takes S parameter sets at once (weights {name: [S, ...]}, betas [4][S, F]), so the
# central differences of all P parameters are one forward of 2P sets.

def conv_same(h, w, stride):
  """TensorFlow's SAME conv: h [S or 1, B, H, W, C], w [S, 3, 3, C, F] -> [S, B, H', W', F];
  odd padding goes bottom/right."""
  size = h.shape[2]
  out = -(-size // stride)
  pad = max((out - 1) * stride + 3 - size, 0)
  hp = np.pad(h, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)))
  span = stride * (out - 1) + 1
  patches = np.stack([hp[:, :, i:i + span:stride, j:j + span:stride]
                      for i in range(3) for j in range(3)], 4)  # [S, B, out, out, 9, C]
  s, b = max(h.shape[0], w.shape[0]), h.shape[1]
  patches = np.broadcast_to(patches, (s,) + patches.shape[1:]).reshape(s, b * out * out, -1)
  return np.matmul(patches, w.reshape(w.shape[0], -1, w.shape[-1])).reshape(s, b, out, out, -1)


def forward(spec, weights, betas, x):
  """The spec's conv4 (batch statistics, beta only, eps 1e-3) on flattened x [B, H*W*C]:
  logits [S, B, N]."""
  h = x.reshape([1, -1] + list(spec['input_shape']))
  for i in range(4):
    h = conv_same(h, weights[f'conv{i + 1}'], 1 if spec['max_pool'] else 2)
    h = h + weights[f'b{i + 1}'][:, None, None, None]
    mean, var = h.mean((1, 2, 3), keepdims=True), h.var((1, 2, 3), keepdims=True)
    h = np.maximum((h - mean) / np.sqrt(var + EPS) + betas[i][:, None, None, None], 0)
    if spec['max_pool']:
      n = h.shape[2] // 2
      h = h[:, :, :2 * n, :2 * n].reshape(h.shape[:2] + (n, 2, n, 2, -1)).max((3, 5))
  h = h.reshape(h.shape[:2] + (-1,)) if spec['head'] == 'flatten' else h.mean((2, 3))
  return np.matmul(h, weights['w5']) + weights['b5'][:, None]


def xent(spec, weights, betas, x, y):
  """Softmax cross-entropy summed over the set, divided by K: [S]."""
  z = forward(spec, weights, betas, x)
  z = z - z.max(-1, keepdims=True)
  log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -(y * log_softmax).sum((1, 2)) / spec['support_per_class']


def fd_grad(f, weights, h=1e-6):
  """Central differences of f (S sets -> [S]) at one set of weights {name: [1, ...]}."""
  names = list(weights)
  theta = np.concatenate([weights[k].ravel() for k in names])
  sets = theta + h * np.concatenate([np.eye(theta.size), -np.eye(theta.size)])  # [2P, P]
  values = f(unflatten(sets, weights))
  return unflatten(((values[:theta.size] - values[theta.size:]) / (2 * h))[None], weights)


def unflatten(vectors, like):
  """[S, P] -> {name: [S, ...]} with the shapes of `like`'s sets."""
  out, start = {}, 0
  for k, v in like.items():
    size = v[0].size
    out[k] = vectors[:, start:start + size].reshape((-1,) + v.shape[1:])
    start += size
  return out


def adapt(spec, weights, betas, task):
  """theta' after each inner step of one task (the inner gradients by central differences)."""
  steps = []
  for _ in range(spec['inner_steps']):
    g = fd_grad(lambda w: xent(spec, w, betas, task['inputa'], task['labela']), weights)
    weights = {k: weights[k] - spec['inner_lr'] * g[k] for k in weights}
    steps.append(weights)
  return steps


def split(params):
  """params {name: array} (the original's names) -> (weights {name: [1, ...]}, betas [4][1, F])."""
  weights = {k: v.astype(np.float64)[None] for k, v in params.items() if '/' not in k}
  betas = [params[f'model/{i}/beta'].astype(np.float64)[None] for i in range(4)]
  return weights, betas


def tasks(spec, episode):
  """The episode's T tasks: {inputa, labela, inputb, labelb} in float64."""
  return [{k: v[t].astype(np.float64) for k, v in episode.items()}
          for t in range(spec['meta_batch'])]


def meta_loss(spec, params, episode):
  weights, betas = split(params)
  return np.mean([xent(spec, adapt(spec, weights, betas, task)[-1], betas, task['inputb'],
                       task['labelb'])[0] for task in tasks(spec, episode)])


def first_order_loss(spec, params, theta, adapted, episode):
  """Query loss at theta'_t + (params - theta), theta'_t held: its gradient is first order's
  (with respect to the weights at theta'_t, and to beta with theta'_t held)."""
  weights, betas = split(params)
  return np.mean([xent(spec, {k: w[k] + weights[k] - theta[k] for k in w}, betas, task['inputb'],
                       task['labelb'])[0] for w, task in zip(adapted, tasks(spec, episode))])


CHECK_SPECS = {
    'second_order': tiny_spec(),
    'first_order': tiny_spec(first_order=True, inner_steps=1),
    # The MiniImagenet path: 3 channels, max-pool, 5x5 flatten head, the clip to [-10, 10].
    'max_pool': tiny_spec(input_shape=[84, 84, 3], num_filters=1, max_pool=True, head='flatten',
                          meta_grad_clip=10.0, meta_batch=1, inner_steps=1, inner_lr=0.01,
                          query_per_class=1),
}


@pytest.fixture(scope='module')
def original_steps(original, tmp_path_factory):
  """original_step() of each CHECK_SPECS entry, run in one TF1-mode process."""
  out = tmp_path_factory.mktemp('tf1') / 'steps.pkl'
  code = ('import json, pickle, sys\n'
          'from benchmarks.peers import tf1_original\n'
          'specs = json.loads(sys.argv[1])\n'
          'steps = {k: tf1_original.original_step(s) for k, s in specs.items()}\n'
          'pickle.dump(steps, open(sys.argv[2], "wb"))\n')
  proc = run_module([json.dumps(CHECK_SPECS), str(out)], original, code=code)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out, 'rb') as f:
    return pickle.load(f)


@pytest.mark.parametrize('case', list(CHECK_SPECS))
def test_one_meta_update_of_the_original_matches_numpy(case, original_steps):
  spec, step = CHECK_SPECS[case], original_steps[case]
  episode, before = step['episode'], step['before']
  assert set(step['grads']) == set(before) == set(step['after'])
  weights, betas = split(before)
  assert set(weights) == {'conv1', 'b1', 'conv2', 'b2', 'conv3', 'b3', 'conv4', 'b4', 'w5', 'b5'}

  # Its losses: pre-update support loss and the query loss after each inner step, mean over T.
  support = np.mean([xent(spec, weights, betas, t['inputa'], t['labela'])[0]
                     for t in tasks(spec, episode)])
  np.testing.assert_allclose(step['loss1'], support, rtol=1e-5)
  adapted = [adapt(spec, weights, betas, t) for t in tasks(spec, episode)]
  for j in range(spec['inner_steps']):
    query = np.mean([xent(spec, a[j], betas, t['inputb'], t['labelb'])[0]
                     for a, t in zip(adapted, tasks(spec, episode))])
    np.testing.assert_allclose(step['losses2'][j], query, rtol=2e-4)

  # Its meta-gradient along random directions (second order: through the inner steps; first
  # order: at the adapted weights, the inner gradients held).
  rng = np.random.default_rng(0)
  if spec['first_order']:
    loss = lambda p: first_order_loss(spec, p, weights, [a[-1] for a in adapted], episode)
  else:
    loss = lambda p: meta_loss(spec, p, episode)
  for _ in range(2):
    d = {k: rng.standard_normal(v.shape) for k, v in before.items()}
    s = 1e-6  # small: max-pool and ReLU switches make the meta-loss only piecewise smooth
    plus = loss({k: v.astype(np.float64) + s * d[k] for k, v in before.items()})
    minus = loss({k: v.astype(np.float64) - s * d[k] for k, v in before.items()})
    along = sum(float((step['grads'][k] * d[k]).sum()) for k in d)
    np.testing.assert_allclose(along, (plus - minus) / (2 * s), rtol=2e-3)

  # Adam's first step (TF1: lr_t = beta sqrt(1 - b2) / (1 - b1), m / (sqrt(v) + 1e-8)) from its
  # (clipped) meta-gradient.
  for k, g in step['grads'].items():
    if spec['meta_grad_clip'] is not None:
      g = np.clip(g, -spec['meta_grad_clip'], spec['meta_grad_clip'])
    m, v = 0.1 * g, 0.001 * np.square(g)
    lr_t = spec['meta_lr'] * math.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(step['after'][k] - before[k], -lr_t * m / (np.sqrt(v) + 1e-8),
                               rtol=1e-3, atol=1e-7, err_msg=k)
