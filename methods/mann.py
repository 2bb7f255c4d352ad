"""Memory-augmented neural networks (Santoro, Bartunov, Botvinick, Wierstra, Lillicrap, ICML 2016,
"Meta-Learning with Memory-Augmented Neural Networks") and their LSTM baseline, on this project's
Omniglot episodes.

An episode is a sequence: at step t the network sees the image x_t and the one-hot label of the
previous step, y_{t-1} (zeros at t = 0), and predicts y_t with a softmax over the N classes, so it
must bind each label to its image in memory and recall it when the class comes back. The order of a
sequence is a pseudo-random permutation of its images (`sequence_order`).

MANN (`memory=True`): an LSTM controller (h_t, c_t) reads [x_t, y_{t-1}, r_{t-1}]; from h_t each of
the H heads emits a key k_t^i = tanh(W_k h_t), an add vector a_t^i = tanh(W_a h_t) and a gate
alpha_t^i. The memory M [S slots, D] is addressed by least-recently-used access (LRUA):

  w^lu_{t-1}  = 1 on the H least used slots of w^u_{t-1}, else 0                       (eq. 21)
  w^w_t^i     = sigmoid(alpha_t^i) w^r_{t-1}^i + (1 - sigmoid(alpha_t^i)) w^lu_{t-1}     (eq. 22)
  M_t         = M_{t-1} with its least used slot zeroed, + sum_i w^w_t^i (a_t^i)^T       (eq. 23)
  w^r_t^i     = softmax_j cos(k_t^i, M_t(j)),   r_t^i = sum_j w^r_t^i(j) M_t(j)     (eqs. 17-18)
  w^u_t       = gamma w^u_{t-1} + sum_i w^r_t^i + sum_i w^w_t^i                          (eq. 20)

and the output is softmax(W_o [h_t, r_t^1..H] + b_o). The paper writes the key itself into memory
(eq. 23 adds w^w k_t); this module writes a separate add vector a_t, as the re-implementations
tristandeleu/ntm-one-shot and snowkylin/ntm (k_strategy='separate') do (docs/mann.md#decisions).
Initial state as tristandeleu's: M_0 = 1e-6, w^r_0 and w^u_0 one-hot on slot 0, h, c, r zero.

LSTM baseline (`memory=False`): the same controller on [x_t, y_{t-1}], output softmax(W_o h_t + b_o).

Training: every step of the shuffled sequence made of a training episode's N*(K+Q) images is scored
(mean cross-entropy; the rows take K + Q = 10, Santoro's 10 instances per class). Meta-test: the
task's N*K support images form the sequence (shuffled, labels one step late); each query is then one
more step from the state the support sequence leaves, with the last support label as its y_{t-1},
so every query has seen the K labelled examples of its class and no other query (non-transductive).
The eval fn also returns 'instance_accuracy' [K+1, T]: the accuracy at the p-th presentation of a
class (p = 1..K on the support sequence, before its label is shown; p = K+1: the queries), the
quantity of Santoro's Table 1.
"""

from __future__ import annotations

import keras
import tensorflow as tf

import config
from config import option
import data_generator
import methods
import utils


def sequence_order(x: tf.Tensor) -> tf.Tensor:
  """The order in which a task's images are shown: [T, M, ...] -> a permutation [T, M] int32.

  The images sorted by a hash of their pixels (tf.fingerprint): a pseudo-random order that is a
  function of the task alone, so a test task is shown in the same order in any chunk, and a resumed
  run sees the very sequences an uninterrupted one saw (no random state to checkpoint)."""
  t, m = tf.shape(x)[0], tf.shape(x)[1]
  keys = tf.bitcast(tf.fingerprint(tf.reshape(x, [t * m, -1])), tf.int64)  # [T*M]
  return tf.argsort(tf.reshape(keys, [t, m]), axis=1, stable=True)


def shuffled(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(x, y) [T, M, ...] in sequence_order(x)."""
  order = sequence_order(x)
  return tf.gather(x, order, batch_dims=1), tf.gather(y, order, batch_dims=1)


def previous_labels(y: tf.Tensor) -> tf.Tensor:
  """y_{t-1}: one-hot labels [T, M, N] one step late, zeros at t = 0."""
  return tf.concat([tf.zeros_like(y[:, :1]), y[:, :-1]], 1)


def least_used(usage: tf.Tensor, n: int) -> tuple[tf.Tensor, tf.Tensor]:
  """(w^lu [B, S]: 1 on the n least used slots of usage w^u [B, S], else 0; the least used slot's
  index [B]). Ties go to the lower slot (top_k's order)."""
  indices = tf.math.top_k(-usage, n).indices                              # [B, n], least first
  return tf.reduce_sum(tf.one_hot(indices, tf.shape(usage)[-1], dtype=usage.dtype), 1), indices[:, 0]


def write_weights(alpha: tf.Tensor, prev_read: tf.Tensor, lu: tf.Tensor) -> tf.Tensor:
  """w^w [B, H, S] = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}; alpha [B, H],
  prev_read w^r_{t-1} [B, H, S], lu w^lu_{t-1} [B, S]."""
  gate = tf.sigmoid(alpha)[..., None]
  return gate * prev_read + (1.0 - gate) * lu[:, None]


def cosine_read_weights(keys: tf.Tensor, memory: tf.Tensor) -> tf.Tensor:
  """w^r [B, H, S] = softmax over slots j of cos(k^i, M(j)); keys [B, H, D], memory [B, S, D]. A
  zero slot has cosine 0."""
  cos = tf.einsum('bhd,bsd->bhs', tf.math.l2_normalize(keys, -1), tf.math.l2_normalize(memory, -1))
  return tf.nn.softmax(cos, -1)


class MANNNetwork(keras.Model):
  """The controller, the heads and the output layer (theta): x [B, d_in] one step at a time.

  Args:
    image_size: d_x, the flattened image (Omniglot 28*28).
    num_classes: N (the label input and the softmax).
    units: the LSTM controller's size. memory: False gives the LSTM baseline.
    slots, width: the memory's S x D. reads: H, the heads. gamma: the usage decay.
  """

  def __init__(self, image_size: int, num_classes: int, *, units: int = 200, memory: bool = True,
               slots: int = 128, width: int = 40, reads: int = 4, gamma: float = 0.95):
    super().__init__(name='mann' if memory else 'lstm')
    self.memory, self.units, self.slots, self.width, self.reads = memory, units, slots, width, reads
    self.gamma = gamma
    read_size = reads * width if memory else 0
    self.controller = keras.layers.LSTMCell(units, name='controller')
    self.controller.build((None, image_size + num_classes + read_size))
    if memory:
      self.heads = keras.layers.Dense(reads * (2 * width + 1), name='heads')  # keys, adds, alphas
      self.heads.build((None, units))
    self.classifier = keras.layers.Dense(num_classes, name='output')
    self.classifier.build((None, units + read_size))
    self.built = True  # every weight exists now (the optimizer and the checkpoint need them)

  def initial_state(self, batch: tf.Tensor) -> dict[str, tf.Tensor]:
    """The state before step 0 for `batch` sequences (tristandeleu's: M = 1e-6, w^r and w^u
    one-hot on slot 0)."""
    zeros = lambda *shape: tf.zeros(tf.stack([batch, *shape]))
    state = {'h': zeros(self.units), 'c': zeros(self.units)}
    if self.memory:
      first = tf.one_hot(tf.zeros(tf.stack([batch]), tf.int32), self.slots)      # [B, S]
      state.update(read=zeros(self.reads * self.width),
                   w_read=tf.tile(first[:, None], [1, self.reads, 1]), usage=first,
                   memory=tf.fill(tf.stack([batch, self.slots, self.width]), 1e-6))
    return state

  def step(self, x: tf.Tensor, state: dict[str, tf.Tensor]):
    """One step: x [B, d_x + N] (the image and y_{t-1}) -> (logits [B, N], the new state)."""
    inputs = tf.concat([x, state['read']], -1) if self.memory else x
    h, (_, c) = self.controller(inputs, [state['h'], state['c']])
    if not self.memory:
      return self.classifier(h), {'h': h, 'c': c}
    b, n, d = tf.shape(h)[0], self.reads, self.width
    params = self.heads(h)
    keys = tf.reshape(tf.tanh(params[:, :n * d]), [b, n, d])
    adds = tf.reshape(tf.tanh(params[:, n * d:2 * n * d]), [b, n, d])
    alpha = params[:, 2 * n * d:]                                             # [B, H]
    lu, least = least_used(state['usage'], n)
    w_write = write_weights(alpha, state['w_read'], lu)
    memory = state['memory'] * (1.0 - tf.one_hot(least, self.slots))[..., None]
    memory += tf.einsum('bhs,bhd->bsd', w_write, adds)
    w_read = cosine_read_weights(keys, memory)
    read = tf.reshape(tf.einsum('bhs,bsd->bhd', w_read, memory), [b, n * d])
    usage = (self.gamma * state['usage'] + tf.reduce_sum(w_read, 1)
             + tf.reduce_sum(w_write, 1))
    logits = self.classifier(tf.concat([h, read], -1))
    return logits, {'h': h, 'c': c, 'read': read, 'w_read': w_read, 'usage': usage,
                    'memory': memory}

  def run(self, x: tf.Tensor, y_prev: tf.Tensor, state: dict | None = None):
    """A whole sequence: images x [T, M, ...], y_prev [T, M, N] -> (logits [T, M, N], the final
    state). M must be static (the steps are unrolled)."""
    flat = tf.reshape(x, tf.concat([tf.shape(x)[:2], [-1]], 0))
    if state is None:
      state = self.initial_state(tf.shape(x)[0])
    outputs = []
    for t in range(x.shape[1]):
      logits, state = self.step(tf.concat([flat[:, t], y_prev[:, t]], -1), state)
      outputs.append(logits)
    return tf.stack(outputs, 1), state

  def call(self, inputs):
    x, y_prev = inputs
    return self.run(x, y_prev)[0]


def sequence_xent(y: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  """Mean softmax cross-entropy over each sequence's steps [T]; y one-hot, logits [T, M, N]."""
  return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits), -1)


def instance_accuracy(y: tf.Tensor, logits: tf.Tensor, presentations: int) -> tf.Tensor:
  """Accuracy (%) at the p-th presentation of a class, p = 1..presentations: [presentations, T].

  y one-hot [T, M, N] in the order shown, logits [T, M, N]; the mean over the steps that show their
  class for the p-th time (NaN if no class of a task reaches p)."""
  seen = tf.reduce_sum(tf.cumsum(y, axis=1) * y, -1)                       # [T, M]: p of each step
  hits = tf.cast(tf.equal(tf.argmax(y, -1), tf.argmax(logits, -1)), logits.dtype)
  at = tf.cast(tf.equal(seen[None], tf.range(1, presentations + 1, dtype=y.dtype)[:, None, None]),
               logits.dtype)                                                # [P, T, M]
  return 100.0 * tf.reduce_sum(at * hits[None], -1) / tf.reduce_sum(at, -1)


class MANNLearner:
  """A MANN (or its LSTM baseline) over MANNNetwork theta, with the trainer's step interface."""

  def __init__(self, model: MANNNetwork):
    self.model = model
    self.extra_variables = []

  @property
  def variables(self) -> list:
    return list(self.model.trainable_variables)

  def predict(self, support_x: tf.Tensor, support_y: tf.Tensor, query_x: tf.Tensor):
    """(query logits [T, Q, N], support logits [T, N*K, N] and labels in the order shown).

    The support set is one shuffled sequence; each query is one more step from its final state, with
    the last support label as y_{t-1} (the queries are independent of each other)."""
    x, y = shuffled(support_x, support_y)
    logits, state = self.model.run(x, previous_labels(y))
    t, q = tf.shape(query_x)[0], tf.shape(query_x)[1]
    branch = {k: tf.repeat(v, q, axis=0) for k, v in state.items()}       # [T*Q, ...]
    xq = tf.reshape(query_x, tf.stack([t * q, -1]))
    out, _ = self.model.step(tf.concat([xq, tf.repeat(y[:, -1], q, axis=0)], -1), branch)
    return tf.reshape(out, tf.stack([t, q, -1])), logits, y

  def make_train_step(self, optimizer: keras.optimizers.Optimizer, objective: str = methods.META,
                      jit_compile: bool = False, steps_per_call: int = 1, strategy=None):
    """fn(support_x, support_y, query_x, query_y) -> {'loss', 'pre_loss', 'post_loss'}, all the
    mean cross-entropy over the steps of the T sequences (support and queries shown together)."""
    if objective != methods.META or steps_per_call != 1 or strategy is not None:
      raise ValueError(f'MANN trains the episodic objective ({methods.META!r}) one update per '
                       'call on one device')
    variables = self.variables

    def update(x, y):
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(sequence_xent(y, self.model.run(x, previous_labels(y))[0]))
      optimizer.apply(tape.gradient(loss, variables), variables)
      return {'loss': loss, 'pre_loss': loss, 'post_loss': loss}

    # tf.fingerprint (the order) has no XLA kernel: the sequences are put in order outside the
    # update, which jit_compile may compile.
    update = tf.function(update, jit_compile=jit_compile)

    def step(support_x, support_y, query_x, query_y):
      return update(*shuffled(tf.concat([support_x, query_x], 1),
                              tf.concat([support_y, query_y], 1)))

    return tf.function(step)

  def make_eval_step(self, steps: int, return_outputs: bool = False):
    """fn(support_x, support_y, query_x, query_y, lr) -> {'loss', 'metric'} [1, T] on the queries,
    'instance_accuracy' [K+1, T] (and 'outputs' [1, T, N*Q, N]); lr is ignored, steps must be 0.
    Traced once per shape: the steps are unrolled over the support set's static length."""

    def task(support_x, support_y, query_x, query_y):
      out, logits, y = self.predict(support_x, support_y, query_x)
      metric = utils.accuracy(query_y, out)
      shots = support_y.shape[1] // support_y.shape[2]
      return {'loss': tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(query_y, out), -1),
              'metric': metric, 'outputs': out,
              'instance_accuracy': tf.concat([instance_accuracy(y, logits, shots), metric[None]],
                                             0)}

    return methods.stepless_eval_step(task, 'MANN rows', steps, return_outputs=return_outputs,
                                      reduce_retracing=False)


@config.Part
class MANNOptions:
  """MANN's options (Santoro et al. 2016): the memory, or none for the LSTM baseline."""
  mann_memory: bool = option(
      True, 'MANN: the external memory (False: the LSTM baseline, the controller alone).',
      flag=True)
  mann_units: int = option(200, 'MANN: the LSTM controller\'s units (Santoro: 200).')
  mann_slots: int = option(128, 'MANN: memory slots S (Santoro: 128).')
  mann_slot_width: int = option(40, 'MANN: the width D of a memory slot (Santoro: 40).')
  mann_reads: int = option(4, 'MANN: read heads H, also the slots w^lu marks (Santoro: 4).')
  mann_gamma: float = option(0.95, 'MANN: gamma, the decay of the usage weights (Santoro: 0.95).')

  def check(self, bad: config.Bad) -> None:
    defaults = MANNOptions.__dataclass_fields__
    if self.method != MANN.name:
      for name in defaults:
        if getattr(self, name) != defaults[name].default:
          bad(name, 'is for MANN rows only')
      return
    config.at_least(self, bad, 1, ('mann_units', 'mann_slots', 'mann_slot_width', 'mann_reads'))
    if self.mann_reads > self.mann_slots:
      bad('mann_reads', f'must not exceed mann_slots ({self.mann_slots}): w^lu marks one slot per read')
    if not 0 <= self.mann_gamma <= 1:
      bad('mann_gamma', 'must lie in [0, 1]')
    if self.datasource not in ('omniglot', 'miniimagenet', 'folder'):
      bad('datasource', 'must be an image datasource: MANN classifies sequences of images')
    if self.test_num_updates or self.report_step:
      bad('method', 'fine-tunes nothing: test_num_updates and report_step must be 0')
    if self.steps_per_call != 1 or self.distribute != 'none':
      bad('steps_per_call', 'must be 1, and distribute none: MANN runs one update per call on one '
          'device')
    if self.meta_grad_clip is not None or self.min_meta_lr is not None:
      bad('meta_grad_clip', 'and min_meta_lr must be None: MANN trains with plain Adam')


@methods.register('mann')
class MANN(methods.Method):
  """Santoro et al.'s MANN, or with mann_memory=False its LSTM baseline."""
  inner_loop = False
  options = MANNOptions
  report_groups = {'mann': 'MANN (Santoro et al. 2016) and its LSTM baseline'}

  def build_model(self) -> MANNNetwork:
    cfg = self.cfg
    h, w, c = data_generator.image_shape(cfg)
    return MANNNetwork(h * w * c, cfg.num_classes, units=cfg.mann_units, memory=cfg.mann_memory,
                       slots=cfg.mann_slots, width=cfg.mann_slot_width, reads=cfg.mann_reads,
                       gamma=cfg.mann_gamma)

  def build(self, model: MANNNetwork) -> MANNLearner:
    return MANNLearner(model)

  def log_losses(self, values: dict[str, float]) -> str:
    return 'sequence loss %.4f' % values['loss']

  def label(self) -> str:
    return 'MANN' if self.cfg.mann_memory else 'LSTM (MANN\'s baseline)'
