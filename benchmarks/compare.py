"""One command for the whole comparison: this project and every installed peer, one after another.

`run(...)` (behind `python main.py --compare_speed`, `bash scripts/benchmark.sh`) measures the
machine's float32 matmul peak, then for each work (work.WORKS) runs each implementation in its own
process on the same spec: this project through `main.py --benchmark` with the work's flags, the
peers through `python -m benchmarks.peers.<impl> SPEC ITERATIONS WARMUP`. Every process times with
the same procedure (harness.measure: compile, warm-up, median of timed chunks) and reports the other
processes' CPU use during its timed window. One JSON line per (implementation, work), or a line with
`skipped` and the reason (a peer not installed, the original code not given, a work a peer does not
do), goes to the output file, which report/speed.py turns into the README's speed section.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import logging

from benchmarks import harness
from benchmarks import work as work_lib
import utils

THIS = 'this_repo'
# Implementation -> the Python packages it needs (a peer whose packages are missing is skipped).
PEERS = {'torch_func': ('torch',), 'higher': ('torch', 'higher'), 'jax': ('jax',),
         'tf1_original': ('tensorflow',)}
IMPLS = (THIS, *PEERS)
MODULES = {'torch_func': 'benchmarks.peers.torch_func', 'higher': 'benchmarks.peers.higher_maml',
           'jax': 'benchmarks.peers.jax_maml', 'tf1_original': 'benchmarks.peers.tf1_original'}
SKIP_EXIT = 3  # a peer's exit status for "cannot run here", with one 'skipped: ...' line on stderr
INSTALL_HINT = 'pip install -r benchmarks/requirements-peers.txt'


@dataclasses.dataclass(frozen=True)
class Budget:
  """Timed iterations and untimed warm-up of a work (the same for every implementation)."""
  iterations: int
  warmup: int


# About 10-30 s of timed iterations per implementation on 2 cores (the whole run: about 25 minutes).
BUDGETS = {'sinusoid': Budget(2000, 200), 'omniglot_5way_1shot': Budget(20, 3),
           'omniglot_20way_1shot': Budget(8, 2), 'miniimagenet_5way_1shot': Budget(8, 2),
           'miniimagenet_5way_1shot_first_order': Budget(12, 2),
           'omniglot_5way_1shot_own': Budget(60, 5), 'omniglot_20way_1shot_own': Budget(12, 2)}


def _env(**extra) -> dict:
  # Every TensorFlow process gets oneDNN as main.py sets it (its grouped-convolution gradients).
  return {**os.environ, 'TF_ENABLE_ONEDNN_OPTS': os.environ.get('TF_ENABLE_ONEDNN_OPTS', '1'),
          'TF_CPP_MIN_LOG_LEVEL': '2', **extra}


def _run(cmd: list[str], env: dict, timeout: float) -> tuple[int, str, str]:
  logging.info('running %s', ' '.join(cmd))
  try:
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
  except subprocess.TimeoutExpired:
    return -1, '', f'timed out after {timeout:.0f} s'
  return p.returncode, p.stdout, p.stderr


def _last_json(stdout: str) -> dict | None:
  for line in reversed(stdout.strip().splitlines()):
    if line.startswith('{'):
      return json.loads(line)
  return None


def _failure(impl: str, work: str, code: int, stderr: str) -> dict:
  lines = [l for l in stderr.strip().splitlines() if l.strip()]
  if code == SKIP_EXIT and lines and lines[-1].startswith('skipped:'):
    return {'impl': impl, 'work': work, 'skipped': lines[-1][len('skipped:'):].strip()}
  tail = ' | '.join(lines[-3:]) if lines else 'no output'
  return {'impl': impl, 'work': work, 'failed': f'exit status {code}: {tail}'}


def measure_this_repo(work: work_lib.Work, budget: Budget, timeout: float,
                      extra_flags: tuple[str, ...] = ()) -> dict:
  """This project's `main.py --benchmark` on the work, as one comparison line."""
  with tempfile.TemporaryDirectory() as logdir:
    cmd = [sys.executable, 'main.py', *work.main_flags(), '--benchmark',
           f'--benchmark_iterations={budget.iterations}', f'--benchmark_warmup={budget.warmup}',
           f'--logdir={logdir}', *extra_flags]
    code, _, stderr = _run(cmd, _env(), timeout)
    if code != 0:
      return _failure(THIS, work.name, code, stderr)
    out_dir = os.path.join(logdir, 'benchmarks')
    (name,) = os.listdir(out_dir)
    r = utils.read_json(os.path.join(out_dir, name))
  keep = ('compile_s', 'its_median', 'its_mean', 'its_min', 'its_max', 'iterations', 'warmup',
          'chunks', 'final_loss', 'other_cores', 'own_cores', 'peak_rss_mb', 'rss_before_build_mb',
          'steps_per_call', 'task_chunk_used', 'commit')
  return {'impl': THIS, 'work': work.name, **{k: r[k] for k in keep},
          'versions': {'tensorflow': r['tensorflow'], 'keras': r['keras']},
          'flags': [*work.main_flags(), *extra_flags], **harness.cpu_info(),
          'timestamp': r['timestamp']}


def measure_peer(impl: str, work: work_lib.Work, budget: Budget, timeout: float,
                 tf1_original: str | None) -> dict:
  """One peer on the work, in its own process (or why it was skipped)."""
  # PathFinder looks on sys.path only: main.py keeps JAX out of its own process (sys.modules).
  missing = [p for p in PEERS[impl] if importlib.machinery.PathFinder.find_spec(p) is None]
  if missing:
    return {'impl': impl, 'work': work.name,
            'skipped': f'{", ".join(missing)} not installed ({INSTALL_HINT})'}
  if impl == 'tf1_original' and not tf1_original:
    return {'impl': impl, 'work': work.name,
            'skipped': 'no checkout of the original code given (--tf1_original=DIR: a clone of '
                       'github.com/cbfinn/maml)'}
  with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
    json.dump(work.spec(), f)
  try:
    env = _env(**({'MAML_TF1_ORIGINAL': os.path.abspath(tf1_original)} if tf1_original else {}))
    code, stdout, stderr = _run([sys.executable, '-m', MODULES[impl], f.name,
                                 str(budget.iterations), str(budget.warmup)], env, timeout)
  finally:
    os.remove(f.name)
  line = _last_json(stdout) if code == 0 else None
  if line is None:
    return _failure(impl, work.name, code, stderr)
  if (line.get('impl'), line.get('work')) != (impl, work.name):  # else the report drops or misfiles it
    return {'impl': impl, 'work': work.name,
            'failed': f'{MODULES[impl]} reported itself as ({line.get("impl")}, {line.get("work")})'}
  return line


def measure_peak(seconds: float = 3.0) -> dict:
  """The CPU's measured float32 matmul peak (GFLOP/s), in a process of its own."""
  code, stdout, stderr = _run([sys.executable, '-m', 'benchmarks.peak', str(seconds)], _env(), 600)
  line = _last_json(stdout) if code == 0 else None
  return line if line is not None else _failure('matmul_peak', '-', code, stderr)


def run(out_path: str, works: tuple[str, ...] = (), impls: tuple[str, ...] = (),
        tf1_original: str | None = None, quick: bool = False, timeout: float = 3600,
        extra_flags: tuple[str, ...] = ()) -> list[dict]:
  """Runs the comparison; writes (and returns) its JSON lines to out_path, replacing the file.

  works, impls: subsets (empty: all). quick: a tenth of the iterations (a smoke run). extra_flags
  go to this project's main.py (e.g. --task_chunk=4), and are recorded in its lines.
  """
  unknown = [i for i in impls if i not in IMPLS]
  if unknown:
    raise ValueError(f'unknown implementations {unknown}; known: {", ".join(IMPLS)}')
  chosen = [work_lib.get(w) for w in works] if works else list(work_lib.WORKS)
  lines = [measure_peak(0.5 if quick else 3.0)]
  started = time.perf_counter()
  for w in chosen:
    budget = BUDGETS[w.name]
    if quick:
      budget = Budget(max(2, budget.iterations // 10), min(budget.warmup, 1))
    for impl in impls or IMPLS:
      if impl != THIS and w.own_default:
        continue  # the project's own episodes: a table of this project alone
      line = (measure_this_repo(w, budget, timeout, extra_flags) if impl == THIS else
              measure_peer(impl, w, budget, timeout, tf1_original))
      lines.append(line)
      status = (f'{line["its_median"]:.4g} it/s, peak {line["peak_rss_mb"]:.0f} MB, other '
                f'processes {line.get("other_cores") or 0:.2f} cores' if 'its_median' in line
                else line.get('skipped') or line.get('failed'))
      logging.info('%s on %s: %s (%s elapsed)', impl, w.name, status,
                   utils.format_duration(time.perf_counter() - started))
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  with open(out_path, 'w') as f:
    for line in lines:
      f.write(json.dumps(line) + '\n')
  logging.info('wrote %s', out_path)
  return lines


def read(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
