"""Every script in scripts/ against the experiments table, without training anything.

Each script runs with a stand-in interpreter that records its main.py calls (and runs its
`python -c` look-ups for real); each call is then parsed by main.py's own flags and resolved to its
config. Catches, in seconds: a row or flag a script names that no longer exists, a row evaluated
before it is trained or under another run directory, a report group with a row no script runs.
(The scripts end to end, training for real, are the `slow` tests of test_reproduction.py.)
"""

import json
import os
import pathlib
import subprocess
import sys

from absl.testing import flagsaver
import pytest

import experiments
import main
import report

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Every script with the options that add rows, so each row a script can run is checked.
SCRIPTS = {
    'sinusoid.sh': [],
    'omniglot.sh': ['--with-5shot-training'],
    'miniimagenet.sh': ['--first-order', '--baselines'],
    'anil.sh': [], 'reptile.sh': [], 'meta_sgd.sh': [], 'maml_plus_plus.sh': [],
    'metric_baselines.sh': [],
    'compare_methods.sh': ['--data_miniimagenet=/data/mini'],
    'rl_navigation.sh': [], 'rl_cheetah.sh': [], 'rl_ant.sh': [],
    'benchmark.sh': [],
}

RECORDER = """import json, os, sys
if sys.argv[1] == '-c':  # the scripts' look-ups in experiments.py run for real
  os.execv(sys.executable, [sys.executable] + sys.argv[1:])
with open(os.environ['SCRIPT_CALLS'], 'a') as f:
  f.write(json.dumps(sys.argv[1:]) + '\\n')
"""


def report_rows(group):
  """The rows a report group tables, where the group has a fixed set."""
  if group in experiments.METHOD_ROWS:
    return experiments.METHOD_ROWS[group]
  if group.startswith('rl_'):
    return tuple(n for n in experiments.RL_EXPERIMENTS if n.rsplit('_', 1)[0] == group)
  return {'sinusoid': experiments.SINUSOID_ROWS, 'omniglot': experiments.OMNIGLOT_ROWS,
          'miniimagenet': experiments.MINIIMAGENET_ROWS}.get(group, ())


def resolve_call(argv):
  """A recorded main.py call -> (kind, row or group, run directory of the model it trains/reads)."""
  assert argv[0] == 'main.py', argv
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(argv)
    flags = main.FLAGS
    if flags.report:
      assert flags.report in report.GROUPS, argv
      return 'report', flags.report, flags.logdir
    kind = 'benchmark' if flags.benchmark else 'train' if flags.train else 'evaluate'
    if kind == 'evaluate':
      assert flags.test_set, f'the scripts evaluate on the test split: {argv}'
    if flags.experiment in experiments.RL_EXPERIMENTS:
      return kind, flags.experiment, main.resolve_rl()[1]
    cfg, _ = main.resolve(kind == 'evaluate')
    # a row with model_from trains and reads the run of its source row
    return kind, flags.experiment, main.resolve(kind == 'evaluate', cfg.model_from)[1]


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_script_calls_resolve_to_rows_trained_before_they_are_evaluated(tmp_path, script):
  (tmp_path / 'recorder.py').write_text(RECORDER)
  recorder = tmp_path / 'python'  # a short shebang: long interpreter paths exceed the kernel's limit
  recorder.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "recorder.py"}" "$@"\n')
  recorder.chmod(0o755)
  calls_file = tmp_path / 'calls.jsonl'
  env = dict(os.environ, PYTHON=str(recorder), SCRIPT_CALLS=str(calls_file))
  for quick in ([], ['--quick']):
    calls_file.unlink(missing_ok=True)
    proc = subprocess.run(['bash', str(ROOT / 'scripts' / script), *quick, *SCRIPTS[script],
                           f'--logdir={tmp_path / "logs"}'], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    calls = [resolve_call(json.loads(line)) for line in calls_file.read_text().splitlines()]
    assert calls and calls[-1][0] == 'report', calls

    trained, evaluated = set(), set()
    for kind, row, run_dir in calls:
      if kind == 'train':
        trained.add(run_dir)
      elif kind == 'evaluate':
        assert run_dir in trained, f'{script} evaluates {row} ({run_dir}) before training it'
        evaluated.add(row)
      elif kind == 'report':
        missing = set(report_rows(row)) - evaluated
        assert not missing, f'{script}: report {row} tables rows the script never runs: {missing}'
    assert {kind for kind, _, _ in calls} >= ({'benchmark', 'report'} if script == 'benchmark.sh'
                                              else {'train', 'evaluate', 'report'})
