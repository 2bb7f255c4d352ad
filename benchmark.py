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
  * memory: the peak resident set size of the whole process (VmHWM) at the end, next to the RSS
    just before the model was built, and the peak memory of each GPU if there is one;
  * contention: the other processes' CPU use during the timed window, in cores (benchmarks.harness),
    so a figure from a busy machine shows itself;
  * context: versions, devices, threads, CPU and its vector extension, commit, time, so figures from
    two machines can be compared.

The result is printed and written to <out_dir>/<row>[.first_order][.nojit].json.
Run it with `python main.py --experiment=<row> --benchmark [--benchmark_iterations=N]`; the
comparison with other implementations on the same work is benchmarks/compare.py
(`bash scripts/benchmark.sh`).
"""

from __future__ import annotations

import datetime
import math
import os
import statistics
import sys
import time

from absl import logging
import keras
import tensorflow as tf

from benchmarks import harness
import data_generator
import experiments
from experiments import Config
import trainer
import utils

CHUNK = 10  # timed iterations between host syncs
MB = 2 ** 20


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
      **harness.cpu_info(),
      # TensorFlow reads it at import: main.py sets '1' unless the caller set it.
      'onednn_opts': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset (TF default)'),
      # 0 means TensorFlow picks (by default: all cores).
      'intra_op_threads': tf.config.threading.get_intra_op_parallelism_threads(),
      'inter_op_threads': tf.config.threading.get_inter_op_parallelism_threads(),
      'commit': utils.git_commit(),
      'timestamp': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }


def _gpu_peak_mb() -> dict[str, float]:
  """Peak memory of each visible GPU in MB (empty on CPU-only machines)."""
  peaks = {}
  for i, _ in enumerate(tf.config.list_logical_devices('GPU')):
    peaks[f'GPU:{i}'] = tf.config.experimental.get_memory_info(f'GPU:{i}')['peak'] / MB
  return peaks


def _cores(value: float | None) -> str:
  return 'unknown' if value is None else f'{value:.2f} cores'


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
      f'  other processes       {_cores(r["other_cores"])} busy during the timed window',
      f'  full training         {r["total_iterations"]} iterations ~ {r["est_training_time"]} '
      '(at the median rate)',
      f'  peak RSS              {r["peak_rss_mb"]:.0f} MB (whole process; RSS before building the '
      f'model {_mb(r["rss_before_build_mb"])})',
  ]
  for device, peak in r['gpu_peak_mb'].items():
    lines.append(f'  peak {device} memory     {peak:.0f} MB')
  lines.append(f'  tensorflow {r["tensorflow"]}, keras {r["keras"]}, {r["cpu_count"]} cpus '
               f'({r.get("cpu_model", "?")}, {r.get("vector_extension", "?")}, TF_ENABLE_ONEDNN_OPTS {r.get("onednn_opts", "?")}), intra/inter '
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
  rss_before = harness.current_rss_mb()
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
    draw = lambda i: data_generator.stack([draw_one(i * per_call + j) for j in range(per_call)])

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
  contention = harness.Contention()
  contention.start()
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

  busy = contention.stop()
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
      'sampling_share': sampling_s / timed_s, 'data': data, **busy,
      'query_per_class': cfg.train_query_size,
      # the tasks per chunk of the meta-gradient the step used (0: the whole meta-batch at once)
      'task_chunk_used': getattr(setup.learner, 'task_chunk', None),
      'final_loss': final_loss,
      'total_iterations': cfg.total_iterations,
      'est_training_s': cfg.total_iterations / median,
      'est_training_time': utils.format_duration(cfg.total_iterations / median),
      'peak_rss_mb': max(harness.peak_rss_mb(), rss_before or 0.0), 'rss_before_build_mb': rss_before,
      'memory_note': 'peak_rss_mb is the whole process\'s peak resident set size (VmHWM), '
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
