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

The wider family of MAML variants lives here too, each off by default so plain MAML is unchanged:
Meta-SGD's learned per-parameter step sizes and MAML++'s learned per-layer per-step step sizes
(`inner_lr`), MAML++'s per-step normalization parameters (`per_step_mask`) and multi-step loss
(`multi_step_loss_epochs`), derivative-order annealing (the `first_order` argument of
`make_train_step`), and non-transductive evaluation (`transductive=False`). ANIL is an `adapt_mask`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

# (targets [T, M, d], outputs [T, M, d]) -> per-task values [T].
TaskFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
# The same plus K, the support examples per output unit (the original divides its cross-entropy by K).
LossFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def multi_step_loss_weights(epoch, num_steps: int, num_epochs: int, dtype=tf.float32) -> tf.Tensor:
  """MAML++'s per-step loss importance [S] at `epoch` (AntreasAntoniou/HowToTrainYourMAMLPytorch,
  get_per_step_loss_importance_vector).

  Starts at 1/S for each of the S post-step query losses; every epoch moves 1/(S * num_epochs) of
  weight from each early step (floored at 0.03/S) to the last one (capped at 1 - (S-1) 0.03/S). From
  epoch num_epochs on only the last step counts: [0, ..., 0, 1], MAML's meta-loss.
  """
  s = float(num_steps)
  decay, floor = 1.0 / s / num_epochs, 0.03 / s
  e = tf.cast(epoch, dtype)
  early = tf.maximum(tf.constant(1.0 / s, dtype) - e * decay, floor)
  final = tf.minimum(tf.constant(1.0 / s, dtype) + e * (s - 1) * decay, 1.0 - (s - 1) * floor)
  annealed = tf.concat([tf.fill([num_steps - 1], early), final[None]], 0)
  return tf.where(e < num_epochs, annealed, tf.one_hot(num_steps - 1, num_steps, dtype=dtype))


def compile_update(update: Callable, dtype, steps_per_call: int, jit_compile: bool):
  """The compiled train step of a learner around update(episode) -> {'loss', 'pre_loss',
  'post_loss'} (scalars): fn(support_x, support_y, query_x, query_y) for steps_per_call = 1, else
  fn over S episodes stacked on a new leading axis, running S updates in one graph loop and
  returning [S] per key (what a step of microseconds is mostly made of is the dispatch from Python).
  """
  if steps_per_call < 1:
    raise ValueError(f'steps_per_call={steps_per_call} must be at least 1')

  def step(support_x, support_y, query_x, query_y):
    return update((support_x, support_y, query_x, query_y))

  def loop(*episodes):
    out = {k: tf.TensorArray(dtype, size=steps_per_call) for k in ('loss', 'pre_loss', 'post_loss')}
    for s in tf.range(steps_per_call):
      values = update(tuple(e[s] for e in episodes))
      out = {k: out[k].write(s, tf.cast(values[k], dtype)) for k in out}
    return {k: v.stack() for k, v in out.items()}

  # The single step is plain Python around explicit TF control flow (tf.while_loop, tf.where), so
  # AutoGraph's source conversion is skipped: it was a quarter of the trace (Omniglot 20w1s
  # compile 16.3 -> 12.3 s). The loop over S steps needs it (tf.range).
  return tf.function(step if steps_per_call == 1 else loop, jit_compile=jit_compile,
                     autograph=steps_per_call > 1)


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
    update_lr: alpha, the inner SGD step size (the initial value of learned step sizes).
    num_updates: inner steps at meta-training (S).
    first_order: drop the second-order term (stop_gradient on inner gradients).
    adapt_mask: one bool per trainable variable; False keeps it fixed in the inner loop (it is still
      meta-learned). None adapts everything.
    meta_grad_clip: clip each meta-gradient entry to [-c, c]; None for no clipping.
    task_parallelism: 'vectorized_map', 'batched', 'map_fn' or 'loop' (see the module docstring).
    batched_forward: for 'batched': fn(task_params [T, ...] each, x [T, M, ...]) -> [T, M, ...],
      the model's forward pass with per-task parameters (aligned with trainable_variables).
    inner_lr: 'fixed' (alpha), 'per_parameter' (Meta-SGD, Li et al. 2017: a meta-learned step size
      for every entry of every adapted tensor, the same at every step) or 'per_layer_per_step'
      (MAML++ LSLR: a meta-learned scalar per adapted tensor and per step). Learned step sizes start
      at alpha and are used at meta-test as learned (the `lr` of the eval step is ignored); steps
      beyond S use step S's.
    per_step_mask: one bool per trainable variable (MAML++ BNWB: the normalization parameters);
      True gives the variable one meta-learned copy per step count 1..S: a forward pass with weights
      adapted s times uses copy s (the model's own variable at s = 0, copy S beyond S). Such a
      variable must not be adapted. None: no copies.
    multi_step_loss_epochs: > 0 turns on MAML++'s multi-step loss: the meta-loss is the weighted sum
      of the query losses after every step 1..S (`multi_step_loss_weights` of the epoch =
      optimizer updates // epoch_iterations) for that many epochs, then the last step's alone.
    transductive: True: the queries of a task are predicted in one batch (batch norm normalizes them
      with their own statistics: the original). False: each query is predicted in a batch made of
      the support set and itself (Nichol et al. 2018's non-transductive evaluation). Only
      evaluation uses it; the meta-loss is always transductive, as the original.
    task_chunk: C > 0 computes the meta-gradient of a meta-batch C tasks at a time, one chunk after
      the other, and averages: the same update with the activation memory of C tasks instead of T
      (T must be a multiple of C). 0: all T at once.
    chunks_in_flight: P > 1 lets the chunk loop run P chunks at the same time (with single-threaded
      ops, one core each: the fastest on CPU for small chunks); the same update, the memory of P
      chunks.
  """
  TASK_PARALLELISM = ('vectorized_map', 'batched', 'map_fn', 'loop')
  INNER_LR = ('fixed', 'per_parameter', 'per_layer_per_step')

  def __init__(self, model: keras.Model, loss_fn: LossFn, metric_fn: TaskFn, *, update_lr: float,
               num_updates: int, first_order: bool = False,
               adapt_mask: Sequence[bool] | None = None, meta_grad_clip: float | None = None,
               task_parallelism: str = 'vectorized_map',
               batched_forward: Callable[[list[tf.Tensor], tf.Tensor], tf.Tensor] | None = None,
               inner_lr: str = 'fixed', per_step_mask: Sequence[bool] | None = None,
               multi_step_loss_epochs: int = 0, epoch_iterations: int = 500,
               transductive: bool = True, task_chunk: int = 0, chunks_in_flight: int = 1):
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
    if inner_lr not in self.INNER_LR:
      raise ValueError(f'inner_lr={inner_lr!r} is not one of {self.INNER_LR}')
    self.inner_lr = inner_lr
    self.transductive = transductive
    if multi_step_loss_epochs and num_updates < 1:
      raise ValueError('the multi-step loss needs num_updates >= 1')
    self.multi_step_loss_epochs = multi_step_loss_epochs
    if task_chunk < 0:
      raise ValueError(f'task_chunk={task_chunk} must not be negative')
    self.task_chunk = task_chunk
    if chunks_in_flight < 1:
      raise ValueError(f'chunks_in_flight={chunks_in_flight} must be at least 1')
    self.chunks_in_flight = chunks_in_flight
    self.epoch_iterations = epoch_iterations
    per_step_mask = tuple(per_step_mask) if per_step_mask is not None else (False,) * n
    if len(per_step_mask) != n or any(a and p for a, p in zip(self.adapt_mask, per_step_mask)):
      raise ValueError('per_step_mask needs one entry per trainable variable and must not name an '
                       'adapted one')
    # Meta-learned besides theta (in self.variables after theta): step sizes, then per-step copies.
    variables = model.trainable_variables
    shape = {'per_parameter': lambda v: v.shape, 'per_layer_per_step': lambda v: (num_updates,)}
    self._lr_index = [i for i in range(n) if self.adapt_mask[i]] if inner_lr != 'fixed' else []
    self._norm_index = [(s, i) for s in range(1, num_updates + 1) for i in range(n) if per_step_mask[i]]
    self.extra_variables = [
        keras.Variable(np.full(shape[inner_lr](variables[i]), update_lr), dtype=variables[i].dtype,
                       name=f'inner_lr_{i}') for i in self._lr_index] + [
        keras.Variable(variables[i].numpy(), name=f'step{s}_{i}') for s, i in self._norm_index]

  @property
  def variables(self) -> list:
    """Everything the meta-update learns: theta, then the extra variables."""
    return list(self.model.trainable_variables) + self.extra_variables

  # --- functional pieces -------------------------------------------------------------------------

  def params(self) -> list[tf.Tensor]:
    """theta and the extra variables as tensors (reads, so a tape that watches them sees them)."""
    return [tf.convert_to_tensor(v) for v in self.variables]

  def _split(self, params: Sequence[tf.Tensor]):
    """params aligned with self.variables -> (theta, {var index: step size},
    {(step, var index): per-step copy})."""
    n = len(self.model.trainable_variables)
    theta, extra = list(params[:n]), list(params[n:])
    if len(extra) != len(self.extra_variables):  # theta alone: the extras are the variables'
      extra = [tf.convert_to_tensor(v) for v in self.extra_variables]
    lrs = dict(zip(self._lr_index, extra))
    norms = dict(zip(self._norm_index, extra[len(self._lr_index):]))
    return theta, lrs, norms

  @staticmethod
  def tile(params: Sequence[tf.Tensor], num_tasks: int) -> list[tf.Tensor]:
    """theta -> one copy per task, [T, ...]; its gradient sums the per-task gradients."""
    return [tf.broadcast_to(p[None], [num_tasks, *p.shape]) for p in params]

  def at_step(self, task_params: Sequence[tf.Tensor], step: int, norms: dict) -> list[tf.Tensor]:
    """task_params [T, ...] with the per-step copies of `step` (adapted `step` times) swapped in."""
    step = min(step, self.num_updates)
    if not norms or step == 0:
      return list(task_params)
    out = list(task_params)
    for (s, i), value in norms.items():
      if s == step:
        out[i] = self.tile([value], tf.shape(out[i])[0])[0]
    return out

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

  def predict(self, task_params: Sequence[tf.Tensor], support_x: tf.Tensor,
              query_x: tf.Tensor) -> tf.Tensor:
    """Query outputs [T, Q, ...], transductive or not (see the class docstring).

    Non-transductive: the T*Q batches [support; query q] run as T*Q tasks (parameters repeated Q
    times) and keep the last row, so no query sees another's statistics.
    """
    if self.transductive:
      return self.forward(task_params, query_x)
    tasks, queries = tf.shape(query_x)[0], tf.shape(query_x)[1]
    support = tf.repeat(support_x[:, None], queries, axis=1)  # [T, Q, S, ...]
    batches = tf.concat([support, query_x[:, :, None]], 2)   # [T, Q, S+1, ...]
    batches = tf.reshape(batches, tf.concat([[tasks * queries], tf.shape(batches)[2:]], 0))
    repeated = [tf.repeat(p, queries, axis=0) for p in task_params]
    out = self.forward(repeated, batches)[:, -1]             # [T*Q, ...]
    return tf.reshape(out, tf.concat([[tasks, queries], tf.shape(out)[1:]], 0))

  def adapt(self, task_params: Sequence[tf.Tensor], support_x: tf.Tensor, support_y: tf.Tensor, *,
            steps: int, lr, first_order: bool, lrs: dict | None = None, norms: dict | None = None,
            start_step: int = 0, trajectory: bool = False):
    """`steps` inner SGD steps on each task's support set.

    Args:
      task_params: [T, ...] per tensor (theta tiled, or any per-task starting point).
      support_x, support_y: [T, N*K, ...].
      lr: alpha (a float or a scalar tensor), used unless `lrs` holds learned step sizes.
      first_order: stop_gradient on the inner gradients.
      lrs, norms: learned step sizes and per-step copies (`_split`); None: none.
      start_step: how many steps task_params have taken already (picks step sizes and copies).
      trajectory: also return the parameters after every step.

    Returns:
      (fast_params [T, ...] each, support loss before the first step [T], or None if steps == 0);
      with trajectory, fast_params is the list of parameters after 0..steps steps.
    """
    fast = list(task_params)
    path = [fast]
    support_loss_0 = None
    shots = support_shots(support_y)
    lrs, norms = lrs or {}, norms or {}
    for step in range(start_step, start_step + steps):
      with tf.GradientTape() as tape:
        tape.watch(fast)
        out = self.forward(self.at_step(fast, step, norms), support_x)
        support_loss = self.loss_fn(support_y, out, shots)
        total = tf.reduce_sum(support_loss)  # tasks are independent: grad of the sum = per-task grads
      # Zeros for tensors the loss does not read (swapped out for a per-step copy).
      grads = tape.gradient(total, fast, unconnected_gradients=tf.UnconnectedGradients.ZERO)
      # Dense: in a while loop (task_chunk) vectorized_map's gradient comes as IndexedSlices.
      grads = [tf.convert_to_tensor(g) for g in grads]
      if step == start_step:
        support_loss_0 = support_loss
      if first_order:
        grads = [tf.stop_gradient(g) for g in grads]
      fast = [p - self._step_size(i, step, lr, lrs) * g if adapt else p
              for i, (p, g, adapt) in enumerate(zip(fast, grads, self.adapt_mask))]
      path.append(fast)
    return (path if trajectory else fast), support_loss_0

  def _step_size(self, index: int, step: int, lr, lrs: dict):
    """The step size of variable `index` at inner step `step` (0-based)."""
    if not lrs:
      return lr
    if self.inner_lr == 'per_parameter':
      return lrs[index]  # [...] broadcasts over the task axis
    return lrs[index][min(step, self.num_updates - 1)]

  # --- objectives --------------------------------------------------------------------------------

  def meta_objective(self, episode, params: Sequence[tf.Tensor], first_order: bool | None = None,
                     iteration=None):
    """Query loss after num_updates steps, averaged over the T tasks (the meta-loss).

    params: aligned with self.variables (or theta alone: the extras are then the variables').
    first_order: overrides the constructor's (derivative-order annealing).
    iteration: optimizer updates so far, for the multi-step loss weights.

    Returns (meta_loss scalar, pre-update support loss [T], post-update query loss [T]).
    """
    support_x, support_y, query_x, query_y = episode[:4]
    theta, lrs, norms = self._split(params)
    tiled = self.tile(theta, tf.shape(support_x)[0])
    first_order = self.first_order if first_order is None else first_order
    path, pre_loss = self.adapt(tiled, support_x, support_y, steps=self.num_updates,
                                lr=self.update_lr, first_order=first_order, lrs=lrs, norms=norms,
                                trajectory=True)
    shots = support_shots(support_y)

    def query_loss(step):
      return self.loss_fn(query_y, self.forward(self.at_step(path[step], step, norms), query_x), shots)

    post_loss = query_loss(self.num_updates)
    if pre_loss is None:  # num_updates == 0: theta itself is evaluated on the query set
      pre_loss = post_loss
    if not self.multi_step_loss_epochs or iteration is None:
      return tf.reduce_mean(post_loss), pre_loss, post_loss
    weights = multi_step_loss_weights(tf.math.floordiv(iteration, self.epoch_iterations),
                                      self.num_updates, self.multi_step_loss_epochs, post_loss.dtype)
    losses = [tf.reduce_mean(query_loss(s)) for s in range(1, self.num_updates)]
    return tf.tensordot(weights, tf.stack(losses + [tf.reduce_mean(post_loss)]), 1), pre_loss, post_loss

  def pretrain_objective(self, episode, params: Sequence[tf.Tensor], first_order=None,
                         iteration=None):
    """The "pretrained" baseline: plain multi-task loss of theta on the support sets.

    Returns (loss scalar, support loss [T], support loss [T]), shaped like `meta_objective`.
    """
    del first_order, iteration  # no inner loop
    support_x, support_y = episode[:2]
    theta, _, _ = self._split(params)
    tiled = self.tile(theta, tf.shape(support_x)[0])
    loss = self.loss_fn(support_y, self.forward(tiled, support_x), support_shots(support_y))
    return tf.reduce_mean(loss), loss, loss

  def meta_gradient(self, episode, objective: str = 'maml', clip: bool = True,
                    first_order: bool | None = None, iteration=None):
    """(gradients aligned with self.variables, meta-loss, pre, post).

    clip=False leaves out meta_grad_clip (a distributed step clips the all-reduced gradient).
    """
    fn = {'maml': self.meta_objective, 'pretrain': self.pretrain_objective}[objective]
    with tf.GradientTape() as tape:
      params = self.params()
      tape.watch(params)
      loss, pre, post = fn(episode, params, first_order, iteration)
    grads = tape.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return (self.clip(grads) if clip else grads), loss, pre, post

  def chunked_meta_gradient(self, episode, objective: str = 'maml', first_order: bool | None = None,
                            iteration=None):
    """`meta_gradient` (unclipped) computed self.task_chunk tasks at a time.

    The meta-loss is a mean over tasks, so it and its gradient are the mean of the chunks' (the
    multi-step loss weights are linear in it too). The chunks run in a tf.while_loop whose
    parallel_iterations is self.chunks_in_flight, so that many chunks' activations are alive at a
    time; the sums still add the chunks in order (the accumulators are loop-carried).
    """
    chunk = self.task_chunk
    num_tasks = tf.shape(episode[0])[0]
    tf.debugging.assert_equal(num_tasks % chunk, 0, f'the meta-batch must be a multiple of '
                              f'task_chunk={chunk}')
    num_chunks = num_tasks // chunk
    dtype = self.variables[0].dtype
    weight = 1.0 / tf.cast(num_chunks, dtype)

    def body(i, grads, loss, pre, post):
      part = tuple(e[i * chunk:(i + 1) * chunk] for e in episode)
      g, l, p, q = self.meta_gradient(part, objective, False, first_order, iteration)
      return (i + 1, [a + b * weight for a, b in zip(grads, g)], loss + l * weight,
              pre.write(i, p), post.write(i, q))

    start = (tf.constant(0), [tf.zeros_like(v) for v in self.variables], tf.zeros([], dtype),
             tf.TensorArray(dtype, size=num_chunks), tf.TensorArray(dtype, size=num_chunks))
    _, grads, loss, pre, post = tf.while_loop(lambda i, *_: i < num_chunks, body, start,
                                              parallel_iterations=self.chunks_in_flight)
    return grads, loss, pre.concat(), post.concat()

  def clip(self, grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """Each meta-gradient entry clipped to [-meta_grad_clip, meta_grad_clip] (if set)."""
    if self.meta_grad_clip is None:
      return grads
    return [tf.clip_by_value(g, -self.meta_grad_clip, self.meta_grad_clip) for g in grads]

  # --- compiled steps ----------------------------------------------------------------------------

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = 'maml',
                      jit_compile: bool = False, steps_per_call: int = 1,
                      strategy: tf.distribute.Strategy | None = None,
                      first_order: bool | None = None):
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

    first_order: overrides the constructor's (MAML++ derivative-order annealing trains with a
    first-order step, then a second-order one). The multi-step loss weights follow
    optimizer.iterations, so they resume with the optimizer.
    """
    if steps_per_call < 1:
      raise ValueError(f'steps_per_call={steps_per_call} must be at least 1')
    variables = self.variables

    def single(episode):
      if self.task_chunk:
        grads, loss, pre, post = self.chunked_meta_gradient(episode, objective, first_order,
                                                            optimizer.iterations)
        grads = self.clip(grads)
      else:
        grads, loss, pre, post = self.meta_gradient(episode, objective, True, first_order,
                                                    optimizer.iterations)
      optimizer.apply(grads, variables)
      return {'loss': loss, 'pre_loss': tf.reduce_mean(pre), 'post_loss': tf.reduce_mean(post)}

    @tf.function(jit_compile=jit_compile)
    def replica_part(*episode):
      context = tf.distribute.get_replica_context()
      replicas = context.num_replicas_in_sync
      tasks = tf.shape(episode[0])[0] // replicas
      start = tasks * context.replica_id_in_sync_group
      part = tuple(e[start:start + tasks] for e in episode)
      grads, loss, pre, post = self.meta_gradient(part, objective, False, first_order,
                                                  optimizer.iterations)
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

    # With a strategy only the per-replica part is compiled by XLA (cross-replica ops are not).
    return compile_update(single if strategy is None else distributed, variables[0].dtype,
                          steps_per_call, jit_compile and strategy is None)

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """A compiled meta-test: adapts with `steps` plain SGD steps, no meta-update.

    Returns fn(support_x, support_y, query_x, query_y, lr) -> dict with 'loss' and 'metric'
    [steps+1, T] on the query set (index s = after s steps) and, if return_outputs, 'outputs'
    [steps+1, T, M, ...] (for plots). lr is alpha unless the step sizes are learned.
    """
    def step(support_x, support_y, query_x, query_y, lr):
      theta, lrs, norms = self._split(self.params())
      fast = self.tile(theta, tf.shape(support_x)[0])
      result = {'loss': [], 'metric': [], 'outputs': []}
      for s in range(steps + 1):
        out = self.predict(self.at_step(fast, s, norms), support_x, query_x)
        result['loss'].append(self.loss_fn(query_y, out, support_shots(support_y)))
        result['metric'].append(self.metric_fn(query_y, out))
        if return_outputs:
          result['outputs'].append(out)
        if s < steps:
          fast = self.adapt(fast, support_x, support_y, steps=1, lr=lr, first_order=True, lrs=lrs,
                            norms=norms, start_step=s)[0]
      return {k: tf.stack(v) for k, v in result.items() if v}

    # Every K (and the plotting grid) has its own shapes; reduce_retracing keeps one general trace
    # (not for 'loop', which unrolls over a known number of tasks). No AutoGraph: the steps are a
    # Python loop to unroll, and its conversion of every function called was most of the trace.
    return tf.function(step, jit_compile=jit_compile, autograph=False,
                       reduce_retracing=self.task_parallelism != 'loop')
