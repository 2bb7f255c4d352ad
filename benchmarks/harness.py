"""The one timing procedure of every implementation in the comparison, and the machine it ran on.

Imports nothing but the standard library, so a PyTorch or JAX process measured with it carries no
TensorFlow. `measure()` times a step the way the project's `--benchmark` does: the first call
(compile / trace), untimed warm-up, then timed chunks of iterations each ended by a host sync; the
headline is the median per-chunk rate. It also measures contention: the CPU time other processes
used during the timed window, as a fraction of the machine's cores, so a figure from a busy machine
shows itself.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

CHUNK = 10  # timed iterations between host syncs
MB = 2 ** 20


def _proc_stat_busy() -> float | None:
  """Seconds of CPU time all processes of the machine have used (the busy fields of /proc/stat)."""
  try:
    with open('/proc/stat') as f:
      fields = [int(x) for x in f.readline().split()[1:]]
  except OSError:
    return None
  # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
  busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
  return busy / os.sysconf('SC_CLK_TCK')


def _own_cpu() -> float:
  """CPU seconds this process (all its threads) and its reaped children have used."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Contention:
  """The other processes' CPU use between start() and stop(), in cores (0 = a quiet machine)."""

  def start(self) -> None:
    self.t0, self.busy0, self.own0 = time.perf_counter(), _proc_stat_busy(), _own_cpu()

  def stop(self) -> dict:
    wall = time.perf_counter() - self.t0
    busy, own = _proc_stat_busy(), _own_cpu()
    if busy is None or self.busy0 is None or wall <= 0:
      return {'other_cores': None, 'own_cores': None}
    own_cores = (own - self.own0) / wall
    # /proc/stat ticks at 100 Hz, so clamp the small negative rounding of a quiet machine to 0.
    return {'other_cores': max(0.0, (busy - self.busy0) / wall - own_cores),
            'own_cores': own_cores}


def _status_mb(field: str) -> float | None:
  """A memory field of /proc/self/status (VmRSS, VmHWM) in MB, or None off Linux."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1]) * 1024 / MB
  except OSError:
    pass
  return None


def current_rss_mb() -> float | None:
  """The process's resident set size now (VmRSS), or None off Linux."""
  return _status_mb('VmRSS')


def peak_rss_mb() -> float:
  """The process's peak resident set size in MB: VmHWM on Linux, else ru_maxrss (bytes on macOS).

  Not ru_maxrss on Linux: the kernel carries it across fork and exec, so a peer started by a
  process holding TensorFlow (640 MB) would report at least that much. VmHWM belongs to the
  process's own address space, and is at least its current VmRSS.
  """
  hwm = _status_mb('VmHWM')
  if hwm is not None:
    return max(hwm, current_rss_mb() or 0.0)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / MB if sys.platform == 'darwin' else peak * 1024 / MB


def cpu_info() -> dict:
  """The CPU's model name, core count and widest vector extension (AVX-512, AVX2 or other)."""
  model, flags = platform.processor() or 'unknown', set()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          model = line.split(':', 1)[1].strip()
        elif line.startswith('flags'):
          flags = set(line.split(':', 1)[1].split())
  vector = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'other'
  return {'cpu_model': model, 'cpu_count': os.cpu_count(), 'vector_extension': vector,
          'avx512_vnni': 'avx512_vnni' in flags}


def measure(step: Callable[[int], Any], sync: Callable[[Any], float], iterations: int,
            warmup: int) -> dict:
  """Times `step(i)` (one meta-iteration on episode i; returns the loss, maybe still on a device).

  sync(out) must block until `out` is computed and return it as a float (the last chunk's loss is
  reported, and must be finite). Returns compile_s, its_median/mean/min/max, iterations, warmup,
  chunks, final_loss and the contention of the timed window.
  """
  if iterations < 1 or warmup < 0:
    raise ValueError(f'iterations={iterations} must be at least 1 and warmup={warmup} not negative')
  t0 = time.perf_counter()
  sync(step(0))
  compile_s = time.perf_counter() - t0
  out = None
  for i in range(warmup):
    out = step(1 + i)
  if out is not None:
    sync(out)
  rates, timed, loss = [], 0.0, float('nan')
  contention = Contention()
  contention.start()
  for start in range(0, iterations, CHUNK):
    n = min(CHUNK, iterations - start)
    t = time.perf_counter()
    for i in range(n):
      out = step(1 + warmup + start + i)
    loss = sync(out)
    dt = time.perf_counter() - t
    timed += dt
    rates.append(n / dt)
  result = {'compile_s': compile_s, 'its_median': statistics.median(rates),
            'its_mean': iterations / timed, 'its_min': min(rates), 'its_max': max(rates),
            'iterations': iterations, 'warmup': warmup, 'chunks': len(rates), 'final_loss': loss}
  result.update(contention.stop())
  if loss != loss or loss in (float('inf'), float('-inf')):
    raise RuntimeError(f'the benchmarked loss is {loss}: timings of non-finite arithmetic are no '
                       'speed to report')
  return result


def record(impl: str, spec: dict, result: dict, versions: dict) -> dict:
  """One JSON line of the comparison: the implementation, the work, the timings and the machine."""
  line = {'impl': impl, 'work': spec['work'], **result, 'peak_rss_mb': peak_rss_mb(),
          'versions': versions, **cpu_info(),
          'timestamp': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
  return line


def peer_main(impl: str, run: Callable[[dict, int, int], tuple[dict, dict]]) -> None:
  """The command line of a peer: `python -m benchmarks.peers.<impl> SPEC_JSON ITERATIONS WARMUP`.

  run(spec, iterations, warmup) -> (measure() result, versions). Prints one JSON line on stdout;
  anything else the peer prints goes to stderr.
  """
  if len(sys.argv) != 4:
    sys.exit(f'usage: python -m benchmarks.peers.{impl} SPEC_JSON ITERATIONS WARMUP')
  with open(sys.argv[1]) as f:
    spec = json.load(f)
  result, versions = run(spec, int(sys.argv[2]), int(sys.argv[3]))
  print(json.dumps(record(impl, spec, result, versions)), flush=True)
