"""The work every implementation does in the speed comparison: one definition, read by all.

A Work names a row of the experiments table and the queries per class each task processes. Its
`spec()` is a plain dict (JSON) of everything a peer needs to build the same network and episodes
(shapes, N, K, queries, meta-batch T, inner steps and alpha, beta, order, normalization, loss), so
the peers (PyTorch, JAX, the original TF1 code) read the row without importing TensorFlow 2, and the
project's own `--benchmark` runs the same row with the same overrides (`config()`, `main_flags()`).
"""

from __future__ import annotations

import dataclasses

import experiments
from experiments import Config
import image_datasets

SAME_QUERIES = 15  # queries per class of the comparison: what the PyTorch peers' examples process


@dataclasses.dataclass(frozen=True)
class Work:
  """One row of the comparison.

  name: the key of the results (JSON lines, README rows).
  experiment: the experiments-table row whose network, episodes and optimizer are used.
  query_per_class: queries per class at training; None keeps the row's own (its default table).
  label: the README's description of the work.
  own_default: True for the rows that show the project's default episodes, not the shared work.
  """
  name: str
  experiment: str
  query_per_class: int | None
  label: str
  own_default: bool = False

  def config(self) -> Config:
    """The project's config of this work: the row, with the queries per class overridden."""
    cfg = experiments.get(self.experiment)
    if self.query_per_class is not None and cfg.datasource != 'sinusoid':
      cfg = cfg.replace(query_size=self.query_per_class)
    return cfg.validate()

  def main_flags(self) -> list[str]:
    """The flags of `python main.py --benchmark` that give `config()`."""
    flags = [f'--experiment={self.experiment}']
    if self.config().query_size != experiments.get(self.experiment).query_size:
      flags.append(f'--query_size={self.query_per_class}')
    return flags

  def spec(self) -> dict:
    """Everything another implementation needs to do the same work (JSON-serializable).

    Keys: work, label, experiment; network 'fc' (hidden widths) or 'conv4' (num_filters F, max_pool:
    stride-1 convs + 2x2 max-pool, else stride-2 convs; head 'average' (mean over H, W, then [F, N])
    or 'flatten'); input_shape; norm 'batch_norm' (beta only, eps 1e-3, statistics of each forward
    call's batch, not adapted in the inner loop) or 'none'; outputs; num_classes N; support_per_class
    K and query_per_class (sinusoid: points, N = 1); meta_batch T; inner_steps; inner_lr alpha;
    meta_lr beta (Adam); first_order; meta_grad_clip (elementwise, or None); loss 'mse' (mean) or
    'xent' (softmax cross-entropy summed over the set and divided by K, the original's); flop
    estimate per meta-iteration (`flops()`).
    """
    cfg = self.config()
    image = cfg.datasource != 'sinusoid'
    return {
        'work': self.name, 'label': self.label, 'experiment': self.experiment,
        'network': ('conv4' if cfg.conv else 'fc') if image else 'fc',
        'input_shape': list(image_datasets.IMAGE_SHAPES[cfg.datasource]) if image else [1],
        'hidden': list(cfg.hidden), 'num_filters': cfg.num_filters, 'max_pool': cfg.max_pool,
        'head': 'flatten' if (cfg.max_pool or cfg.conv_head == 'flatten') else 'average',
        'norm': 'batch_norm' if cfg.norm == 'batch_norm' else 'none',
        'outputs': cfg.num_classes if image else 1, 'num_classes': cfg.num_classes,
        'support_per_class': cfg.update_batch_size, 'query_per_class': cfg.train_query_size,
        'meta_batch': cfg.meta_batch_size, 'inner_steps': cfg.num_updates,
        'inner_lr': cfg.update_lr, 'meta_lr': cfg.meta_lr, 'first_order': cfg.stop_grad,
        'meta_grad_clip': cfg.meta_grad_clip, 'loss': 'xent' if image else 'mse',
        'gflop': flops(cfg) / 1e9,
    }


def _forward_flops(cfg: Config) -> float:
  """Multiply-adds x 2 of one input's forward pass (convs and dense layers only)."""
  if cfg.datasource == 'sinusoid' or not cfg.conv:
    widths = ([1] if cfg.datasource == 'sinusoid' else
              [image_datasets.IMAGE_SHAPES[cfg.datasource][0] ** 2]) + list(cfg.hidden)
    widths.append(cfg.num_classes if cfg.datasource != 'sinusoid' else 1)
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))
  h, _, c = image_datasets.IMAGE_SHAPES[cfg.datasource]
  total = 0.0
  for _ in range(4):
    out = h if cfg.max_pool else -(-h // 2)  # SAME padding: stride 1 keeps H, stride 2 halves it
    total += 2 * out * out * 9 * c * cfg.num_filters
    h, c = (out // 2 if cfg.max_pool else out), cfg.num_filters
  return total + 2 * (h * h * c if cfg.max_pool else c) * cfg.num_classes


def flops(cfg: Config) -> float:
  """An estimate of the FLOPs of one meta-iteration (the fraction-of-peak figures' numerator).

  Forward = 1 unit per input; a backward pass 2 units (the gradients of inputs and of weights).
  Query set: forward + backward = 3 units per query. Each inner step on the support set: forward +
  backward (3 units), and for the second-order meta-gradient the backward of that backward (about 4
  units more: the double-backward of every layer computes two products per product of the
  backward), so 7 units per support input and step; first order: 3. Omniglot 5-way 1-shot (15
  queries) comes to 44 GFLOP, as the reference's performance probes count it; MiniImagenet 5-way
  1-shot to 88 (the probes say "roughly 75"). Normalization, ReLU and pooling are not counted.
  """
  support = cfg.update_batch_size * cfg.num_classes
  query = cfg.train_query_size * cfg.num_classes
  per_step = 3 if cfg.stop_grad else 7
  return _forward_flops(cfg) * cfg.meta_batch_size * (3 * query + per_step * support * cfg.num_updates)


WORKS: tuple[Work, ...] = (
    Work('sinusoid', 'sinusoid_maml', None, 'sinusoid, meta-batch 25, K = 10, 1 step'),
    Work('omniglot_5way_1shot', 'omniglot_5way_1shot', SAME_QUERIES,
         'Omniglot 5-way 1-shot, meta-batch 32, 1 step, 15 queries/class'),
    Work('omniglot_20way_1shot', 'omniglot_20way_1shot', SAME_QUERIES,
         'Omniglot 20-way 1-shot, meta-batch 16, 5 steps, 15 queries/class'),
    Work('miniimagenet_5way_1shot', 'miniimagenet_5way_1shot', SAME_QUERIES,
         'MiniImagenet 5-way 1-shot, meta-batch 4, 5 steps, 15 queries/class'),
    Work('miniimagenet_5way_1shot_first_order', 'miniimagenet_5way_1shot_first_order', SAME_QUERIES,
         'MiniImagenet 5-way 1-shot, first order, 15 queries/class'),
    # The project's default episodes (1 query per class at training, as the original trains).
    Work('omniglot_5way_1shot_own', 'omniglot_5way_1shot', None,
         'Omniglot 5-way 1-shot, the row\'s own episodes (1 query/class)', own_default=True),
    Work('omniglot_20way_1shot_own', 'omniglot_20way_1shot', None,
         'Omniglot 20-way 1-shot, the row\'s own episodes (1 query/class)', own_default=True),
)
BY_NAME = {w.name: w for w in WORKS}


def get(name: str) -> Work:
  if name not in BY_NAME:
    raise KeyError(f'unknown benchmark work {name!r}; known: {", ".join(BY_NAME)}')
  return BY_NAME[name]
