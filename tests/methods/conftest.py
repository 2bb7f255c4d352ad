"""Fixtures of the methods' tests."""

import pytest

import method_runs


@pytest.fixture(scope='session')
def sources(tmp_path_factory):
  """The synthetic image sources ({datasource: folder}), made once per test process."""
  return method_runs.make_sources(tmp_path_factory.mktemp('method_sources'))
