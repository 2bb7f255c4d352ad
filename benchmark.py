"""Speed and memory of one experiment row's training step: `run_benchmark(cfg)`.

This is a measurement, not a test: nothing is asserted and no figure is compared with a target. It
builds the row exactly as training does (`trainer.build`), compiles the step its method trains most
of its iterations with (the meta-objective, or the baselines' 'pretrain' classifier step) and
reports:

  * compile time: wall time of the first call (tracing, plus XLA compilation when cfg.jit_compile),
    up to the loss being on the host;
  * iterations/s: after `warmup` untimed iterations, `iterations` timed ones in chunks of CHUNK (or
    one call of cfg.steps_per_call iterations, if more; `iterations` is rounded up to whole calls),
    each chunk ended by a host sync; the headline is the median of the per-chunk rates (mean, min and max
    are reported too). With data='sampler' every iteration draws a fresh episode from the row's
    own training sampler, as the training loop does, so the rate includes data generation (its share
    is reported); with data='synthetic' (the default: no dataset needed) the step cycles through a
    few random episodes shaped like the row's, so the rate is the step alone;
  * memory: the peak resident set size of the whole process (ru_maxrss) at the end, next to the RSS
    just before the model was built, and the peak memory of each GPU if there is one;
  * context: versions, devices, threads, commit, time, so figures from two machines can be compared.

The result is printed and written to <out_dir>/<row>[.first_order][.nojit].json.
Run it with `python main.py --experiment=<row> --benchmark [--benchmark_iterations=N]`.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import resource
import statistics
import sys
import time

from absl import logging
import keras
import tensorflow as tf

import data_generator
import experiments
from experiments import Config
import trainer
import utils

CHUNK = 10  # timed iterations between host syncs
MB = 2 ** 20


def current_rss_mb() -> float | None:
  """The process's resident set size now (VmRSS of /proc/self/status), or None off Linux."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024 / MB
  except OSError:
    pass
  return None


def peak_rss_mb() -> float:
  """The process's peak resident set size so far (ru_maxrss: KiB on Linux, bytes on macOS).

  The kernel updates ru_maxrss lazily, so it can trail the current VmRSS by a few hundred KB: the
  larger of the two is the peak (a CI run once read 872.4 MB peak against 872.6 MB before building).
  """
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  peak = peak / MB if sys.platform == 'darwin' else peak * 1024 / MB
  return max(peak, current_rss_mb() or 0.0)


def output_path(cfg: Config, out_dir: str) -> str:
  """<out_dir>/<row>[.first_order][.nojit][.<field><value>...].json, the fields being the speed
  settings that differ from the row's own (task_parallelism, steps_per_call, task_chunk,
  distribute, intra_op_threads)."""
  name = cfg.name + ('.first_order' if cfg.stop_grad else '') + ('' if cfg.jit_compile else '.nojit')
  row = experiments.EXPERIMENTS.get(cfg.name)
  for field in ('task_parallelism', 'steps_per_call', 'task_chunk', 'distribute', 'intra_op_threads'):
    if row is not None and getattr(cfg, field) != getattr(row, field):
      name += f'.{field}{getattr(cfg, field)}'
  return os.path.join(out_dir, name + '.json')


def _context(cfg: Config, objective: str) -> dict:
  """What the figures depend on besides the code: software, hardware and the row's sizes."""
  return {
      'experiment': cfg.name, 'objective': objective, 'jit_compile': cfg.jit_compile,
      'first_order': cfg.stop_grad, 'meta_batch_size': cfg.meta_batch_size,
      'num_updates': cfg.num_updates,
      'support_size': cfg.update_batch_size * cfg.num_classes,
      'query_size': cfg.train_query_size * cfg.num_classes,
      'tensorflow': tf.__version__, 'keras': keras.__version__,
      'devices': [d.name for d in tf.config.list_physical_devices()],
      'cpu_count': os.cpu_count(), 'cpu_model': _cpu_model(),
      # TensorFlow reads it at import: main.py sets '1' unless the caller set it.
      'onednn_opts': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (TF default)'),
      # 0 means TensorFlow picks (by default: all cores).
      'intra_op_threads': tf.config.threading.get_intra_op_parallelism_threads(),
      'inter_op_threads': tf.config.threading.get_inter_op_parallelism_threads(),
      'commit': utils.git_commit(),
      'timestamp': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }


def _cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  return platform.processor() or 'unknown'


def _gpu_peak_mb() -> dict[str, float]:
  """Peak memory of each visible GPU in MB (empty on CPU-only machines)."""
  peaks = {}
  for i, _ in enumerate(tf.config.list_logical_devices('GPU')):
    peaks[f'GPU:{i}'] = tf.config.experimental.get_memory_info(f'GPU:{i}')['peak'] / MB
  return peaks


def _mb(value: float | None) -> str:
  return 'unknown' if value is None else f'{value:.0f} MB'


def _summary(r: dict) -> str:
  """The human-readable block of a result."""
  lines = [
      f'benchmark {r["experiment"]}: objective {r["objective"]}, jit_compile {r["jit_compile"]}, '
      f'first_order {r["first_order"]}, meta-batch {r["meta_batch_size"]}, '
      f'{r["num_updates"]} inner step(s), {r["steps_per_call"]} iteration(s) per call',
      f'  compile (first call)  {r["compile_s"]:.2f} s',
      f'  iterations/s          {r["its_median"]:.3g} median of {r["chunks"]} chunks of {r["chunk_size"]} '
      f'(mean {r["its_mean"]:.3g}, min {r["its_min"]:.3g}, max {r["its_max"]:.3g}); '
      f'{r["iterations"]} timed after {r["warmup"]} warm-up',
      f'  data: {r["data"]} ({100 * r["sampling_share"]:.0f}% of the timed wall time spent drawing '
      'episodes)',
      f'  full training         {r["total_iterations"]} iterations ~ {r["est_training_time"]} '
      '(at the median rate)',
      f'  peak RSS              {r["peak_rss_mb"]:.0f} MB (whole process; RSS before building the '
      f'model {_mb(r["rss_before_build_mb"])})',
  ]
  for device, peak in r['gpu_peak_mb'].items():
    lines.append(f'  peak {device} memory     {peak:.0f} MB')
  lines.append(f'  tensorflow {r["tensorflow"]}, keras {r["keras"]}, {r["cpu_count"]} cpus '
               f'({r.get("cpu_model", "?")}, TF_ENABLE_ONEDNN_OPTS {r.get("onednn_opts", "?")}), intra/inter '
               f'op threads {r["intra_op_threads"]}/{r["inter_op_threads"]} (0 = TF default), '
               f'devices {", ".join(r["devices"])}')
  lines.append(f'  commit {r["commit"]} at {r["timestamp"]}')
  return '\n'.join(lines)


def synthetic_episodes(setup: trainer.Setup, count: int = 4) -> list[tuple[tf.Tensor, ...]]:
  """`count` random episodes shaped like the row's: inputs U[0, 1) [T, M, ...] and targets.

  Classification: valid N-way episodes, every class K times in the support set and Q times in the
  query set, in a random order per task (labels one-hot [T, M, N]); a class without a support example
  would give ProtoNet a NaN class mean, and arithmetic on NaNs is no speed to report. Regression:
  standard-normal targets [T, M, output dim]. Shapes come from the model and the row, so no dataset
  is needed.
  """
  cfg, model = setup.cfg, setup.model
  n_s = cfg.update_batch_size * cfg.num_classes
  n_q = cfg.train_query_size * cfg.num_classes
  in_shape, out_dim = tuple(model.input_shape[1:]), model.output_shape[-1]
  rng = tf.random.Generator.from_seed(cfg.seed)

  def targets(m):
    if cfg.metric != 'accuracy':
      return rng.normal([cfg.meta_batch_size, m, out_dim])
    balanced = tf.tile(tf.range(cfg.num_classes), [m // cfg.num_classes])  # m = N * (K or Q)
    order = tf.argsort(rng.uniform([cfg.meta_batch_size, m]), axis=-1)
    return tf.one_hot(tf.gather(balanced, order), cfg.num_classes)

  return [(rng.uniform([cfg.meta_batch_size, n_s, *in_shape]), targets(n_s),
           rng.uniform([cfg.meta_batch_size, n_q, *in_shape]), targets(n_q)) for _ in range(count)]


def synthetic_batches(setup: trainer.Setup, count: int = 4) -> list[tuple[tf.Tensor, tf.Tensor]]:
  """`count` random batches for a method that trains on single images (the classifier baselines):
  images U[0, 1) [T, ...] and labels [T] among the model's outputs (T = meta_batch_size)."""
  cfg, model = setup.cfg, setup.model
  rng = tf.random.Generator.from_seed(cfg.seed)
  return [(rng.uniform([cfg.meta_batch_size, *model.input_shape[1:]]),
           rng.uniform([cfg.meta_batch_size], 0, model.output_shape[-1], tf.int32))
          for _ in range(count)]


def run_benchmark(cfg: Config, iterations: int = 200, out_dir: str | None = None,
                  warmup: int = 20, data: str = 'synthetic') -> dict:
  """Times the training step of a row on episodes from its own sampler.

  Args:
    cfg: the experiment row (with any overrides, e.g. stop_grad or jit_compile).
    iterations: timed iterations (at least 1), after the first call and the warm-up.
    out_dir: if given, the result is also written to `output_path(cfg, out_dir)`.
    warmup: untimed iterations after the first call.
    data: 'synthetic' (random episodes of the row's shapes) or 'sampler' (the row's own data).

  Returns:
    The result dict (the JSON's content): timings, memory and context.
  """
  if iterations < 1 or warmup < 0:
    raise ValueError(f'iterations={iterations} must be at least 1 and warmup={warmup} not negative')
  rss_before = current_rss_mb()
  setup = trainer.build(cfg)
  # The objective training spends most of its iterations on (its last phase): the meta-objective,
  # or the baselines' 'pretrain'.
  objective = setup.method.phases()[-1][0]
  per_call = cfg.steps_per_call  # iterations per call of the step (a graph loop when > 1)
  step = setup.method.make_train_step(setup.learner, setup.optimizer, objective, per_call)
  sizes = (cfg.meta_batch_size, cfg.update_batch_size * cfg.num_classes,
           cfg.train_query_size * cfg.num_classes)
  if data == 'sampler':
    sampler = setup.method.train_sampler()
    draw_one = lambda i: sampler.sample(*sizes)[:4]
  elif data == 'synthetic':
    pool = synthetic_episodes(setup) if setup.method.episodic else synthetic_batches(setup)
    draw_one = lambda i: pool[i % len(pool)]
  else:
    raise ValueError(f'data={data!r} is not synthetic or sampler')
  if per_call == 1:
    draw = draw_one
  else:  # the episodes of one call, stacked: [S, T, ...] per field, as the training loop does
    draw = lambda i: [tf.stack(f) for f in zip(*[draw_one(i * per_call + j) for j in range(per_call)])]

  t0 = time.perf_counter()
  out = step(*draw(0))
  float(out['loss'][-1] if per_call > 1 else out['loss'])
  compile_s = time.perf_counter() - t0

  for i in range(-(-warmup // per_call)):
    out = step(*draw(i))
  float(tf.reduce_sum(out['loss']))

  calls = -(-iterations // per_call)
  iterations = calls * per_call
  calls_per_chunk = max(1, CHUNK // per_call)
  rates, sampling_s, timed_s = [], 0.0, 0.0
  for start in range(0, calls, calls_per_chunk):
    n = min(calls_per_chunk, calls - start)
    t0 = time.perf_counter()
    for i in range(n):
      t_sample = time.perf_counter()
      episode = draw(start + i)
      sampling_s += time.perf_counter() - t_sample
      out = step(*episode)
    final_loss = float(tf.reshape(out['loss'], [-1])[-1])
    dt = time.perf_counter() - t0
    timed_s += dt
    rates.append(n * per_call / dt)

  if not math.isfinite(final_loss):
    raise trainer.RunError(f'{cfg.name}: the benchmarked loss is {final_loss}; timings of non-finite '
                     'arithmetic are not this row\'s speed (check the row\'s settings and episodes)')
  median = statistics.median(rates)  # the headline; its_mean below is all timed iterations / time
  result = _context(cfg, objective)
  result.update({
      'compile_s': compile_s, 'warmup': warmup, 'iterations': iterations, 'chunks': len(rates),
      'chunk_size': calls_per_chunk * per_call, 'steps_per_call': per_call, 'its_median': median,
      'its_mean': iterations / timed_s,
      'its_min': min(rates), 'its_max': max(rates), 'timed_s': timed_s,
      'sampling_share': sampling_s / timed_s, 'data': data,
      'final_loss': final_loss,
      'total_iterations': cfg.total_iterations,
      'est_training_s': cfg.total_iterations / median,
      'est_training_time': utils.format_duration(cfg.total_iterations / median),
      'peak_rss_mb': max(peak_rss_mb(), rss_before or 0.0), 'rss_before_build_mb': rss_before,
      'memory_note': 'peak_rss_mb is the whole process\'s peak resident set size (ru_maxrss), '
                     'TensorFlow runtime included; rss_before_build_mb is the RSS just before the '
                     'model was built',
      'gpu_peak_mb': _gpu_peak_mb(),
  })
  logging.info('%s', _summary(result))
  if out_dir is not None:
    os.makedirs(out_dir, exist_ok=True)
    path = output_path(cfg, out_dir)
    utils.write_json(path, result)
    logging.info('wrote %s', path)
  return result


# --- this project vs other implementations ----------------------------------------------------------

PEERS_SOURCE = ('performance issue (#4) of this project: median meta-iterations/s of each '
                'implementation on synthetic episodes, measured on the project\'s 2-core CPU '
                'machine type (AMD EPYC, AVX-512)')
PEER_NAMES = ('learn2learn (PyTorch 2.13)', 'jitted JAX', 'original TF1 code')
# row -> its label and the peers' it/s, in PEER_NAMES order.
PEERS: dict[str, tuple[str, tuple[float, float, float]]] = {
    'sinusoid_maml': ('sinusoid, meta-batch 25, 1 step', (37.8, 2895, 98.9)),
    'omniglot_5way_1shot': ('Omniglot 5w1s, mb 32, 1 step', (1.34, 1.42, 2.66)),
    'omniglot_20way_1shot': ('Omniglot 20w1s, mb 16, 5 steps', (0.449, 0.266, 0.737)),
    'miniimagenet_5way_1shot': ('MiniImagenet 5w1s, mb 4, 5 steps', (0.516, 0.288, 0.841)),
    'miniimagenet_5way_1shot_first_order': ('MiniImagenet 5w1s first order', (0.639, 0.479, 1.24)),
}
PEER_PEAK_MB = {  # learn2learn's peak memory on the same rows (same source)
    'sinusoid_maml': 400, 'omniglot_5way_1shot': 500, 'omniglot_20way_1shot': 700,
    'miniimagenet_5way_1shot': 1200, 'miniimagenet_5way_1shot_first_order': 1000}
# The memory-lean setting of the rows whose tasks are heavy: the meta-gradient a few tasks at a time
# (--task_chunk; the same update). scripts/benchmark.sh times these too.
LEAN_TASK_CHUNK = {'omniglot_20way_1shot': 4, 'miniimagenet_5way_1shot': 1,
                   'miniimagenet_5way_1shot_first_order': 1}
TARGET_SPEEDUP = 1.25  # over the fastest peer
FIRST_ORDER_TARGET = 1.33  # first-order over second-order speed of the same row (the paper's claim)
COMPILE_TARGET_S = 15.0
MEMORY_LIMIT_MB = 8 * 1024


def report_table(logdir: str) -> str:
  """Markdown: this project's benchmark results under <logdir>/benchmarks vs the peers' figures.

  Rows not benchmarked yet are listed with the command that makes them. PASS/FAIL marks the
  targets of the performance issue (speed, compile time, memory).
  """
  out_dir = os.path.join(logdir, 'benchmarks')
  header = ('row', 'this project it/s', *PEER_NAMES, 'vs best peer', 'compile s', 'peak RSS MB',
            'learn2learn MB', 'targets')
  lines = [f'# Meta-iterations/s vs other implementations (peers: {PEERS_SOURCE})', '',
           '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  results, missing = {}, []
  for name, (label, peers) in PEERS.items():
    path = output_path(experiments.get(name), out_dir)  # the row as it is, no overrides
    if not os.path.exists(path):
      missing.append(f'python main.py --experiment={name} --benchmark --logdir={logdir}')
      continue
    r = results[name] = utils.read_json(path)
    speedup = r['its_median'] / max(peers)
    ok = (speedup >= TARGET_SPEEDUP and r['compile_s'] < COMPILE_TARGET_S and
          r['peak_rss_mb'] <= MEMORY_LIMIT_MB)
    lines.append('| ' + ' | '.join([
        label, f'{r["its_median"]:.3g}', *(f'{p:g}' for p in peers), f'{speedup:.2f}x',
        f'{r["compile_s"]:.1f}', f'{r["peak_rss_mb"]:.0f}', str(PEER_PEAK_MB[name]),
        'PASS' if ok else 'FAIL']) + ' |')
  lines += ['', f'targets: >= {TARGET_SPEEDUP}x the fastest peer, compile (first call) < '
            f'{COMPILE_TARGET_S:g} s, peak RSS <= {MEMORY_LIMIT_MB // 1024} GB (the whole process, '
            'TensorFlow runtime included)']
  so, fo = 'miniimagenet_5way_1shot', 'miniimagenet_5way_1shot_first_order'
  if so in results and fo in results:
    ratio = results[fo]['its_median'] / results[so]['its_median']
    lines.append(f'- first order / second order (MiniImagenet 5w1s): {ratio:.2f}x '
                 f'({"PASS" if ratio >= FIRST_ORDER_TARGET else "FAIL"}: >= {FIRST_ORDER_TARGET}x)')
  lean = []
  for name, chunk in LEAN_TASK_CHUNK.items():
    path = output_path(experiments.get(name).replace(task_chunk=chunk), out_dir)
    if name in results and os.path.exists(path):
      r, full = utils.read_json(path), results[name]
      lean.append(f'| {PEERS[name][0]} | {chunk} | {r["its_median"]:.3g} ({full["its_median"]:.3g}) | '
                  f'{r["peak_rss_mb"]:.0f} ({full["peak_rss_mb"]:.0f}) | {PEER_PEAK_MB[name]} |')
  if lean:
    lines += ['', 'Memory-lean setting (--task_chunk=C: the meta-gradient C tasks at a time, the same '
              'update; in brackets the whole meta-batch at once):', '',
              '| row | task_chunk | it/s | peak RSS MB | learn2learn MB |', '|---|---|---|---|---|',
              *lean]
  for name, r in results.items():
    lines.append(f'- {name}: {r["cpu_count"]} cpus, {", ".join(r["devices"])}, tensorflow '
                 f'{r["tensorflow"]}, commit {r["commit"]}, {r["timestamp"]}')
  if missing:
    lines += ['', 'Not benchmarked yet:'] + [f'- `{c}`' for c in missing]
  text = '\n'.join(lines) + '\n'
  print(text)
  return text
