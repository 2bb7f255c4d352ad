"""The JAX peer: MAML (Finn et al. 2017) as one jitted meta-update, built from a work spec alone.

    python -m benchmarks.peers.jax_maml SPEC_JSON ITERATIONS WARMUP

Parameters are a pytree {'fast': {...}, 'beta': (...)}: 'fast' are the weights theta the inner loop
adapts, 'beta' the batch-norm offsets (meta-learned, not adapted). The forward is functional
(NHWC, convolutions as im2col matmuls: see CONV), the inner loop jax.grad (first order:
stop_gradient on the inner gradients), and the meta-gradient of the T tasks (one after another,
lax.map, or jax.vmap: see TASKS), its elementwise clipping and Adam(meta_lr) one jax.jit
(`make_update`). `meta_loss_and_grad` is what the timed step differentiates and what
tests/test_peers_jax.py checks against finite differences.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax

from benchmarks import harness

# How the 3x3 convolutions are computed (images are NHWC throughout, the spec's layout).
# 'im2col' (default): 9 shifted (strided) slices concatenated to patches [n*Ho*Wo, 9*C] and one
# matmul with the kernel [9*C, F]. Its derivatives (and theirs) are slices, pads and matmuls, which
# XLA:CPU runs fast; under vmap with per-task kernels it is a batched matmul.
# 'lax': lax.conv_general_dilated. On XLA:CPU (jaxlib 0.10.2) its backward (kernel gradient, and
# the lhs-dilated input gradient of stride-2 convs) is 3-10x slower than its forward, and under
# vmap with per-task kernels it is a grouped convolution (feature_group_count = T), slower still.
# omniglot_5way_1shot on a busy 2-core machine, CPU-seconds per meta-iteration: 21.6 (lax) vs 0.78
# (im2col) with TASKS 'map'; with 'vmap' at T = 4: 1.2 vs 0.15 (NHWC and NCHW alike for lax), and
# at T = 32 lax took 104 s of wall time per iteration (NCHW). Kept for reference: JAX_MAML_CONV=lax.
CONV = os.environ.get('JAX_MAML_CONV', 'im2col')
# How the T tasks of a meta-batch are differentiated. 'map' (default): lax.map over the tasks of
# each task's value_and_grad, then the mean (a loop inside the jit): one task's activations (and
# the second-order graph's) are live at a time, not T's. 'vmap': jax.value_and_grad of the mean of
# the vmapped task losses. Busy 2-core machine, CPU-seconds per meta-iteration and peak RSS:
# omniglot_5way_1shot 0.79 s / 0.7 GB (map) vs 1.45 s / 1.6 GB (vmap), miniimagenet_5way_1shot
# 4.3 s / 1.8 GB vs 6.0 s / 5.6 GB; map over chunks of 2-8 vmapped tasks was in between; sinusoid
# alike. JAX_MAML_TASKS=vmap runs the other.
TASKS = os.environ.get('JAX_MAML_TASKS', 'map')
BN_EPSILON = 1e-3
# keras.optimizers.Adam's defaults (the project's meta-optimizer)
ADAM_B1, ADAM_B2, ADAM_EPSILON = 0.9, 0.999, 1e-7
NUM_EPISODES = 4  # the pool of synthetic episodes step(i) cycles through


# ----------------------------------------------------------------------------- network

def init_params(spec: dict, seed: int = 0, dtype=np.float32) -> dict:
  """The meta-parameters {'fast': theta, 'beta': batch-norm offsets} of the spec's network.

  conv4: conv{l}_w [3, 3, C_in, F] (HWIO, Glorot uniform), conv{l}_b [F] (zeros), beta: 4 x [F]
  (zeros, empty for norm 'none'); head_w [F, N] N(0, 1) for head 'average' or [5*5*F, N] Glorot for
  'flatten' (the flattened size is computed from input_shape), head_b [N].
  fc: dense{l}_w [in, out] Glorot uniform, dense{l}_b zeros; 1 -> hidden... -> outputs; no beta.
  """
  rng = np.random.default_rng(seed)

  def glorot(shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)

  fast, beta = {}, []
  if spec['network'] == 'fc':
    widths = [spec['input_shape'][0]] + list(spec['hidden']) + [spec['outputs']]
    for l, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
      fast[f'dense{l}_w'] = glorot((a, b), a, b)
      fast[f'dense{l}_b'] = np.zeros(b, dtype)
  else:
    height, _, channels = spec['input_shape']
    filters = spec['num_filters']
    for l in range(4):
      fast[f'conv{l}_w'] = glorot((3, 3, channels, filters), 9 * channels, 9 * filters)
      fast[f'conv{l}_b'] = np.zeros(filters, dtype)
      if spec['norm'] == 'batch_norm':
        beta.append(np.zeros(filters, dtype))
      # SAME stride 2 gives ceil(H / 2); stride 1 + 2x2 VALID max-pool gives floor(H / 2).
      height, channels = (height // 2 if spec['max_pool'] else -(-height // 2)), filters
    if spec['head'] == 'average':
      fast['head_w'] = rng.standard_normal((filters, spec['outputs'])).astype(dtype)
    else:
      flat = height * height * filters
      fast['head_w'] = glorot((flat, spec['outputs']), flat, spec['outputs'])
    fast['head_b'] = np.zeros(spec['outputs'], dtype)
  return jax.tree.map(jnp.asarray, {'fast': fast, 'beta': tuple(beta)})


def batch_norm(x, beta):
  """Offset-only batch norm of x [n, H, W, F]: the current batch's mean and (biased) variance over
  n, H, W, eps 1e-3, plus beta [F]. No scale, no running averages."""
  mean = jnp.mean(x, axis=(0, 1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2), keepdims=True)
  return (x - mean) * lax.rsqrt(var + BN_EPSILON) + beta


def conv3x3(x, w, stride: int):
  """A 3x3 SAME convolution (TF's padding: the extra row/column at the end) of x [n, H, W, C] with
  w [3, 3, C, F] (HWIO): [n, ceil(H / stride), ceil(W / stride), F]."""
  if CONV == 'lax':
    return lax.conv_general_dilated(x, w, (stride, stride), 'SAME',
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  n, h, wd, c = x.shape
  ho, wo = -(-h // stride), -(-wd // stride)
  ph, pw = max((ho - 1) * stride + 3 - h, 0), max((wo - 1) * stride + 3 - wd, 0)
  xp = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  # Patch channels in (dy, dx, c) order, the row order of w reshaped to [9*C, F].
  cols = [xp[:, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride, :]
          for dy in range(3) for dx in range(3)]
  patches = jnp.concatenate(cols, axis=-1).reshape(-1, 9 * c)
  return (patches @ w.reshape(9 * c, -1)).reshape(n, ho, wo, -1)


def forward(fast: dict, beta: tuple, x, spec: dict):
  """The outputs [n, N] (fc: [n, outputs]) of one task's inputs x [n, H, W, C] (fc: [n, 1]).

  conv4: 4 x [conv3x3 + bias, batch norm (beta only), ReLU, (2x2 max-pool)], then the head.
  """
  if spec['network'] == 'fc':
    layers = len(spec['hidden']) + 1
    for l in range(layers):
      x = x @ fast[f'dense{l}_w'] + fast[f'dense{l}_b']
      if l < layers - 1:
        x = jax.nn.relu(x)
    return x
  for l in range(4):
    x = conv3x3(x, fast[f'conv{l}_w'], 1 if spec['max_pool'] else 2) + fast[f'conv{l}_b']
    if spec['norm'] == 'batch_norm':
      x = batch_norm(x, beta[l])
    x = jax.nn.relu(x)
    if spec['max_pool']:
      # reduce_window, not a reshape to [n, H/2, 2, W/2, 2, C] and max: jit(vmap) of the
      # second-order meta-gradient through that reshape-max is miscompiled by XLA:CPU's fusion
      # emitters in jaxlib 0.10.2 (wrong gradients; right eagerly, under lax.map, or with
      # XLA_FLAGS=--xla_cpu_use_fusion_emitters=false).
      x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
  if spec['head'] == 'average':
    x = jnp.mean(x, axis=(1, 2))
  else:
    x = x.reshape(x.shape[0], -1)
  return x @ fast['head_w'] + fast['head_b']


def loss(outputs, labels, spec: dict):
  """'xent': softmax cross-entropy of integer labels [n] summed over the set, divided by K;
  'mse': mean squared error against targets [n, outputs]."""
  if spec['loss'] == 'mse':
    return jnp.mean(jnp.square(outputs - labels))
  picked = jnp.take_along_axis(outputs, labels[:, None], axis=1)[:, 0]
  return jnp.sum(jax.nn.logsumexp(outputs, axis=1) - picked) / spec['support_per_class']


# ----------------------------------------------------------------------------- MAML

def adapt(params: dict, x_support, y_support, spec: dict) -> dict:
  """theta_i: inner_steps of theta <- theta - alpha * grad L_support(theta), beta held fixed.

  Second order: the inner gradients stay in the graph (the meta-gradient differentiates through
  them, beta included); first order: they are constants (stop_gradient).
  """
  beta = params['beta']

  def support_loss(fast):
    return loss(forward(fast, beta, x_support, spec), y_support, spec)

  fast = params['fast']
  for _ in range(spec['inner_steps']):
    grads = jax.grad(support_loss)(fast)
    if spec['first_order']:
      grads = lax.stop_gradient(grads)
    fast = jax.tree.map(lambda w, g: w - spec['inner_lr'] * g, fast, grads)
  return fast


def task_query_loss(params: dict, x_support, y_support, x_query, y_query, spec: dict):
  """One task's query loss L_query(theta_i) after the inner loop."""
  fast = adapt(params, x_support, y_support, spec)
  return loss(forward(fast, params['beta'], x_query, spec), y_query, spec)


def meta_loss(params: dict, episode: tuple, spec: dict):
  """The meta-loss: the mean over the T tasks of the query loss, tasks by jax.vmap.

  episode = (x_support [T, N*K, ...], y_support [T, N*K], x_query [T, N*Q, ...], y_query [T, N*Q])
  (sinusoid: targets [T, K, 1]).
  """
  per_task = jax.vmap(task_query_loss, in_axes=(None, 0, 0, 0, 0, None))
  return jnp.mean(per_task(params, *episode, spec))


def meta_loss_and_grad(params: dict, episode: tuple, spec: dict):
  """(meta-loss, d meta-loss / d params): what the timed meta-update and the tests compute.

  TASKS 'map': the mean over tasks of each task's (query loss, gradient), tasks one after another
  (lax.map), the same numbers as 'vmap': jax.value_and_grad of `meta_loss`.
  """
  if TASKS == 'vmap':
    return jax.value_and_grad(meta_loss)(params, episode, spec)
  values, grads = lax.map(
      lambda task: jax.value_and_grad(task_query_loss)(params, *task, spec), episode)
  return jnp.mean(values), jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)


def adam_init(params: dict) -> dict:
  """Adam's state: the step count and the first and second moments m, v (zeros like params)."""
  # m and v are separate buffers: the jitted update donates (reuses) both.
  return {'step': jnp.zeros((), jnp.int32), 'm': jax.tree.map(jnp.zeros_like, params),
          'v': jax.tree.map(jnp.zeros_like, params)}


def adam_update(params: dict, grads: dict, state: dict, lr: float) -> tuple[dict, dict]:
  """One Adam step in keras.optimizers.Adam's form (bias correction folded into the rate)."""
  step = state['step'] + 1
  t = step.astype(jax.tree.leaves(params)[0].dtype)
  rate = lr * jnp.sqrt(1 - ADAM_B2 ** t) / (1 - ADAM_B1 ** t)
  m = jax.tree.map(lambda m, g: m + (g - m) * (1 - ADAM_B1), state['m'], grads)
  v = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * (1 - ADAM_B2), state['v'], grads)
  params = jax.tree.map(lambda p, m, v: p - rate * m / (jnp.sqrt(v) + ADAM_EPSILON), params, m, v)
  return params, {'step': step, 'm': m, 'v': v}


def make_update(spec: dict):
  """The jitted meta-update (params, adam_state, episode) -> (params, adam_state, meta-loss).

  The meta-gradient is clipped elementwise to [-c, c] if meta_grad_clip is set, then Adam(meta_lr).
  params and the Adam state are donated: updated in place, no copy per iteration.
  """
  clip = spec['meta_grad_clip']

  def update(params, state, episode):
    value, grads = meta_loss_and_grad(params, episode, spec)
    if clip is not None:
      grads = jax.tree.map(lambda g: jnp.clip(g, -clip, clip), grads)
    params, state = adam_update(params, grads, state, spec['meta_lr'])
    return params, state, value

  return jax.jit(update, donate_argnums=(0, 1))


# ----------------------------------------------------------------------------- episodes

def make_episodes(spec: dict, count: int = NUM_EPISODES, seed: int = 1,
                  dtype=np.float32) -> list[tuple]:
  """`count` synthetic episodes (x_support, y_support, x_query, y_query) as device arrays.

  Images: inputs U[0, 1) [T, N*K, H, W, C] / [T, N*Q, H, W, C], integer labels [T, N*K] / [T, N*Q]
  (every class K / Q times, shuffled per task). Sinusoid: x U[-5, 5] [T, K, 1] / [T, Q, 1],
  targets N(0, 1) of the same shapes.
  """
  rng = np.random.default_rng(seed)
  t, n = spec['meta_batch'], spec['num_classes']
  k, q = spec['support_per_class'], spec['query_per_class']
  episodes = []
  for _ in range(count):
    if spec['network'] == 'fc':
      parts = []
      for size in (k, q):
        parts.append(rng.uniform(-5, 5, (t, size, spec['input_shape'][0])).astype(dtype))
        parts.append(rng.standard_normal((t, size, spec['outputs'])).astype(dtype))
    else:
      parts = []
      for per_class in (k, q):
        x = rng.random((t, n * per_class, *spec['input_shape'])).astype(dtype)
        labels = np.stack([rng.permutation(np.repeat(np.arange(n), per_class)) for _ in range(t)])
        parts += [x, labels.astype(np.int32)]
    episodes.append(tuple(jnp.asarray(p) for p in parts))
  return episodes


# ----------------------------------------------------------------------------- command line

def run(spec: dict, iterations: int, warmup: int) -> tuple[dict, dict]:
  """Builds the network and the episode pool from the spec, then times the meta-update."""
  episodes = make_episodes(spec)
  update = make_update(spec)
  params = init_params(spec)
  holder = {'params': params, 'adam': adam_init(params)}

  def step(i):
    holder['params'], holder['adam'], value = update(holder['params'], holder['adam'],
                                                     episodes[i % NUM_EPISODES])
    return value

  def sync(out):
    return float(jax.block_until_ready(out))

  result = harness.measure(step, sync, iterations, warmup)
  versions = {'jax': jax.__version__, 'jaxlib': jaxlib.__version__, 'numpy': np.__version__,
              'python': sys.version.split()[0], 'conv': CONV, 'tasks': TASKS,
              'devices': [str(d) for d in jax.devices()]}
  return result, versions


if __name__ == '__main__':
  harness.peer_main('jax', run)  # the implementation's name in compare.py (PEERS, MODULES)
