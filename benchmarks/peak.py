"""The CPU's float32 matmul peak, the denominator of the comparison's fraction-of-peak figures.

`python -m benchmarks.peak SECONDS` times 2048 x 2048 float32 matmuls in TensorFlow (its oneDNN /
Eigen kernels, all cores) and NumPy (its BLAS) for about SECONDS each and prints one JSON line with
the better GFLOP/s as `peak_gflops`.
"""

import json
import os
import sys
import time

import numpy as np

from benchmarks import harness

SIZE = 2048


def _rate(matmul, seconds: float) -> float:
  """Best GFLOP/s of repeated matmuls over about `seconds` (after one warm-up call)."""
  matmul()
  best, end = 0.0, time.perf_counter() + seconds
  while time.perf_counter() < end:
    t = time.perf_counter()
    matmul()
    best = max(best, 2 * SIZE ** 3 / (time.perf_counter() - t) / 1e9)
  return best


def main() -> None:
  seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
  a = np.random.default_rng(0).standard_normal((SIZE, SIZE), dtype=np.float32)
  numpy_gflops = _rate(lambda: a @ a, seconds)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf  # after NumPy's run, so its thread pools do not compete
  t = tf.constant(a)
  tf_gflops = _rate(lambda: tf.linalg.matmul(t, t).numpy(), seconds)
  print(json.dumps({'impl': 'matmul_peak', 'work': '-', 'numpy_gflops': numpy_gflops,
                    'tensorflow_gflops': tf_gflops, 'peak_gflops': max(numpy_gflops, tf_gflops),
                    'size': SIZE, **harness.cpu_info()}))


if __name__ == '__main__':
  main()
