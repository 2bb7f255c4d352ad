"""MAML with the `higher` library: a torch.nn.Module, higher.innerloop_ctx and a differentiable SGD.

The work is the spec's (benchmarks/work.py `spec()`), read from JSON; the initial theta, the
synthetic episodes and the loss are torch_func's (`init_params`, `episodes`, `loss_fn`), so both
PyTorch peers start from the same numbers. As higher's own MAML example (examples/maml-omniglot.py)
does, one meta-iteration loops over the T tasks: higher.innerloop_ctx(net, inner SGD(lr = alpha),
copy_initial_weights=False, track_higher_grads=not first_order) gives the task's fast weights,
diffopt.step(support loss) inner_steps times, then the task's query loss / T is differentiated at
once (the tasks' meta-gradients accumulate in theta's .grad, so one task's graph is freed before the
next is built); then the elementwise clip if the spec has one, and torch.optim.Adam(beta = meta_lr).

Batch norm's beta is not adapted: the inner SGD holds only the other parameters (higher then keeps a
parameter outside every group as it is: the same tensor, no `beta - 0 * g`), which keeps the
arithmetic identical to torch_func's and wastes no work on a zero step. higher still differentiates
each support loss with respect to every fast parameter, beta too (as a group lr of 0 would), and
with create_graph those unused beta gradients make the meta-gradient's backward do more work, a
cost growing with the steps: torch_func's code requesting them too runs 174 instead of 74
convolutions per task on omniglot_20way_1shot (5 steps), the same 18 with 1 step. So higher is about
half torch_func's speed on the 5-step second-order works and level with it on the 1-step one.

First order: higher's track_higher_grads=False detaches the fast weights after every inner step, so
the query loss's gradient with respect to the last fast weights (which is the first-order
meta-gradient) is taken with torch.autograd.grad and added to theta's .grad; beta is the same tensor
throughout, so its entry is its direct gradient, as in torch_func.
"""

from __future__ import annotations

import importlib.metadata
import math
import sys

import higher
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks import harness
from benchmarks.peers import torch_func

POOL = torch_func.POOL


class BetaNorm(nn.Module):
  """Batch norm with an offset beta [width] only: statistics of each call's batch, eps 1e-3."""

  def __init__(self, width: int):
    super().__init__()
    self.beta = nn.Parameter(torch.zeros(width))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, None, None, weight=None, bias=self.beta, training=True,
                        eps=torch_func.EPS)


class Net(nn.Module):
  """conv4 (4 x [3x3 conv, F filters; BetaNorm; ReLU (; 2x2 max-pool)] + head) or fc, from the spec.

  Input [B, C, H, W] (conv4) or [B, D] (fc); output logits [B, outputs]. Parameter names are
  torch_func.init_params' keys.
  """

  def __init__(self, spec: dict):
    super().__init__()
    self.spec = spec
    self.conv = spec['network'] == 'conv4'
    if self.conv:
      h, _, c = spec['input_shape']
      f = spec['num_filters']
      widths = [f] * 4
      self.layers = nn.ModuleList(
          nn.Conv2d(c if i == 0 else f, f, 3, stride=1 if spec['max_pool'] else 2, padding=1)
          for i in range(4))
      for _ in range(4):
        h = h // 2 if spec['max_pool'] else -(-h // 2)
      features = h * h * f if spec['head'] == 'flatten' else f
    else:
      widths = list(spec['hidden'])
      ins = [math.prod(spec['input_shape'])] + widths[:-1]
      self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(ins, widths))
      features = widths[-1]
    self.norms = (nn.ModuleList(BetaNorm(w) for w in widths) if spec['norm'] == 'batch_norm'
                  else None)
    self.head = nn.Linear(features, spec['outputs'])

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if self.norms is not None:
        x = self.norms[i](x)
      x = F.relu(x)
      if self.conv and self.spec['max_pool']:
        x = F.max_pool2d(x, 2)
    if self.conv:
      x = x.mean((2, 3)) if self.spec['head'] == 'average' else x.flatten(1)
    return self.head(x)


def build(spec: dict, params: dict[str, torch.Tensor] | None = None
          ) -> tuple[Net, torch.optim.SGD]:
  """The network (theta = `params`, default torch_func.init_params) and the inner SGD(lr = alpha).

  The SGD holds every parameter but batch norm's beta, which the inner loop does not adapt.
  """
  params = torch_func.init_params(spec) if params is None else params
  net = Net(spec).to(next(iter(params.values())).dtype)
  net.load_state_dict({k: v.detach() for k, v in params.items()})
  inner = [p for name, p in net.named_parameters() if torch_func.adapted(name)]
  return net, torch.optim.SGD(inner, lr=spec['inner_lr'])


def meta_loss_and_grad(spec: dict, net: Net, inner_opt: torch.optim.SGD, episode
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
  """The meta-loss (mean over the T tasks of the adapted query loss) and its gradient.

  episode: (x_support, y_support, x_query, y_query), task on axis 0 (torch_func.episodes). Leaves
  the meta-gradient in net's .grad too (Adam reads it). Returns (the meta-loss, detached;
  {name: d meta-loss / d theta}).
  """
  first_order = spec['first_order']
  t = episode[0].shape[0]
  params = list(net.parameters())
  net.zero_grad()  # .grad None: the first task's gradient allocates it
  total = 0.0
  for xs, ys, xq, yq in zip(*episode):
    with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False,
                              track_higher_grads=not first_order) as (fnet, diffopt):
      for _ in range(spec['inner_steps']):
        diffopt.step(torch_func.loss_fn(spec, fnet(xs), ys))
      query_loss = torch_func.loss_fn(spec, fnet(xq), yq) / t
      if first_order:
        # The fast weights are detached leaves: their gradient is the first-order meta-gradient.
        for p, g in zip(params, torch.autograd.grad(query_loss, list(fnet.parameters()))):
          p.grad = g if p.grad is None else p.grad + g
      else:
        query_loss.backward()
    total += query_loss.detach()
  return total, {name: p.grad for name, p in net.named_parameters()}


def run(spec: dict, iterations: int, warmup: int) -> tuple[dict, dict]:
  """harness.peer_main's run: the network and episodes from the spec, then measure() the steps."""
  net, inner_opt = build(spec)
  pool = torch_func.episodes(spec)
  meta_opt = torch.optim.Adam(net.parameters(), lr=spec['meta_lr'])
  clip = spec['meta_grad_clip']

  def step(i):
    loss, _ = meta_loss_and_grad(spec, net, inner_opt, pool[i % POOL])
    if clip is not None:
      for p in net.parameters():
        p.grad.clamp_(-clip, clip)
    meta_opt.step()
    return loss

  result = harness.measure(step, lambda loss: float(loss), iterations, warmup)
  versions = {'torch': torch.__version__, 'higher': importlib.metadata.version('higher'),
              'python': sys.version.split()[0], 'torch_threads': torch.get_num_threads()}
  return result, versions


if __name__ == '__main__':
  harness.peer_main('higher', run)  # the implementation's name in compare.py (PEERS, MODULES)
