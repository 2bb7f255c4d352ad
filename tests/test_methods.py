"""Every method's first iterations are bit-identical to the code before methods/ existed
(tests/method_runs.json, recorded at commit 0f6d5ba): the loss of each iteration, the progress
lines, the checkpoint's keys (its object graph, which runs in progress and results/ resume from)
and its tensors, and the evaluation's numbers. A new method adds its case to
tests/method_runs.py's CASES and records it (docs/adding-a-method.md).
"""

import json
import pathlib

import pytest

import experiments
import image_datasets
import method_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECORDED = json.loads(method_runs.FIXTURE.read_text())


@pytest.fixture(scope='session')
def sources(tmp_path_factory):
  """The synthetic image sources, made once per test process."""
  return method_runs.make_sources(tmp_path_factory.mktemp('method_sources'))


@pytest.mark.parametrize('case', method_runs.CASES)
def test_first_iterations_are_bit_identical_to_the_recorded_ones(case, request, tmp_path,
                                                                  monkeypatch):
  row, _ = method_runs.CASES[case]
  src = {} if experiments.get(row).datasource == 'sinusoid' else request.getfixturevalue('sources')
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  got = method_runs.run_case(case, str(tmp_path / 'run'), src)
  want = RECORDED[case]
  assert got['losses'] == want['losses']
  assert got['progress'] == want['progress']
  assert got['checkpoint_keys'] == want['checkpoint_keys']
  assert got['checkpoint_sha256'] == want['checkpoint_sha256']
  assert got['results'] == want['results']


def test_every_case_is_recorded():
  assert set(RECORDED) == set(method_runs.CASES)
