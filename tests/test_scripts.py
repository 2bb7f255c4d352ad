"""Every script in scripts/ against the experiments table, without training anything.

Each script runs with a stand-in interpreter that records its main.py calls (and runs its
`python -c` look-ups for real); each call is then parsed by main.py's own flags and resolved to its
config (script_recorder.py, shared with test_readme_commands.py). Catches, in seconds: a row or flag
a script names that no longer exists, a row evaluated before it is trained or under another run
directory, a report group with a row no script runs, a script that fails without flags (as the
README prints it) or under the before-stop hook's do-nothing interpreter, and a failure that does not
say which step failed. (The scripts end to end, training for real, are the `slow` tests of
test_reproduction.py, and the README's main job in test_readme_commands.py.)
"""

import os
import re
import subprocess
import sys

import pytest

from script_recorder import FAIL_STATUS, ROOT, check_calls, copy_repo, record, user_scripts

# Every script with the options that add rows, so each row a script can run is checked.
SCRIPTS = {
    'sinusoid.sh': [],
    'omniglot.sh': ['--with-5shot-training'],
    'miniimagenet.sh': ['--first-order', '--baselines'],
    'anil.sh': [], 'reptile.sh': [], 'meta_sgd.sh': [], 'maml_plus_plus.sh': [],
    'metric_baselines.sh': [], 'siamese.sh': [], 'relation.sh': [],
    'meta_lstm.sh': [], 'metanet.sh': [], 'mann.sh': [],
    'compare_methods.sh': ['--data_miniimagenet=/data/mini'],
    'rl_navigation.sh': [], 'rl_cheetah.sh': [], 'rl_ant.sh': [],
    'benchmark.sh': [],
    'l2l.sh': ['--data_mnist=/data/mnist.npz'],
}


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_script_calls_resolve_to_rows_trained_before_they_are_evaluated(tmp_path, script):
  for quick in ([], ['--quick']):
    proc, calls = record(['bash', str(ROOT / 'scripts' / script), *quick, *SCRIPTS[script],
                          f'--logdir={tmp_path / "logs"}'], cwd=tmp_path, work_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    kinds = {kind for kind, _, _ in check_calls(script, calls)}
    assert kinds >= ({'compare', 'report'} if script == 'benchmark.sh'
                     else {'train', 'evaluate', 'report'}), kinds


@pytest.mark.parametrize('script', user_scripts())
def test_script_runs_with_no_flags_as_the_readme_prints_it(tmp_path, script):
  """`bash scripts/<x>.sh` as a user types it: no --logdir, with and without --quick.

  The scripts once set their default logdir with a command substitution that failed without --quick,
  which under `set -e` ended every script at once, silently; every other test passed --logdir.
  """
  repo = copy_repo(tmp_path / 'repo')
  logdirs = []
  for quick in ([], ['--quick']):
    proc, calls = record(['bash', f'scripts/{script}', *quick], cwd=repo, work_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert calls, f'{script} {quick} calls main.py not once'
    resolved = check_calls(script, calls, every_report_row=False)
    logdirs.append({run_dir for kind, _, run_dir in resolved if kind == 'report'})
  if script in SCRIPTS:  # the paper's scripts: one logdir each, a separate one for smoke runs
    (default,), (quick,) = logdirs
    assert default.startswith('logs/') and quick == default + '_quick', logdirs


def test_every_script_that_reports_is_checked_with_its_options():
  reporting = {s for s in user_scripts() if re.search(
      r'^\s*(report|run_rl_families) ', (ROOT / 'scripts' / s).read_text(), re.M)}
  assert reporting <= set(SCRIPTS), (
      f'add them to SCRIPTS with the options that add rows: {reporting - set(SCRIPTS)}')


@pytest.mark.parametrize('script', user_scripts())
def test_script_survives_a_stand_in_that_runs_nothing(tmp_path, script):
  """The before-stop hook runs each script with a PYTHON that does nothing and prints nothing, even
  for the `python -c` row look-ups: the script runs no rows then, warns, and exits 0 (a real Python
  that finds no rows fails: test_an_empty_or_failing_row_look_up_fails_the_script)."""
  repo = copy_repo(tmp_path / 'repo')
  (tmp_path / 'python').write_text('#!/bin/sh\nexit 0\n')
  (tmp_path / 'python').chmod(0o755)
  proc = subprocess.run(['bash', f'scripts/{script}'], cwd=repo, capture_output=True, text=True,
                        env=dict(os.environ, PYTHON=str(tmp_path / 'python')), timeout=60)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  text = (ROOT / 'scripts' / script).read_text()
  if 'rows_of ' in text or 'run_rl_families ' in text:  # lib.sh's run_rl_families looks its rows up
    assert 'warning:' in proc.stderr and 'printed no rows' in proc.stderr, proc.stderr


def test_a_failing_step_ends_the_script_with_one_line_that_names_it(tmp_path):
  """The third main.py call of sinusoid.sh (the paper-alpha row's training) fails: the script stops
  there with that exit status, and its last stderr line names the script, the step, the status and
  the command, after main.py's own message."""
  repo = copy_repo(tmp_path / 'repo')
  proc, calls = record(['bash', 'scripts/sinusoid.sh'], cwd=repo, work_dir=tmp_path,
                       env={'SCRIPT_FAIL_AT': '3'})
  assert proc.returncode == FAIL_STATUS, proc.stdout + proc.stderr
  assert len(calls) == 3, f'the script went on after the failing step: {calls}'
  lines = proc.stderr.splitlines()
  assert lines[-2].startswith('error: '), proc.stderr
  assert lines[-1] == (
      f'scripts/sinusoid.sh: failed at step "sinusoid_maml_paper_alpha: train (logs/sinusoid)", '
      f'exit status {FAIL_STATUS}: {tmp_path / "interpreter" / "python"} '
      f'main.py --experiment=sinusoid_maml_paper_alpha --logdir=logs/sinusoid'), proc.stderr


@pytest.mark.parametrize('expression', ['()', "e.METHOD_ROWS['no_such_group']"])
def test_an_empty_or_failing_row_look_up_fails_the_script(tmp_path, expression):
  """With the real interpreter, a look-up that finds no rows or raises stops the script with one line
  naming the look-up; it never silently runs no rows (the stand-in of the hook may, see above)."""
  repo = copy_repo(tmp_path / 'repo')
  (repo / 'scripts' / 'look_up.sh').write_text(
      f'source "$(dirname "$0")/lib.sh"\nrows_of "{expression}"\necho "ran: ${{rows[*]}}"\n')
  proc = subprocess.run(['bash', 'scripts/look_up.sh'], cwd=repo, capture_output=True, text=True,
                        env=dict(os.environ, PYTHON=sys.executable), timeout=60)
  assert proc.returncode == 1 and 'ran:' not in proc.stdout, proc.stdout + proc.stderr
  assert proc.stderr.splitlines()[-1].startswith(
      f'scripts/look_up.sh: failed at step "look up the rows {expression}", exit status 1: '
      f'{sys.executable} -c '), proc.stderr


def test_a_failing_command_outside_a_step_is_reported_too(tmp_path):
  """The ERR trap: a failure the steps do not wrap still ends the script with its one line."""
  repo = copy_repo(tmp_path / 'repo')
  (repo / 'scripts' / 'broken.sh').write_text(
      'source "$(dirname "$0")/lib.sh"\nparse_args "$@"\nset_logdir broken\n'
      'ls no_such_file\necho reached\n')
  proc = subprocess.run(['bash', 'scripts/broken.sh'], cwd=repo, capture_output=True, text=True,
                        timeout=60)
  assert proc.returncode != 0 and 'reached' not in proc.stdout, proc.stdout + proc.stderr
  assert proc.stderr.splitlines()[-1] == (
      f'scripts/broken.sh: failed at step "start-up", exit status {proc.returncode}: ls no_such_file')
