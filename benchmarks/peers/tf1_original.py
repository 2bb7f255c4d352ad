"""The original 2017 code (github.com/cbfinn/maml) as a peer: its own maml.py, under TF 2's v1 API.

Run as `MAML_TF1_ORIGINAL=<checkout> python -m benchmarks.peers.tf1_original SPEC_JSON ITERATIONS
WARMUP` (the runner's --tf1_original=DIR sets the variable). Nothing of the original is copied here:
the user's checkout's maml.py (which imports its utils.py and special_grads.py) is IMPORTED, with
`tensorflow` mapped to tf.compat.v1 while it loads (graph mode, control flow v1:
tf.compat.v1.disable_v2_behavior()), and this module supplies only what TF 2 lacks:
- tf.contrib.layers.batch_norm / layer_norm / xavier_initializer(_conv2d) and tf.contrib.metrics.
  accuracy (`_contrib()`), with tf.contrib's defaults;
- the FLAGS maml.py and utils.py read, defined on TF's absl FLAGS and parsed from the command line
  main.py would be run with for the spec (`original_argv()`).
Then MAML(dim_input, dim_output, test_num_updates=inner_steps).construct_model(input_tensors=None,
prefix='metatrain_') and one timed step is sess.run([metatrain_op, meta-loss]) feeding a synthetic
episode of the spec to its placeholders: inputa/inputb [T, N*K or N*Q, H*W*C] flattened images
U[0, 1), labela/labelb [T, ., N] one-hot (sinusoid: [T, K or Q, 1] points and targets).
Without MAML_TF1_ORIGINAL, or without maml.py there, or for a spec the original cannot express, it
exits with status 3 and one line "skipped: <reason>" on stderr.

What the original does differently from the spec's work (its arithmetic is not patched):
- Tasks: tf.map_fn over the T tasks (a v1 while loop, parallel_iterations=T); each task's
  convolutions run on its own N*K support / N*Q query batch and the meta-gradient flows back
  through the loop's TensorArrays. The loop body also computes, for every task, the pre-update
  outputs, per-example losses and accuracies (argmax of softmax, tf.contrib.metrics.accuracy) and
  the post-update outputs of every step, all stacked out of the loop; they cost little beside the
  convolutions.
- Losses: xent = softmax cross-entropy per example / update_batch_size (K), a vector per task that
  tf.gradients sums; meta-loss = sum over tasks and queries / meta_batch_size. So the query loss is
  divided by K, not by Q (the spec's loss says the same). sinusoid: MSE mean per task, mean over T.
- Network and head are tied to the datasource the original infers: 1-channel images are 'omniglot'
  (mean over H, W, then [F, N] N(0, 1) weights), 3-channel images are 'miniimagenet' (flatten
  5*5*F, Xavier, which assumes max_pool and 84x84 inputs), [1] inputs are 'sinusoid' (1-40-40-1,
  truncated-normal(0.01) weights). The meta-gradient clip to [-10, 10] is applied iff
  'miniimagenet'. Specs that do not match these ties (other heads, widths or clips) are skipped.
- Batch norm (supplied here): TF 1.0 contrib's, the code's target ("TensorFlow v1.0+"), whose
  default was unfused: with is_training=True, nn.moments of the current batch over all axes but the
  channels, as sufficient statistics shifted by a copy of moving_mean (TF 1.0's moments: variance =
  sum((x - s)^2) / n - (mean - s)^2, exact first and second derivatives), then
  nn.batch_normalization with beta only (center=True, scale=False) and eps 1e-3. The moving_mean
  and moving_variance variables are created, but not their update ops: the original's train op
  never ran them (it did not depend on UPDATE_OPS), so the shift stays 0. beta is outside
  `weights`: not adapted in the inner loop, meta-learned by Adam (as the spec). Not the fused
  kernel that contrib used by default in later TF 1.x (and the project uses): under TF 2.21 its
  second derivative is wrong inside the original's v1 while loop (TF 2 differentiates
  FusedBatchNormGrad with a GradientTape): on a tiny spec the original's meta-gradient was off an
  exact float64 one by 0.8 to 1.4 times its own size, while first order and no norm matched to
  1e-5; so the fused kernel would time wrong arithmetic. The unfused one costs speed (Omniglot
  5-way: about half the fused kernel's it/s on this busy machine).
- special_grads.py registers a second derivative of MaxPoolGrad; TF 2.21 already has one
  (MaxPoolGradGrad), so its registration raises KeyError, which maml.py catches with a "WARN" on
  stderr: the max-pool second derivatives are TF's own.
- main.py's training graph had max(test_num_updates, num_updates) inner steps per task, with
  test_num_updates 10 for Omniglot and 5 for sinusoid, so its runs computed 10 (5) inner steps per
  meta-iteration though the meta-loss uses the first 1 or 5; here test_num_updates = inner_steps,
  which makes this figure faster than main.py's own training was for those rows. main.py also fed
  images from a queue pipeline (input_tensors) rather than placeholders, and built a second,
  'metaval_' graph, never run by the meta-update.
- Construction also builds, and never runs: an extra copy of the first task's graph (to create the
  batch norm variables), the pre-training Adam op and summaries. TF 2.21's map_fn converts
  task_metalearn with AutoGraph at construction (its Python loops stay Python).
- Adam: tf.train.AdamOptimizer, TF1's: theta -= lr_t * m / (sqrt(v) + 1e-8) with lr_t = beta *
  sqrt(1 - b2^t) / (1 - b1^t) (epsilon not bias-corrected). Reference variables (TF1's, as
  disable_v2_behavior makes them), float32 throughout, oneDNN on, TF's default threads (all cores).
  feed_dict copies the episode into the session every step.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import pathlib
import subprocess
import sys
import types

import numpy as np

from benchmarks import harness

IMPL = 'tf1_original'
ENV = 'MAML_TF1_ORIGINAL'
POOL = 4  # episodes generated before timing; step(i) uses episode i % POOL
MODULES = ('maml', 'utils', 'special_grads')  # the original's modules (names the project also has)
SKIP_STATUS = 3


class Skip(Exception):
  """This peer cannot run: no checkout, or a spec the original cannot express."""


def checkout() -> pathlib.Path:
  """The directory of the user's checkout of cbfinn/maml (from MAML_TF1_ORIGINAL), or Skip."""
  directory = os.environ.get(ENV)
  if not directory:
    raise Skip(f'{ENV} is not set (the directory of a checkout of github.com/cbfinn/maml; the '
               'runner sets it from --tf1_original=DIR)')
  path = pathlib.Path(directory)
  missing = [name for name in ('maml.py', 'utils.py') if not (path / name).is_file()]
  if missing:
    raise Skip(f'{ENV}={directory} is not a checkout of github.com/cbfinn/maml (no '
               f'{" or ".join(missing)})')
  return path


def datasource(spec: dict) -> str:
  """The original's --datasource for the spec; Skip if its network/head/clip ties do not match."""
  shape = list(spec['input_shape'])
  if spec['network'] == 'fc' and shape == [1]:
    source, hidden = 'sinusoid', [40, 40]  # maml.py hard-codes the sinusoid net's widths
  elif spec['network'] == 'conv4' and len(shape) == 3 and shape[2] in (1, 3):
    source, hidden = ('omniglot' if shape[2] == 1 else 'miniimagenet'), spec['hidden']
  elif spec['network'] == 'fc' and len(shape) == 3 and shape[2] in (1, 3):
    source, hidden = ('omniglot' if shape[2] == 1 else 'miniimagenet'), [256, 128, 64, 64]
  else:
    raise Skip(f'the original has no {spec["network"]} network on inputs {shape}')
  problems = []
  if list(spec['hidden']) != hidden:
    problems.append(f'hidden widths {spec["hidden"]} (the original: {hidden})')
  if source != 'sinusoid' and shape[0] != shape[1]:
    problems.append(f'non-square images {shape}')
  if spec['network'] == 'conv4':
    final = shape[0]
    for _ in range(4):  # stride-2 SAME convs, or stride-1 convs and 2x2 VALID pools
      final = final // 2 if spec['max_pool'] else -(-final // 2)
    head = 'flatten' if source == 'miniimagenet' else 'average'
    if spec['head'] != head:
      problems.append(f'head {spec["head"]} on {source} (the original: {head})')
    if source == 'miniimagenet' and final != 5:
      problems.append(f'a {final}x{final} last feature map (its flatten head assumes 5x5)')
  clip = 10.0 if source == 'miniimagenet' else None
  if spec['meta_grad_clip'] != clip:
    problems.append(f'meta_grad_clip {spec["meta_grad_clip"]} on {source} (the original: {clip})')
  if spec['loss'] != ('mse' if source == 'sinusoid' else 'xent'):
    problems.append(f'loss {spec["loss"]} on {source}')
  if spec['norm'] not in ('batch_norm', 'none'):
    problems.append(f'norm {spec["norm"]}')
  if problems:
    raise Skip('the original cannot express this spec: ' + '; '.join(problems))
  return source


def original_argv(spec: dict, metatrain_iterations: int) -> list[str]:
  """The main.py command line of the spec (flag values as main.py's --flags give them)."""
  source = datasource(spec)
  return ['main.py', f'--datasource={source}', f'--num_classes={spec["num_classes"]}',
          f'--update_batch_size={spec["support_per_class"]}', f'--update_lr={spec["inner_lr"]}',
          f'--meta_lr={spec["meta_lr"]}', f'--num_updates={spec["inner_steps"]}',
          f'--meta_batch_size={spec["meta_batch"]}',
          f'--norm={"batch_norm" if spec["norm"] == "batch_norm" else "None"}',
          f'--num_filters={spec["num_filters"]}', f'--max_pool={spec["max_pool"]}',
          f'--stop_grad={spec["first_order"]}', f'--conv={spec["network"] == "conv4"}',
          f'--metatrain_iterations={metatrain_iterations}']


def parse_flags(argv: list[str]):
  """Defines on TF's absl FLAGS the flags maml.py and utils.py read (as main.py does); parses
  argv into them."""
  from tensorflow.python.platform import flags  # what the original's modules import FLAGS from
  definitions = {  # name: (definer, main.py's default)
      'datasource': (flags.DEFINE_string, 'sinusoid'), 'num_classes': (flags.DEFINE_integer, 5),
      'metatrain_iterations': (flags.DEFINE_integer, 15000),
      'meta_batch_size': (flags.DEFINE_integer, 25), 'meta_lr': (flags.DEFINE_float, 0.001),
      'update_batch_size': (flags.DEFINE_integer, 5), 'update_lr': (flags.DEFINE_float, 1e-3),
      'num_updates': (flags.DEFINE_integer, 1), 'norm': (flags.DEFINE_string, 'batch_norm'),
      'num_filters': (flags.DEFINE_integer, 64), 'conv': (flags.DEFINE_bool, True),
      'max_pool': (flags.DEFINE_bool, False), 'stop_grad': (flags.DEFINE_bool, False)}
  for name, (define, default) in definitions.items():
    if name not in flags.FLAGS:  # defined once per process; re-parsing sets new values
      define(name, default, f'the original main.py flag --{name}')
  flags.FLAGS(argv)
  return flags.FLAGS


def _contrib(tf) -> types.ModuleType:
  """The pieces of tf.contrib the original uses, with tf.contrib's defaults (tf = tf.compat.v1)."""

  def moments(x, axes, shift, keep_dims):
    """TF 1.0's nn.moments: sufficient statistics about `shift` (a constant of x, or None for 0),
    variance = sum((x - s)^2) / n - (mean - s)^2, exact to the second derivative. (TF 2's
    nn.moments differentiates mean((x - stop_gradient(mean))^2) instead, whose second derivative
    misses a term.)"""
    counts, m_ss, v_ss, shift = tf.nn.sufficient_statistics(x, axes, shift=shift,
                                                            keep_dims=keep_dims)
    return tf.nn.normalize_moments(counts, m_ss, v_ss, shift)

  def batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001, activation_fn=None,
                 is_training=True, reuse=None, scope=None):
    """TF 1.0 contrib's (unfused) batch norm with is_training=True: the moments of this batch over
    all axes but the channels, shifted by a copy of moving_mean, then nn.batch_normalization."""
    if not is_training:
      raise NotImplementedError('the original always normalizes with batch statistics')
    del decay  # of the moving averages, whose update ops the original never runs
    channels = int(inputs.shape[-1])
    with tf.variable_scope(scope, 'BatchNorm', [inputs], reuse=reuse):
      beta = (tf.get_variable('beta', [channels], initializer=tf.zeros_initializer())
              if center else None)
      gamma = (tf.get_variable('gamma', [channels], initializer=tf.ones_initializer())
               if scale else None)
      moving_mean = tf.get_variable('moving_mean', [channels],
                                    initializer=tf.zeros_initializer(), trainable=False)
      tf.get_variable('moving_variance', [channels], initializer=tf.ones_initializer(),
                      trainable=False)
      # TF 1.0's batch norm shifted its moments by a copy of moving_mean.
      mean, variance = moments(inputs, list(range(inputs.shape.ndims - 1)),
                               tf.add(moving_mean, 0), False)
      outputs = tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, epsilon)
    return activation_fn(outputs) if activation_fn is not None else outputs

  def layer_norm(inputs, center=True, scale=True, activation_fn=None, reuse=None, scope=None,
                 begin_norm_axis=1, begin_params_axis=-1):
    """contrib's: moments over the axes from begin_norm_axis, beta and gamma of the axes from
    begin_params_axis, eps 1e-12."""
    rank = inputs.shape.ndims
    with tf.variable_scope(scope, 'LayerNorm', [inputs], reuse=reuse):
      shape = inputs.shape[begin_params_axis:]
      beta = tf.get_variable('beta', shape, initializer=tf.zeros_initializer()) if center else None
      gamma = tf.get_variable('gamma', shape, initializer=tf.ones_initializer()) if scale else None
      mean, variance = moments(inputs, list(range(begin_norm_axis % rank, rank)), None, True)
      outputs = tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, 1e-12)
    return activation_fn(outputs) if activation_fn is not None else outputs

  def xavier_initializer(uniform=True, seed=None, dtype=tf.float32):
    """Glorot: contrib's variance_scaling(factor 1, FAN_AVG), uniform in +-sqrt(6 / (in + out))."""
    if not uniform:
      raise NotImplementedError('the original uses the uniform Xavier initializer only')
    return tf.glorot_uniform_initializer(seed=seed, dtype=dtype)

  def accuracy(predictions, labels, weights=None, name=None):
    """contrib.metrics.accuracy: the fraction of predictions equal to labels."""
    if weights is not None:
      raise NotImplementedError('the original calls accuracy without weights')
    predictions = tf.cast(predictions, labels.dtype)
    return tf.reduce_mean(tf.cast(tf.equal(predictions, labels), tf.float32), name=name)

  layers = types.ModuleType('tensorflow.contrib.layers')
  layers.batch_norm, layers.layer_norm = batch_norm, layer_norm
  layers.xavier_initializer = layers.xavier_initializer_conv2d = xavier_initializer
  layers.python = types.ModuleType('tensorflow.contrib.layers.python')
  layers.python.layers = layers  # utils.py: from tensorflow.contrib.layers.python import layers
  contrib = types.ModuleType('tensorflow.contrib')
  contrib.layers = layers
  contrib.metrics = types.ModuleType('tensorflow.contrib.metrics')
  contrib.metrics.accuracy = accuracy
  return contrib


@contextlib.contextmanager
def _as_tf1(directory: pathlib.Path, tf):
  """While the original's modules import: `tensorflow` is tf.compat.v1 plus contrib, and the
  checkout comes first on sys.path (the project has modules named maml and utils too)."""
  contrib = _contrib(tf.compat.v1)
  alias = types.ModuleType('tensorflow')
  alias.__getattr__ = lambda name: getattr(tf.compat.v1, name)  # PEP 562 module __getattr__
  alias.contrib = contrib
  replaced = {'tensorflow': alias, 'tensorflow.contrib': contrib,
              'tensorflow.contrib.layers': contrib.layers,
              'tensorflow.contrib.layers.python': contrib.layers.python,
              'tensorflow.contrib.layers.python.layers': contrib.layers,
              'tensorflow.contrib.metrics': contrib.metrics}
  saved = {name: sys.modules.pop(name) for name in (*replaced, *MODULES) if name in sys.modules}
  sys.modules.update(replaced)
  sys.path.insert(0, str(directory))
  try:
    yield
  finally:
    sys.path.remove(str(directory))
    for name in (*replaced, *MODULES):
      sys.modules.pop(name, None)
    sys.modules.update(saved)


def import_original(directory: pathlib.Path):
  """The checkout's maml module (with its utils and special_grads), under tf.compat.v1."""
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')  # as the project and the runner
  import tensorflow as tf
  tf.compat.v1.disable_v2_behavior()  # graph mode, v1 control flow (the original's tf.map_fn)
  with _as_tf1(directory, tf):
    maml = importlib.import_module('maml')
  if pathlib.Path(maml.__file__).resolve().parent != directory.resolve():
    raise ImportError(f'imported {maml.__file__}, not the maml.py of {directory}')
  return maml


def episodes(spec: dict, count: int = POOL, seed: int = 0) -> list[dict[str, np.ndarray]]:
  """`count` feeds of the original's placeholders (float32).

  Images: inputa [T, N*K, H*W*C] U[0, 1), labela [T, N*K, N] one-hot with every class K times,
  shuffled per task; inputb/labelb the same with Q = query_per_class. Sinusoid: inputa [T, K, 1]
  U[-5, 5], labela [T, K, 1] N(0, 1); inputb/labelb [T, Q, 1].
  """
  rng = np.random.default_rng(seed)
  t, n = spec['meta_batch'], spec['num_classes']
  k, q = spec['support_per_class'], spec['query_per_class']
  dim = math.prod(spec['input_shape'])
  feeds = []
  for _ in range(count):
    feed = {}
    for part, per_class in (('a', k), ('b', q)):
      if spec['loss'] == 'mse':
        feed['input' + part] = rng.uniform(-5, 5, (t, per_class, 1)).astype(np.float32)
        feed['label' + part] = rng.standard_normal((t, per_class, 1)).astype(np.float32)
      else:
        classes = np.stack([rng.permutation(np.repeat(np.arange(n), per_class)) for _ in range(t)])
        feed['input' + part] = rng.random((t, n * per_class, dim), dtype=np.float32)
        feed['label' + part] = np.eye(n, dtype=np.float32)[classes]
    feeds.append(feed)
  return feeds


def build(spec: dict, metatrain_iterations: int, seed: int = 0):
  """The original's MAML on the spec in the current default graph: (model, meta-loss tensor)."""
  maml = import_original(checkout())
  import tensorflow as tf
  parse_flags(original_argv(spec, metatrain_iterations))
  tf.compat.v1.set_random_seed(seed)
  dim_output = 1 if spec['loss'] == 'mse' else spec['num_classes']
  model = maml.MAML(math.prod(spec['input_shape']), dim_output,
                    test_num_updates=spec['inner_steps'])
  model.construct_model(input_tensors=None, prefix='metatrain_')
  return model, model.total_losses2[spec['inner_steps'] - 1]


def feed_dict(model, episode: dict[str, np.ndarray]) -> dict:
  return {getattr(model, name): value for name, value in episode.items()}


def versions(directory: pathlib.Path) -> dict:
  import tensorflow as tf
  commit = 'not a git checkout'
  if (directory / '.git').exists():  # not the commit of a repository the copy merely sits in
    rev = subprocess.run(['git', '-C', str(directory), 'rev-parse', 'HEAD'], capture_output=True,
                         text=True)
    commit = rev.stdout.strip() if rev.returncode == 0 else f'git failed: {rev.stderr.strip()}'
  return {'tensorflow': tf.__version__, 'numpy': np.__version__,
          'python': sys.version.split()[0], 'cbfinn_maml': commit}


def run(spec: dict, iterations: int, warmup: int) -> tuple[dict, dict]:
  """harness.peer_main's run: the original's metatrain_op, timed by harness.measure."""
  directory = checkout()
  datasource(spec)  # Skip before TensorFlow loads, so a skip prints only its line
  import tensorflow as tf
  graph = tf.Graph()
  with graph.as_default():
    model, meta_loss = build(spec, metatrain_iterations=1 + warmup + iterations)
    feeds = [feed_dict(model, e) for e in episodes(spec)]
    sess = tf.compat.v1.Session(graph=graph)  # TF's default threads, as main.py's session
    sess.run(tf.compat.v1.global_variables_initializer())

  def step(i: int) -> float:
    # One meta-update; sess.run returns when it is done, so the loss is already on the host.
    _, loss = sess.run([model.metatrain_op, meta_loss], feeds[i % POOL])
    return loss

  result = harness.measure(step, float, iterations, warmup)
  sess.close()
  return result, versions(directory)


def original_step(spec: dict, seed: int = 0) -> dict:
  """One meta-update of the original on episode 0 of the spec, and what it reports (for tests).

  Returns numpy values: 'episode' (the feed), 'before' and 'after' ({name: array} of every
  trainable variable: the `weights` keys conv1, b1, ..., w5, b5 (or w1, b1, ...), and the batch
  norm offsets by variable name, e.g. model/0/beta), 'grads' (the original's meta-gradient
  model.gvs before any clip, by the same names), 'loss1' (pre-update support loss, total_loss1),
  'losses2' (query loss after each inner step, total_losses2).
  """
  import tensorflow as tf
  graph = tf.Graph()
  with graph.as_default():
    model, _ = build(spec, metatrain_iterations=1, seed=seed)
    names = {v.name: k for k, v in model.weights.items()}
    names.update({v.name: v.op.name for v in tf.compat.v1.trainable_variables()
                  if v.name not in names})
    variables = {names[v.name]: v for v in tf.compat.v1.trainable_variables()}
    episode = episodes(spec, count=1, seed=seed)[0]
    feed = feed_dict(model, episode)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      before, grads, loss1, losses2 = sess.run(  # one run: no update between them
          [variables, {names[v.name]: g for g, v in model.gvs}, model.total_loss1,
           model.total_losses2], feed)
      sess.run(model.metatrain_op, feed)
      after = sess.run(variables)
  return {'episode': episode, 'before': before, 'after': after, 'grads': grads,
          'loss1': float(loss1), 'losses2': [float(x) for x in losses2]}


def main() -> None:
  # As main.py: keep TensorFlow's TFLite converter from importing JAX (about 120 MB), so both
  # TensorFlow processes of the comparison carry the same runtime.
  sys.modules.setdefault('jax', None)
  try:
    checkout()
    harness.peer_main(IMPL, run)
  except Skip as skip:
    print(f'skipped: {skip}', file=sys.stderr, flush=True)
    sys.exit(SKIP_STATUS)


if __name__ == '__main__':
  main()
