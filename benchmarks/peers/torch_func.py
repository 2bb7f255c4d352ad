"""MAML in plain functional PyTorch: theta a dict of tensors, a torch.nn.functional forward.

The work is the spec's (benchmarks/work.py `spec()`), read from JSON; nothing of the project but
benchmarks.harness is imported. One meta-iteration: for each of the T tasks, theta_i <- theta_i -
alpha * grad L_support(theta_i), inner_steps times (second order: the inner gradients are
differentiated through; first order: they are constants), then the meta-loss (the query loss of the
adapted theta_i, mean over the T tasks), its gradient with respect to theta by reverse mode, the
elementwise clip if the spec has one, and torch.optim.Adam(beta = meta_lr).

Tasks: a Python loop over the T tasks, torch.autograd.grad(create_graph=not first_order) for the
inner gradients, each task's share of the meta-gradient taken before the next task's graph is built.
torch.func.vmap over the meta-batch (torch.func.grad inside; F.batch_norm works under vmap; the
per-task conv weights become grouped convolutions) was measured against it on
omniglot_5way_1shot and is slower: 1.55 CPU-s per meta-iteration against 0.96 for the loop (one
thread, CPU time, as the machine was too busy for wall-clock rates), and it holds every task's
graph at once. (With PyTorch's default two OpenMP threads on that busy machine, the loop's many
small ops spun at OpenMP barriers waiting for threads the other processes held, and vmap's fewer,
bigger ops came out ahead, 0.067 it/s against 0.018; OMP_WAIT_POLICY=PASSIVE removes that.)
torch.compile is not used: it does not support the double backward of second-order MAML.

Layout NCHW (PyTorch's fast one). The SAME padding of the stride-2 convs is symmetric padding 1
here: the same output sizes as TensorFlow's, which pads only bottom/right when the total is odd.
Batch norm: F.batch_norm without running statistics, weight None, bias beta, eps 1e-3; beta is
meta-learned but not adapted in the inner loop.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

from benchmarks import harness

POOL = 4  # episodes generated before timing; step(i) uses episode i % POOL
EPS = 1e-3  # batch norm's epsilon


def hidden_layers(spec: dict) -> int:
  """The number of hidden layers: 4 convs (conv4) or len(hidden) dense layers (fc)."""
  return 4 if spec['network'] == 'conv4' else len(spec['hidden'])


def _glorot(shape: tuple[int, ...], fan_in: int, fan_out: int, gen: torch.Generator,
            dtype: torch.dtype) -> torch.Tensor:
  limit = math.sqrt(6 / (fan_in + fan_out))
  return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * limit


def init_params(spec: dict, seed: int = 0, dtype: torch.dtype = torch.float32
                ) -> dict[str, torch.Tensor]:
  """theta as a dict of leaf tensors requiring grad, named as higher_maml.Net's parameters.

  conv4: layers.i.weight [F, C_in, 3, 3] (Glorot uniform), layers.i.bias [F] (0); fc:
  layers.i.weight [out, in], layers.i.bias [out]. norms.i.beta [width] (0) if batch norm.
  head.weight [N, features] (N(0, 1) for the 'average' head, Glorot otherwise), head.bias [N] (0).
  """
  gen = torch.Generator().manual_seed(seed)
  params = {}
  if spec['network'] == 'conv4':
    h, _, c = spec['input_shape']
    f = spec['num_filters']
    widths = [f] * 4
    for i in range(4):
      params[f'layers.{i}.weight'] = _glorot((f, c, 3, 3), 9 * c, 9 * f, gen, dtype)
      params[f'layers.{i}.bias'] = torch.zeros(f, dtype=dtype)
      h, c = -(-h // 2) if not spec['max_pool'] else h // 2, f  # stride 2 SAME, or 2x2 VALID pool
    features = h * h * f if spec['head'] == 'flatten' else f
  else:
    widths = list(spec['hidden'])
    fan_in = math.prod(spec['input_shape'])
    for i, width in enumerate(widths):
      params[f'layers.{i}.weight'] = _glorot((width, fan_in), fan_in, width, gen, dtype)
      params[f'layers.{i}.bias'] = torch.zeros(width, dtype=dtype)
      fan_in = width
    features = fan_in
  if spec['norm'] == 'batch_norm':
    for i, width in enumerate(widths):
      params[f'norms.{i}.beta'] = torch.zeros(width, dtype=dtype)
  n = spec['outputs']
  if spec['network'] == 'conv4' and spec['head'] == 'average':
    params['head.weight'] = torch.randn((n, features), generator=gen, dtype=dtype)
  else:
    params['head.weight'] = _glorot((n, features), features, n, gen, dtype)
  params['head.bias'] = torch.zeros(n, dtype=dtype)
  return {k: v.requires_grad_() for k, v in params.items()}


def episodes(spec: dict, count: int = POOL, seed: int = 1, dtype: torch.dtype = torch.float32
             ) -> list[tuple[torch.Tensor, ...]]:
  """`count` synthetic episodes (x_support, y_support, x_query, y_query).

  Images: x [T, N*K, C, H, W] (NCHW) U[0, 1), y [T, N*K] int64 class ids, each class K times (Q
  times in the query), shuffled per task. Sinusoid ('mse'): x [T, K, 1] U[-5, 5], y [T, K, 1]
  N(0, 1).
  """
  gen = torch.Generator().manual_seed(seed)
  t, n = spec['meta_batch'], spec['num_classes']

  def images(per_class):
    x = torch.rand((t, n * per_class, *spec['input_shape']), generator=gen, dtype=dtype)
    if spec['network'] == 'conv4':
      x = x.permute(0, 1, 4, 2, 3).contiguous()  # NHWC -> NCHW
    else:
      x = x.flatten(2)
    labels = torch.arange(n).repeat(per_class)
    y = torch.stack([labels[torch.randperm(n * per_class, generator=gen)] for _ in range(t)])
    return x, y

  def points(count_):
    x = torch.rand((t, count_, 1), generator=gen, dtype=dtype) * 10 - 5
    return x, torch.randn((t, count_, 1), generator=gen, dtype=dtype)

  make = points if spec['loss'] == 'mse' else images
  return [(*make(spec['support_per_class']), *make(spec['query_per_class'])) for _ in range(count)]


def forward(spec: dict, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
  """The network on one task's inputs x [B, C, H, W] (conv4) or [B, D] (fc): logits [B, outputs]."""
  conv = spec['network'] == 'conv4'
  for i in range(hidden_layers(spec)):
    w, b = params[f'layers.{i}.weight'], params[f'layers.{i}.bias']
    if conv:
      x = F.conv2d(x, w, b, stride=1 if spec['max_pool'] else 2, padding=1)
    else:
      x = F.linear(x, w, b)
    if spec['norm'] == 'batch_norm':
      # This batch's statistics on every call (training=True, no running averages); offset only.
      x = F.batch_norm(x, None, None, weight=None, bias=params[f'norms.{i}.beta'], training=True,
                       eps=EPS)
    x = F.relu(x)
    if conv and spec['max_pool']:
      x = F.max_pool2d(x, 2)
  if conv:
    x = x.mean((2, 3)) if spec['head'] == 'average' else x.flatten(1)
  return F.linear(x, params['head.weight'], params['head.bias'])


def loss_fn(spec: dict, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
  """'xent': softmax cross-entropy summed over the set / K (the original's); 'mse': the mean."""
  if spec['loss'] == 'xent':
    return F.cross_entropy(logits, y, reduction='sum') / spec['support_per_class']
  return F.mse_loss(logits, y)


def adapted(name: str) -> bool:
  """Whether the inner loop updates this parameter (every one but batch norm's beta)."""
  return not name.startswith('norms.')


def task_query_loss(spec: dict, params: dict[str, torch.Tensor], xs, ys, xq, yq) -> torch.Tensor:
  """One task's query loss after inner_steps steps of size alpha on its support set (xs, ys)."""
  fixed = {k: v for k, v in params.items() if not adapted(k)}
  fast = {k: v for k, v in params.items() if adapted(k)}
  for _ in range(spec['inner_steps']):
    support_loss = loss_fn(spec, forward(spec, {**fixed, **fast}, xs), ys)
    grads = torch.autograd.grad(support_loss, list(fast.values()),
                                create_graph=not spec['first_order'])
    fast = {k: v - spec['inner_lr'] * g for (k, v), g in zip(fast.items(), grads)}
  return loss_fn(spec, forward(spec, {**fixed, **fast}, xq), yq)


def meta_loss_and_grad(spec: dict, params: dict[str, torch.Tensor], episode
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
  """The meta-loss (mean over the T tasks of the query loss after adaptation) and its gradient.

  params: theta (leaf tensors requiring grad); episode: (x_support, y_support, x_query, y_query)
  with the task on axis 0. Returns (the meta-loss, detached; {name: d meta-loss / d theta}).
  """
  t = episode[0].shape[0]
  total, meta_grads = 0.0, None
  for task in zip(*episode):
    # Each task's share of the meta-gradient at once, so its graph is freed before the next is
    # built: the same time as one gradient of the summed losses, 294 MB peak RSS instead of 734.
    loss = task_query_loss(spec, params, *task) / t
    grads = torch.autograd.grad(loss, list(params.values()))
    meta_grads = grads if meta_grads is None else [a + b for a, b in zip(meta_grads, grads)]
    total += loss.detach()
  return total, dict(zip(params, meta_grads))


def run(spec: dict, iterations: int, warmup: int) -> tuple[dict, dict]:
  """harness.peer_main's run: the network and episodes from the spec, then measure() the steps."""
  params = init_params(spec)
  pool = episodes(spec)
  optimizer = torch.optim.Adam(params.values(), lr=spec['meta_lr'])
  clip = spec['meta_grad_clip']

  def step(i):
    loss, grads = meta_loss_and_grad(spec, params, pool[i % POOL])
    for name, p in params.items():
      p.grad = grads[name] if clip is None else grads[name].clamp(-clip, clip)
    optimizer.step()
    return loss

  result = harness.measure(step, lambda loss: float(loss), iterations, warmup)
  versions = {'torch': torch.__version__, 'python': sys.version.split()[0],
              'torch_threads': torch.get_num_threads()}
  return result, versions


if __name__ == '__main__':
  harness.peer_main('torch_func', run)
