"""Test set-up: the repo root on sys.path, quiet TensorFlow, deterministic ops."""

import os
import pathlib
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')  # as main.py: batched image rows on AVX2 CPUs
# One TensorFlow op thread per test process, with or without pytest-xdist: pytest.ini runs two
# processes (CI has two cores), so they never oversubscribe (most test time is single-threaded
# tracing: 686 s -> 376 s on 2 cores), and tests that compare an in-process run with a main.py
# process (sinusoid rows pin intra_op_threads=1) reduce in the same order under `-n0` too.
os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """One tfds cache per test process: each real dataset is prepared once in it (Omniglot: ~20 s)."""
  return tmp_path_factory.mktemp('tfds')
