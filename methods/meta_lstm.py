"""The meta-learner LSTM (Ravi & Larochelle, ICLR 2017, "Optimization as a Model for Few-Shot
Learning"), after the official code (twitter-research/meta-learning-lstm, model/lstm/).

A learner f_theta (the row's conv4) is trained on a task's support set by a learned optimizer: a
coordinate-wise 2-layer LSTM, shared by every coordinate of theta, whose second layer's cell state
*is* theta. At update t = 1..S the learner's loss L_t (mean cross-entropy over the support set) and
its gradient g_t at theta_{t-1} enter the first layer, an ordinary LSTM of H = 20 units that reads
the preprocessed (L_t, g_t) of each coordinate; its output h_t drives the second layer, the "cI"
cell,

  i_t = sigmoid(W_I [h_t, theta_{t-1}, i_{t-1}] + b_I)      (a learned step size per coordinate)
  f_t = sigmoid(W_F [h_t, theta_{t-1}, f_{t-1}] + b_F)      (a learned decay per coordinate)
  theta_t = f_t * theta_{t-1} - i_t * g_t,

from theta_0 = cI, the meta-learned initial parameters, and i_0 = f_0 = 0. With i_t = alpha and
f_t = 1 this is SGD. The queries' mean cross-entropy under theta_S is the meta-loss; its gradient
reaches cI, W_I, b_I, W_F, b_F and the first layer through theta_S, ..., theta_0 and the gates. The
learner's loss and gradient are inputs (tf.stop_gradient): the paper drops the second derivatives,
as the official code (which breaks the graph with DirectNode.getValue).

Preprocessing (Andrychowicz et al. 2016, p = 10): x -> (log|x| / p, sign x) if |x| >= e^-p, else
(-1, e^p x); the first layer reads [pre(L_t), pre(g_t)] (4 inputs, the loss first as the official).
The official code feeds the gradient of the mean loss divided by the batch size once more
(`gradParameters:div(inputs:size(1))`); so does this module, as both g_t the cell subtracts and the
gradient the first layer reads. Initialization as the official: every meta-learner weight
U(-0.01, 0.01), b_F ~ U(4, 5) and b_I ~ U(-5, -4), so training starts near SGD with f ~ 1 and a
small i ~ 0.01.

theta = cI is the model's trainable variables (every one, batch norm's beta too, as the official
cell holds every learner parameter), flattened to P coordinates; the meta-learner's own weights are
`extra_variables` (saved under 'extras'). The learner runs per task through maml.MAML's forward
pass, so batch norm normalizes each batch with its own statistics at training and test alike (the
rows' choice; the official learner predicts meta-test queries with running statistics). T tasks run
side by side ([T, P] parameters); the rows take one episode per update, as the official code.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import config
from config import option
from l2l.optimizer import preprocess  # Andrychowicz et al.'s, as the LSTM optimizer's
from maml import MAML, compile_update
import methods
from methods.metric import nll
import utils

PREPROCESS_P = 10.0   # Andrychowicz et al.'s p
GATE_INPUTS = ('gate', 'logit')


class MetaLSTMLearner:
  """The learner f_theta and the meta-learner LSTM that trains it (module docstring).

  Args:
    model: the learner, a built Keras model; its trainable variables are theta_0 = cI.
    num_updates: S, the meta-learner's updates of theta at meta-training.
    hidden: H, the first layer's units.
    clip_norm: the meta-gradient is clipped to this global norm (None: not at all).
    gate_input: what the gates read back: 'gate', i_{t-1} and f_{t-1} themselves (the paper), or
      'logit', their values before the sigmoid (the official code and markdtw's port).
    task_parallelism, batched_forward, transductive: the learner's forward pass and evaluation, as
      maml.MAML's.
  """

  def __init__(self, model: keras.Model, *, num_updates: int, hidden: int = 20,
               clip_norm: float | None = 0.25, gate_input: str = 'gate',
               task_parallelism: str = 'vectorized_map', batched_forward=None,
               transductive: bool = True):
    if gate_input not in GATE_INPUTS:
      raise ValueError(f'gate_input={gate_input!r} is not one of {GATE_INPUTS}')
    self.model = model
    self.num_updates, self.hidden = num_updates, hidden
    self.clip_norm, self.gate_input = clip_norm, gate_input
    self.loss_fn, self.metric_fn = nll, utils.accuracy
    # Composition: MAML's per-task forward pass and (non-)transductive prediction; its own inner
    # loop is never run.
    self._maml = MAML(model, nll, utils.accuracy, update_lr=0.0, num_updates=0,
                      task_parallelism=task_parallelism, batched_forward=batched_forward,
                      transductive=transductive)
    self.task_parallelism = task_parallelism
    theta = model.trainable_variables
    self.shapes = [tuple(v.shape) for v in theta]
    self.sizes = [int(np.prod(s)) for s in self.shapes]
    self.num_params = sum(self.sizes)  # P
    dtype = theta[0].dtype

    def weight(name, shape, low=-0.01, high=0.01):  # a fresh initializer each: its own draw
      return keras.Variable(keras.initializers.RandomUniform(low, high)(shape, dtype), name=name)

    # Layer 1 (an LSTM over [pre(L), pre(g)]), then the cI cell's W_I, b_I, W_F, b_F; W_* hold the
    # weights of [h (H), theta_{t-1}, gate_{t-1}].
    self.extra_variables = [
        weight('lstm_kernel', (4, 4 * hidden)), weight('lstm_recurrent_kernel', (hidden, 4 * hidden)),
        weight('lstm_bias', (4 * hidden,)),
        weight('w_i', (hidden + 2,)), weight('b_i', (), -5.0, -4.0),
        weight('w_f', (hidden + 2,)), weight('b_f', (), 4.0, 5.0)]

  @property
  def variables(self) -> list:
    """Everything the meta-optimizer learns: theta_0 = cI, then the meta-learner's weights."""
    return list(self.model.trainable_variables) + self.extra_variables

  def params(self) -> list[tf.Tensor]:
    """The variables as tensors (reads, so a tape that watches them sees them)."""
    return [tf.convert_to_tensor(v) for v in self.variables]

  # --- theta as P coordinates ----------------------------------------------------------------------

  def flatten(self, tensors) -> tf.Tensor:
    """theta as a list aligned with the model's variables, [T, ...] each -> [T, P]."""
    return tf.concat([tf.reshape(t, [tf.shape(t)[0], -1]) for t in tensors], 1)

  def unflatten(self, flat: tf.Tensor) -> list[tf.Tensor]:
    """[T, P] -> the list aligned with the model's variables, [T, ...] each."""
    parts = tf.split(flat, self.sizes, axis=1)
    return [tf.reshape(p, [-1, *s]) for p, s in zip(parts, self.shapes)]

  # --- the learner ------------------------------------------------------------------------------

  def learner_gradient(self, theta: tf.Tensor, x: tf.Tensor, y: tf.Tensor):
    """(L [T], g [T, P]): the learner's mean cross-entropy on (x [T, B, ...], y [T, B, N]) at
    theta [T, P], and its gradient divided by B (the official feval). Both are constants: no
    derivative of the meta-loss passes through them (the paper drops the second derivatives)."""
    theta = tf.stop_gradient(theta)
    with tf.GradientTape() as tape:
      tape.watch(theta)
      loss = nll(y, self._maml.forward(self.unflatten(theta), x))
      total = tf.reduce_sum(loss)  # tasks are independent: its gradient is each task's
    grad = tf.convert_to_tensor(tape.gradient(total, theta)) / tf.cast(tf.shape(x)[1], theta.dtype)
    return tf.stop_gradient(loss), tf.stop_gradient(grad)

  def predict(self, theta: tf.Tensor, support_x: tf.Tensor, query_x: tf.Tensor) -> tf.Tensor:
    """The learner's query logits [T, Q, N] at theta [T, P] (transductive or not, as MAML's)."""
    return self._maml.predict(self.unflatten(theta), support_x, query_x)

  # --- the meta-learner ---------------------------------------------------------------------------

  def initial_state(self, theta: tf.Tensor):
    """(h, c) of the first layer [T, P, H] and i_0, f_0 [T, P]: zeros, as the official code."""
    zeros = tf.zeros(tf.concat([tf.shape(theta), [self.hidden]], 0), theta.dtype)
    return (zeros, zeros, tf.zeros_like(theta), tf.zeros_like(theta))

  def update(self, extras, theta: tf.Tensor, loss: tf.Tensor, grad: tf.Tensor, state):
    """One step of the meta-learner: (theta_t [T, P], state_t) from theta_{t-1} [T, P], L_t [T],
    g_t [T, P] and state_{t-1} (initial_state's). Returns also (i_t, f_t) [T, P]."""
    kernel, recurrent, bias, w_i, b_i, w_f, b_f = extras
    h, c, i_prev, f_prev = state
    loss_in = tf.broadcast_to(preprocess(loss, PREPROCESS_P)[:, None],
                              tf.concat([tf.shape(grad), [2]], 0))
    x = tf.concat([loss_in, preprocess(grad, PREPROCESS_P)], -1)               # [T, P, 4]
    z = tf.tensordot(x, kernel, 1) + tf.tensordot(h, recurrent, 1) + bias      # [T, P, 4H]
    gate_in, gate_forget, cell_in, gate_out = tf.split(z, 4, axis=-1)          # Keras' order
    c = tf.sigmoid(gate_forget) * c + tf.sigmoid(gate_in) * tf.tanh(cell_in)
    h = tf.sigmoid(gate_out) * tf.tanh(c)
    n = self.hidden

    def gate(w, b, prev):  # W [h, theta_{t-1}, gate_{t-1}] + b, [T, P]
      return tf.tensordot(h, w[:n], 1) + w[n] * theta + w[n + 1] * prev + b

    i_logit, f_logit = gate(w_i, b_i, i_prev), gate(w_f, b_f, f_prev)
    i, f = tf.sigmoid(i_logit), tf.sigmoid(f_logit)
    theta = f * theta - i * grad
    fed = (i, f) if self.gate_input == 'gate' else (i_logit, f_logit)
    return theta, (h, c, *fed), (i, f)

  def adapt(self, extras, theta: tf.Tensor, support_x: tf.Tensor, support_y: tf.Tensor,
            steps: int, trajectory: bool = False):
    """`steps` meta-learner updates of theta_0 [T, P] on the whole support set each (the official
    batch sizes, 5 and 25, are the support sets). Returns (theta_steps [T, P], or the list
    theta_0..theta_steps with trajectory; the support loss at theta_0 [T], None if steps == 0)."""
    state = self.initial_state(theta)
    path, first_loss = [theta], None
    for _ in range(steps):
      loss, grad = self.learner_gradient(theta, support_x, support_y)
      first_loss = loss if first_loss is None else first_loss
      theta, state, _ = self.update(extras, theta, loss, grad, state)
      path.append(theta)
    return (path if trajectory else theta), first_loss

  def initial_theta(self, params, num_tasks) -> tf.Tensor:
    """theta_0 = cI tiled to [T, P] from params aligned with `variables`."""
    theta = params[:len(self.model.trainable_variables)]
    return self.flatten(MAML.tile(theta, num_tasks))

  def meta_objective(self, episode, params):
    """(mean query loss after num_updates updates, support loss at theta_0 [T], query loss [T])."""
    support_x, support_y, query_x, query_y = episode[:4]
    extras = params[len(self.model.trainable_variables):]
    theta = self.initial_theta(params, tf.shape(support_x)[0])
    theta, pre = self.adapt(extras, theta, support_x, support_y, self.num_updates)
    # The meta-loss predicts a task's queries in one batch (as MAML's meta-loss).
    post = nll(query_y, self._maml.forward(self.unflatten(theta), query_x))
    return tf.reduce_mean(post), (post if pre is None else pre), post

  # --- compiled steps ----------------------------------------------------------------------------

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = methods.META,
                      jit_compile: bool = False, steps_per_call: int = 1, strategy=None):
    """A compiled meta-update -> {'loss': the meta-loss, 'pre_loss': support loss at theta_0,
    'post_loss': query loss after the updates} (means over the T tasks; [S] each for
    steps_per_call = S > 1). The meta-gradient is clipped to a global norm of clip_norm."""
    if objective != methods.META:
      raise ValueError(f'objective={objective!r}: the meta-learner LSTM trains the episodic '
                       f'objective only ({methods.META!r})')
    if strategy is not None:
      raise ValueError('the meta-learner LSTM does not support a tf.distribute strategy')
    variables = self.variables

    def update(episode):
      with tf.GradientTape() as tape:
        params = self.params()
        tape.watch(params)
        loss, pre, post = self.meta_objective(episode, params)
      grads = tape.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
      if self.clip_norm is not None:
        grads = tf.clip_by_global_norm(grads, self.clip_norm)[0]
      optimizer.apply(grads, variables)
      return {'loss': loss, 'pre_loss': tf.reduce_mean(pre), 'post_loss': tf.reduce_mean(post)}

    return compile_update(update, variables[0].dtype, steps_per_call, jit_compile)

  def make_eval_step(self, steps: int, jit_compile: bool = False, return_outputs: bool = False):
    """fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric'} [steps+1, T] on the
    queries after 0..steps updates by the meta-learner (and 'outputs' [steps+1, T, N*Q, N], the
    logits); lr is ignored: the step sizes are the meta-learner's."""
    def step(support_x, support_y, query_x, query_y, lr):
      del lr
      params = self.params()
      extras = params[len(self.model.trainable_variables):]
      theta = self.initial_theta(params, tf.shape(support_x)[0])
      path, _ = self.adapt(extras, theta, support_x, support_y, steps, trajectory=True)
      result = {'loss': [], 'metric': [], 'outputs': []}
      for theta in path:
        out = self.predict(theta, support_x, query_x)
        result['loss'].append(self.loss_fn(query_y, out))
        result['metric'].append(self.metric_fn(query_y, out))
        if return_outputs:
          result['outputs'].append(out)
      return {k: tf.stack(v) for k, v in result.items() if v}

    # Unrolled Python loops (no AutoGraph); one general trace for every K (reduce_retracing).
    return tf.function(step, jit_compile=jit_compile, autograph=False,
                       reduce_retracing=self.task_parallelism != 'loop')


@config.Part
class MetaLSTMOptions:
  """The meta-learner LSTM's options (Ravi & Larochelle 2017, the official code)."""
  meta_lstm_clip_norm: float | None = option(
      0.25, 'Meta-learner LSTM: clip the meta-gradient to this global norm (the official '
      'maxGradNorm: 0.25; None: no clipping).', flag=True)
  meta_lstm_gate_input: str = option(
      'gate', "Meta-learner LSTM: what its gates read back, i_{t-1} and f_{t-1} ('gate', the "
      "paper) or their values before the sigmoid ('logit', the official code).", flag=True,
      choices=GATE_INPUTS)

  def check(self, bad: config.Bad) -> None:
    if self.meta_lstm_clip_norm is not None and not self.meta_lstm_clip_norm > 0:
      bad('meta_lstm_clip_norm', 'must be positive or None')
    defaults = type(self).__dataclass_fields__
    if self.method != MetaLSTM.name:
      for name in ('meta_lstm_clip_norm', 'meta_lstm_gate_input'):
        if getattr(self, name) != defaults[name].default:
          bad(name, 'is for the meta-learner LSTM only')
      return
    if self.datasource == 'sinusoid' or self.metric != 'accuracy':
      bad('datasource', 'must be an image datasource: the meta-learner LSTM trains a classifier')
    if self.num_updates < 1:
      bad('num_updates', 'must be at least 1: the meta-learner updates the learner')
    if self.meta_grad_clip is not None:
      bad('meta_grad_clip', 'must be None: the meta-learner LSTM clips by norm (meta_lstm_clip_norm)')
    if self.distribute != 'none':
      bad('distribute', 'is for the gradient-based methods; the meta-learner LSTM runs on one device')


@methods.register('meta_lstm')
class MetaLSTM(methods.Method):
  """theta_t = f_t * theta_{t-1} - i_t * grad_t, the gates a coordinate-wise LSTM's (module
  docstring); theta_0 = cI, the model's variables; the LSTM's weights in 'extras'."""
  options = MetaLSTMOptions
  report_groups = {'meta_lstm': 'Meta-learner LSTM (Ravi & Larochelle 2017)'}

  def build(self, model: keras.Model) -> MetaLSTMLearner:
    cfg = self.cfg
    return MetaLSTMLearner(model, num_updates=cfg.num_updates, clip_norm=cfg.meta_lstm_clip_norm,
                           gate_input=cfg.meta_lstm_gate_input,
                           task_parallelism=cfg.task_parallelism,
                           batched_forward=methods.batched_forward(cfg, model),
                           transductive=cfg.transductive)

  @property
  def tunes_step_size(self) -> bool:  # the step sizes are the input gates: lr is ignored
    return False

  def reported_step_size(self, lr: float) -> str:
    return 'learned'

  def label(self) -> str:
    return 'meta-learner LSTM'
