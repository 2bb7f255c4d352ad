"""Test set-up: the repo root on sys.path, quiet TensorFlow, deterministic ops."""

import os
import pathlib
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')  # as main.py: batched image rows on AVX2 CPUs
if 'PYTEST_XDIST_WORKER' in os.environ:
  # pytest.ini runs two test processes (pytest-xdist; CI has two cores): one TensorFlow op
  # thread each, inherited by the main.py processes tests start, so they never oversubscribe.
  # Most test time is single-threaded tracing, so this halves the run (686 s -> 376 s on 2 cores).
  os.environ.setdefault('TF_NUM_INTRAOP_THREADS', '1')
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  """One tfds cache per test process: each real dataset is prepared once in it (Omniglot: ~20 s)."""
  return tmp_path_factory.mktemp('tfds')
