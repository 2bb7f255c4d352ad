"""Every meta-learning method behind one interface: the trainer, the evaluation and the report call
`Method`'s hooks and name no method (docs/adding-a-method.md).

One module per method family, each holding its algorithm, its options and its Method:

  maml_family.py  MAML, first-order MAML, Meta-SGD, MAML++, ANIL and the sinusoid baselines
                  (the learner is maml.MAML; `MAMLOptions`)
  reptile.py      Reptile (`Reptile`, a MAML whose meta-gradient is theta - mean phi)
  metric.py       Prototypical and Matching networks (`MetricLearner`)
  siamese.py      Siamese networks (`SiameseLearner`: weighted L1 similarity of image pairs)
  relation.py     Relation networks (`RelationLearner`: a learned relation module)
  mann.py         MANN and its LSTM baseline (`MANNLearner`: an LSTM controller with an external
                  memory, labels one step late)
  meta_lstm.py    the meta-learner LSTM (`MetaLSTMLearner`: a learned optimizer whose cell state is
                  the learner's parameters)
  metanet.py      Meta Networks (`MetaNetLearner`: fast weights from support gradients, read by
                  attention over a memory)
  baselines.py    the paper's classifier baselines: fine-tuning and nearest neighbour

A method is a `Method` subclass registered under the name a row selects it by: `Config.baseline`
for the paper's classifier baselines (`selected_by = 'baseline'`), else `Config.method`:

    @methods.register('protonet')
    class ProtoNet(methods.Method): ...

`methods.get(cfg)` is the row's Method, holding cfg. Its `build(model)` makes the *learner*, the
algorithm object over the model's variables (maml.MAML, reptile.Reptile, metric.MetricLearner);
the other hooks take that learner. Its `options` dataclass adds the method's own fields to every
row (experiments.Config composes them). Every module of this package is imported with it, so a
new method's module registers itself and touches nothing else.

Shapes: an episode is (support_x [T, N*K, ...], support_y [T, N*K, N], query_x [T, N*Q, ...],
query_y [T, N*Q, N]) for T tasks of N classes, K support and Q query examples per class (labels
one-hot; regression: N = 1 and y [T, K, 1]). theta: the model's trainable variables.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Callable, ClassVar

import keras
import tensorflow as tf

import data_generator
import models

if TYPE_CHECKING:  # the row's type only; nothing here reads the experiments table
  from experiments import Config

# The objectives phases() names (maml.MAML.make_train_step's `objective`): the episodic
# meta-objective every method meta-trains, and the plain multi-task or classification one the
# paper's baselines train instead (run first).
META, PRETRAIN = 'maml', 'pretrain'
# fn(*episode) -> {'loss', 'pre_loss', 'post_loss'} scalars; with steps_per_call = S > 1 it takes
# S episodes stacked on a new leading axis and returns [S] per key.
TrainStep = Callable[..., dict]
# fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric'} [steps+1, T] on the queries
# (index s: after s steps), and 'outputs' [steps+1, T, N*Q, ...] when asked for. Any other key is an
# extra per-task metric [P, T] (MANN: 'instance_accuracy'), whose mean and CI over the tasks the
# result file keeps under 'extra_metrics'.
EvalFn = Callable[..., dict]
# fn(support_x [T, N*K, ...], support_y [T, N*K, N], query_x [T, Q, ...], lr) -> class
# probabilities [T, Q, N] of the queries after adapting to the support set (predict.py).
PredictFn = Callable[..., tf.Tensor]


class Method:
  """The protocol a method implements; the defaults are those of a learner with MAML's step
  interface (`make_train_step`, `make_eval_step`, `variables`, `extra_variables`).

  The training objectives are META and PRETRAIN (a method may add its own, e.g. MAML++'s
  'first_order' phase).
  """
  name: ClassVar[str] = ''  # set by @register
  # Which row field selects it: 'method' (Config.method), or 'baseline' for the paper's baselines
  # that a row names by Config.baseline.
  selected_by: ClassVar[str] = 'method'
  # The method's own config fields: a frozen kw_only dataclass of config.option()s, with an
  # optional check(self, bad) (config.py); experiments.Config composes every method's options.
  options: ClassVar[type | None] = None
  # False: it trains on batches of single images (images [B, ...], labels [B]), not on episodes.
  episodic: ClassVar[bool] = True
  # Whether cfg.task_chunk may split its meta-gradient (maml.MAML.chunked_meta_gradient).
  chunks_meta_gradient: ClassVar[bool] = False
  # False: the method never adapts by steps (metric learners): no alpha, no inner steps.
  inner_loop: ClassVar[bool] = True
  # the report's groups of this method's rows: {experiments.METHOD_ROWS key: table title}.
  report_groups: ClassVar[dict[str, str]] = {}

  def __init__(self, cfg: Config):
    self.cfg = cfg

  # --- building ----------------------------------------------------------------------------------

  def build_model(self) -> keras.Model:
    """The network theta of the row (models.build_model: the paper's nets)."""
    return models.build_model(self.cfg)

  def build(self, model: keras.Model):
    """The learner over `model` (theta). Called in the strategy's scope right after the model is
    built from the seed, so any variable it creates (learned step sizes, LSTMs) is seeded too.
    It must have `variables`: everything the meta-optimizer updates, theta first."""
    raise NotImplementedError(f'{type(self).__name__}.build')

  def make_optimizer(self) -> keras.optimizers.Optimizer:
    """The meta-optimizer: Adam(beta), cosine-annealed to min_meta_lr (MAML++ CA) if set."""
    cfg = self.cfg
    if cfg.min_meta_lr is not None:
      return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
          cfg.meta_lr, cfg.total_iterations, alpha=cfg.min_meta_lr / cfg.meta_lr))
    return keras.optimizers.Adam(cfg.meta_lr)

  def saved_variables(self, learner) -> dict[str, list]:
    """What a checkpoint holds besides theta, the iteration, the optimizer and the data position:
    {'extras': meta-learned variables besides theta, 'learner_state': state the learner carries
    from update to update}, a key only when it has variables. These keys are the checkpoints' object
    graph: a run resumes, and a committed model re-evaluates, only if they stay as they are."""
    return {'extras': learner.extra_variables} if learner.extra_variables else {}

  # --- meta-training -----------------------------------------------------------------------------

  def phases(self) -> list[tuple[str, int]]:
    """The training schedule: [(objective, iteration at which it ends)], in order; iteration i
    trains the first objective whose end lies past i."""
    cfg = self.cfg
    return schedule([(PRETRAIN, cfg.pretrain_iterations), (META, cfg.total_iterations)])

  def train_sampler(self):
    """The training stream: `sample(T, N*K, N*Q)` -> an episode (its first four fields are used)
    and `trackable()`, the position the checkpoint keeps."""
    return data_generator.make_sampler(self.cfg, 'train')

  def make_train_step(self, learner, optimizer: keras.optimizers.Optimizer, objective: str,
                      steps_per_call: int = 1,
                      strategy: tf.distribute.Strategy | None = None) -> TrainStep:
    """A compiled update of `objective` (one of phases()) on an episode."""
    return learner.make_train_step(optimizer, objective, self.cfg.jit_compile, steps_per_call,
                                   strategy)

  def log_losses(self, values: dict[str, float]) -> str:
    """The losses of the progress line, from the mean 'loss', 'pre_loss', 'post_loss'."""
    return 'pre-update loss %.4f | post-update loss %.4f' % (values['pre_loss'], values['post_loss'])

  @property
  def val_shots(self) -> int:
    """K of meta-validation: the training K."""
    return self.cfg.update_batch_size

  # --- meta-test ---------------------------------------------------------------------------------

  def make_eval_fn(self, learner, steps: int, return_outputs: bool = False) -> EvalFn:
    """Adaptation on the support set and prediction of the queries, on a batch of T episodes:
    fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric'} [steps+1, T] (and
    'outputs' [steps+1, T, N*Q, ...] if return_outputs). lr: the step size (alpha) at meta-test."""
    return learner.make_eval_step(steps, return_outputs=return_outputs)

  def make_predict_fn(self, learner, steps: int) -> PredictFn:
    """Adaptation to a labelled support set and class probabilities of unlabelled queries
    (predict.py): fn(support_x [T, N*K, ...], support_y [T, N*K, N], query_x [T, Q, ...], lr) ->
    [T, Q, N], the softmax of the query outputs after `steps` steps of size lr (alpha).

    The default is make_eval_fn(..., return_outputs=True) with placeholder query labels (zeros:
    the loss and metric it computes beside the outputs are not used); a method whose eval fn
    records no outputs overrides it."""
    eval_fn = self.make_eval_fn(learner, steps, return_outputs=True)

    def predict(support_x, support_y, query_x, lr):
      query_y = tf.zeros(tf.concat([tf.shape(query_x)[:2], tf.shape(support_y)[2:]], 0),
                         support_y.dtype)
      outputs = eval_fn(support_x, support_y, query_x, query_y, lr)['outputs'][-1]  # [T, Q, N]
      return tf.nn.softmax(outputs, axis=-1)
    return predict

  @property
  def tunes_step_size(self) -> bool:
    """Whether meta-test may pick lr from cfg.test_update_lr_grid on validation tasks; False: the
    eval fn ignores lr, so there is nothing to tune."""
    return self.inner_loop

  def reported_step_size(self, lr: float) -> float | str:
    """The step size a result reports for an evaluation run with `lr`."""
    return lr

  def label(self) -> str:
    """The method's short name in the report's tables (e.g. 'MAML++', 'ProtoNet (FCE)')."""
    raise NotImplementedError(f'{type(self).__name__}.label')


def schedule(phases: list[tuple[str, int]]) -> list[tuple[str, int]]:
  """phases() from [(objective, end)] in order: those that train at least one iteration."""
  out, start = [], 0
  for objective, end in phases:
    if end > start:
      out.append((objective, end))
      start = end
  return out


def batched_forward(cfg: Config, model: keras.Model):
  """The task-batched forward pass (models.task_batched_forward) if the row asks for it, else None."""
  return models.task_batched_forward(model) if cfg.task_parallelism == 'batched' else None


REGISTRY: dict[str, type[Method]] = {}


def stepless_eval_step(task_fn: Callable[..., dict], who: str, steps: int, *,
                       jit_compile: bool = False, return_outputs: bool = False,
                       reduce_retracing: bool = True) -> EvalFn:
  """The eval fn of a learner that adapts by no steps (metric learners, Siamese and Relation
  networks, Meta Networks, MANN): task_fn(support_x, support_y, query_x, query_y) -> {'loss' [T],
  'metric' [T], 'outputs' [T, N*Q, ...], and any extra per-task metric [P, T]} gives
  fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric'} [1, T] (and 'outputs'
  [1, T, N*Q, ...] if return_outputs; the extras as they are). lr is ignored; steps must be 0."""
  if steps != 0:
    raise ValueError(f'steps={steps}: {who} take no fine-tuning steps (use 0)')

  def step(support_x, support_y, query_x, query_y, lr):
    del lr
    result = dict(task_fn(support_x, support_y, query_x, query_y))
    for key in ('loss', 'metric', 'outputs'):
      result[key] = result[key][None]
    if not return_outputs:
      del result['outputs']
    return result

  return tf.function(step, jit_compile=jit_compile, reduce_retracing=reduce_retracing)


def register(name: str):
  """Class decorator: registers a Method subclass under `name` (a Config.method or .baseline)."""
  def add(cls: type[Method]) -> type[Method]:
    if name in REGISTRY:
      raise ValueError(f'method {name!r} is registered twice ({REGISTRY[name].__name__}, '
                       f'{cls.__name__})')
    cls.name = name
    REGISTRY[name] = cls
    return cls
  return add


def get(cfg: Config) -> Method:
  """The Method of a row: the one registered under cfg.baseline, else under cfg.method."""
  cls = REGISTRY.get(cfg.baseline) or REGISTRY.get(cfg.method)
  if cls is None:
    raise ValueError(f'{cfg.name}: no method is registered under {cfg.method!r}; registered: '
                     f'{", ".join(REGISTRY)}')
  return cls(cfg)


def names(selected_by: str) -> tuple[str, ...]:
  """The registered names a row selects by `selected_by` ('method' or 'baseline')."""
  return tuple(name for name, cls in REGISTRY.items() if cls.selected_by == selected_by)


def option_parts() -> tuple[type, ...]:
  """Every method's options dataclass, once each, in registration order (experiments.Config)."""
  parts = []
  for cls in REGISTRY.values():
    options = cls.options
    if options is not None and options not in parts:
      parts.append(options)
  return tuple(parts)


def report_groups() -> dict[str, str]:
  """{report group: title} of every registered method's rows (the report's per-method groups)."""
  # A class's own groups only: a subclass (a variant's Method) does not repeat its parent's.
  return {group: title for cls in REGISTRY.values()
          for group, title in vars(cls).get('report_groups', {}).items()}


# Every module of the package registers its methods on import.
for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f'{__name__}.{_module.name}')
