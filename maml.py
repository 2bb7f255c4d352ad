"""MAML (Finn et al. 2017, Algorithm 1 and 2) on any Keras 3 model, with functional parameters.

The model's variables hold theta. Adaptation never writes them: the forward pass is
`model.stateless_call(params, state, x, training=True)` on tensors, so the inner steps

    theta'_i = theta - alpha * grad_theta L_Ti(f_theta)              (num_updates times)

stay differentiable, and the meta-gradient grad_theta sum_i L_Ti(f_theta'_i) taken by an outer
`tf.GradientTape` is the true second-order one. First-order MAML (`first_order=True`, the original's
--stop_grad) applies `tf.stop_gradient` to the inner gradients and nothing else.

The T tasks of a meta-batch run side by side: theta is tiled to [T, ...] and the forward pass maps
over the task axis, so each task sees only its own parameters and, with batch norm, its own batch
statistics. Because task t's loss depends only on slice t, the gradient of the summed support losses
with respect to the tiled parameters is exactly the per-task gradient. How the forward maps over tasks
(`task_parallelism`) changes speed, never results: 'vectorized_map' (batched kernels; fastest for
dense nets, but TF cannot vectorize a convolution whose filter differs per task), 'batched' (a
forward function given by the caller that runs all tasks in batched kernels, e.g. grouped
convolutions: models.task_batched_forward), 'map_fn' (a tf.while_loop over tasks) or 'loop'
(unrolled in the graph).
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf

# (targets [T, M, d], outputs [T, M, d]) -> per-task values [T].
TaskFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
# The same plus K, the support examples per output unit (the original divides its cross-entropy by K).
LossFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def support_shots(support_y: tf.Tensor) -> tf.Tensor:
  """K = support examples per output unit: N*K / N for one-hot labels, K / 1 for regression."""
  shape = tf.shape(support_y)
  return tf.cast(shape[1] // shape[-1], support_y.dtype)


class MAML:
  """The bilevel objective of MAML over a Keras model.

  Args:
    model: a built Keras model; its trainable variables are theta.
    loss_fn: per-task loss, (y [T, M, d], out [T, M, d], K) -> [T]; K is the support set's shots,
      also when the loss is taken on the query set (as the original's xent / update_batch_size).
    metric_fn: per-task metric reported at meta-test (MSE, accuracy), same signature.
    update_lr: alpha, the inner SGD step size.
    num_updates: inner steps at meta-training.
    first_order: drop the second-order term (stop_gradient on inner gradients).
    adapt_mask: one bool per trainable variable; False keeps it fixed in the inner loop (it is still
      meta-learned). None adapts everything.
    meta_grad_clip: clip each meta-gradient entry to [-c, c]; None for no clipping.
    task_parallelism: 'vectorized_map', 'batched', 'map_fn' or 'loop' (see the module docstring).
    batched_forward: for 'batched': fn(task_params [T, ...] each, x [T, M, ...]) -> [T, M, ...],
      the model's forward pass with per-task parameters (aligned with trainable_variables).
  """
  TASK_PARALLELISM = ('vectorized_map', 'batched', 'map_fn', 'loop')

  def __init__(self, model: keras.Model, loss_fn: LossFn, metric_fn: TaskFn, *, update_lr: float,
               num_updates: int, first_order: bool = False,
               adapt_mask: Sequence[bool] | None = None, meta_grad_clip: float | None = None,
               task_parallelism: str = 'vectorized_map',
               batched_forward: Callable[[list[tf.Tensor], tf.Tensor], tf.Tensor] | None = None):
    self.model = model
    self.loss_fn = loss_fn
    self.metric_fn = metric_fn
    self.update_lr = update_lr
    self.num_updates = num_updates
    self.first_order = first_order
    n = len(model.trainable_variables)
    self.adapt_mask = tuple(adapt_mask) if adapt_mask is not None else (True,) * n
    if len(self.adapt_mask) != n:
      raise ValueError(f'adapt_mask has {len(self.adapt_mask)} entries for {n} trainable variables')
    self.meta_grad_clip = meta_grad_clip
    if task_parallelism not in self.TASK_PARALLELISM:
      raise ValueError(f'task_parallelism={task_parallelism!r} is not one of {self.TASK_PARALLELISM}')
    self.task_parallelism = task_parallelism
    if (task_parallelism == 'batched') != (batched_forward is not None):
      raise ValueError("batched_forward is needed by task_parallelism='batched', and only by it")
    self.batched_forward = batched_forward

  # --- functional pieces -------------------------------------------------------------------------

  def params(self) -> list[tf.Tensor]:
    """theta as tensors (reads of the variables, so a tape that watches them sees theta)."""
    return [tf.convert_to_tensor(v) for v in self.model.trainable_variables]

  @staticmethod
  def tile(params: Sequence[tf.Tensor], num_tasks: int) -> list[tf.Tensor]:
    """theta -> one copy per task, [T, ...]; its gradient sums the per-task gradients."""
    return [tf.broadcast_to(p[None], [num_tasks, *p.shape]) for p in params]

  def forward(self, task_params: Sequence[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """Per-task forward pass. task_params: [T, ...] each; x: [T, M, ...] -> outputs [T, M, ...].

    training=True: normalization layers use the batch statistics of each call, at meta-train and
    meta-test alike, as the original code (cbfinn/maml issues #9, #37). Their moving averages are
    never used, so the new state stateless_call returns is dropped.
    """
    state = [tf.convert_to_tensor(v) for v in self.model.non_trainable_variables]

    def one_task(args):
      params, inputs = args
      return self.model.stateless_call(list(params), state, inputs, training=True)[0]

    if self.task_parallelism == 'batched':
      return self.batched_forward(list(task_params), x)
    if self.task_parallelism == 'vectorized_map':
      return tf.vectorized_map(one_task, (list(task_params), x), fallback_to_while_loop=False)
    if self.task_parallelism == 'map_fn':
      spec = tf.TensorSpec(None, self.model.outputs[0].dtype)
      return tf.map_fn(one_task, (list(task_params), x), fn_output_signature=spec)
    return tf.stack([one_task(([p[t] for p in task_params], x[t])) for t in range(x.shape[0])])

  def adapt(self, task_params: Sequence[tf.Tensor], support_x: tf.Tensor, support_y: tf.Tensor, *,
            steps: int, lr, first_order: bool):
    """`steps` inner SGD steps on each task's support set.

    Args:
      task_params: [T, ...] per tensor (theta tiled, or any per-task starting point).
      support_x, support_y: [T, N*K, ...].
      lr: alpha (a float or a scalar tensor).
      first_order: stop_gradient on the inner gradients.

    Returns:
      (fast_params [T, ...] each, support loss before the first step [T], or None if steps == 0).
    """
    fast = list(task_params)
    support_loss_0 = None
    shots = support_shots(support_y)
    for step in range(steps):
      with tf.GradientTape() as tape:
        tape.watch(fast)
        support_loss = self.loss_fn(support_y, self.forward(fast, support_x), shots)
        total = tf.reduce_sum(support_loss)  # tasks are independent: grad of the sum = per-task grads
      grads = tape.gradient(total, fast)
      if step == 0:
        support_loss_0 = support_loss
      if first_order:
        grads = [tf.stop_gradient(g) for g in grads]
      fast = [p - lr * g if adapt else p for p, g, adapt in zip(fast, grads, self.adapt_mask)]
    return fast, support_loss_0

  # --- objectives --------------------------------------------------------------------------------

  def meta_objective(self, episode, params: Sequence[tf.Tensor]):
    """Query loss after num_updates steps, averaged over the T tasks (the meta-loss).

    Returns (meta_loss scalar, pre-update support loss [T], post-update query loss [T]).
    """
    support_x, support_y, query_x, query_y = episode[:4]
    tiled = self.tile(params, tf.shape(support_x)[0])
    fast, pre_loss = self.adapt(tiled, support_x, support_y, steps=self.num_updates,
                                      lr=self.update_lr, first_order=self.first_order)
    post_loss = self.loss_fn(query_y, self.forward(fast, query_x), support_shots(support_y))
    if pre_loss is None:  # num_updates == 0: theta itself is evaluated on the query set
      pre_loss = post_loss
    return tf.reduce_mean(post_loss), pre_loss, post_loss

  def pretrain_objective(self, episode, params: Sequence[tf.Tensor]):
    """The "pretrained" baseline: plain multi-task loss of theta on the support sets.

    Returns (loss scalar, support loss [T], support loss [T]), shaped like `meta_objective`.
    """
    support_x, support_y = episode[:2]
    tiled = self.tile(params, tf.shape(support_x)[0])
    loss = self.loss_fn(support_y, self.forward(tiled, support_x), support_shots(support_y))
    return tf.reduce_mean(loss), loss, loss

  def meta_gradient(self, episode, objective: str = 'maml', clip: bool = True):
    """(gradients w.r.t. theta aligned with model.trainable_variables, meta-loss, pre, post).

    clip=False leaves out meta_grad_clip (a distributed step clips the all-reduced gradient).
    """
    fn = {'maml': self.meta_objective, 'pretrain': self.pretrain_objective}[objective]
    with tf.GradientTape() as tape:
      params = self.params()
      tape.watch(params)
      loss, pre, post = fn(episode, params)
    grads = tape.gradient(loss, params)
    return (self.clip(grads) if clip else grads), loss, pre, post

  def clip(self, grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """Each meta-gradient entry clipped to [-meta_grad_clip, meta_grad_clip] (if set)."""
    if self.meta_grad_clip is None:
      return grads
    return [tf.clip_by_value(g, -self.meta_grad_clip, self.meta_grad_clip) for g in grads]

  # --- compiled steps ----------------------------------------------------------------------------

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = 'maml',
                      jit_compile: bool = False, steps_per_call: int = 1,
                      strategy: tf.distribute.Strategy | None = None):
    """A compiled meta-update: episode -> {'loss', 'pre_loss', 'post_loss'} (scalars).

    'loss' is the objective minimized (the meta-loss for 'maml'); pre/post are the mean support loss
    before adaptation and the mean query loss after num_updates steps.

    steps_per_call = S > 1: the function takes S episodes stacked on a new leading axis ([S, T, ...]
    each) and runs S meta-updates in one graph loop, returning [S] per key. The updates are those of
    S calls in turn; one dispatch from Python instead of S is what a step of microseconds (sinusoid)
    is mostly made of.

    strategy: a tf.distribute strategy with R replicas (Mirrored: devices of one machine;
    MultiWorkerMirrored: machines) whose scope created the model and optimizer. Every replica is
    given the whole episode (each worker draws the same one from the same seed) and takes its own
    T/R tasks; the meta-gradients of the replicas are summed, each weighted 1/R so the sum is the
    mean over all T tasks, then clipped and applied once: the single-device update
    (tests/test_distribute.py). T must be a multiple of R.
    """
    if steps_per_call < 1:
      raise ValueError(f'steps_per_call={steps_per_call} must be at least 1')
    variables = self.model.trainable_variables

    def single(episode):
      grads, loss, pre, post = self.meta_gradient(episode, objective)
      optimizer.apply(grads, variables)
      return {'loss': loss, 'pre_loss': tf.reduce_mean(pre), 'post_loss': tf.reduce_mean(post)}

    @tf.function(jit_compile=jit_compile)
    def replica_part(*episode):
      context = tf.distribute.get_replica_context()
      replicas = context.num_replicas_in_sync
      tasks = tf.shape(episode[0])[0] // replicas
      start = tasks * context.replica_id_in_sync_group
      part = tuple(e[start:start + tasks] for e in episode)
      grads, loss, pre, post = self.meta_gradient(part, objective, clip=False)
      weight = 1.0 / replicas  # equal parts: the mean over T is the sum of the parts' means / R
      return ([g * weight for g in grads],
              {'loss': loss * weight, 'pre_loss': tf.reduce_mean(pre) * weight,
               'post_loss': tf.reduce_mean(post) * weight})

    def distributed(episode):
      tf.debugging.assert_equal(tf.shape(episode[0])[0] % strategy.num_replicas_in_sync, 0,
                                'the meta-batch must be a multiple of the number of replicas')
      def total(per_replica):  # one reduction per tensor (MultiWorker cannot pack mixed shapes)
        return tf.nest.map_structure(
            lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None), per_replica)

      grads, values = strategy.run(replica_part, args=episode)
      optimizer.apply(self.clip(total(grads)), variables)  # cross-replica context: applied once
      return total(values)

    update = single if strategy is None else distributed

    def step(support_x, support_y, query_x, query_y):
      return update((support_x, support_y, query_x, query_y))

    def loop(*episodes):
      dtype = variables[0].dtype
      out = {k: tf.TensorArray(dtype, size=steps_per_call) for k in ('loss', 'pre_loss', 'post_loss')}
      for s in tf.range(steps_per_call):
        values = update(tuple(e[s] for e in episodes))
        out = {k: out[k].write(s, tf.cast(values[k], dtype)) for k in out}
      return {k: v.stack() for k, v in out.items()}

    # With a strategy only the per-replica part is compiled by XLA (cross-replica ops are not).
    return tf.function(step if steps_per_call == 1 else loop,
                       jit_compile=jit_compile and strategy is None)

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """A compiled meta-test: adapts with `steps` plain SGD steps, no meta-update.

    Returns fn(support_x, support_y, query_x, query_y, lr) -> dict with 'loss' and 'metric'
    [steps+1, T] on the query set (index s = after s steps) and, if return_outputs, 'outputs'
    [steps+1, T, M, ...] (for plots).
    """
    def step(support_x, support_y, query_x, query_y, lr):
      tiled = self.tile(self.params(), tf.shape(support_x)[0])
      fast = tiled
      result = {'loss': [], 'metric': [], 'outputs': []}
      for s in range(steps + 1):
        out = self.forward(fast, query_x)
        result['loss'].append(self.loss_fn(query_y, out, support_shots(support_y)))
        result['metric'].append(self.metric_fn(query_y, out))
        if return_outputs:
          result['outputs'].append(out)
        if s < steps:
          fast = self.adapt(fast, support_x, support_y, steps=1, lr=lr, first_order=True)[0]
      return {k: tf.stack(v) for k, v in result.items() if v}

    # Every K (and the plotting grid) has its own shapes; reduce_retracing keeps one general trace
    # (not for 'loop', which unrolls over a known number of tasks).
    return tf.function(step, jit_compile=jit_compile,
                       reduce_retracing=self.task_parallelism != 'loop')
