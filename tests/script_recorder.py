"""Runs the shell scripts of scripts/ with a stand-in interpreter that records their main.py calls.

Shared by test_scripts.py (every script with every option) and test_readme_commands.py (every script
command exactly as README.md prints it), so both judge a script run by the same rules:
  - the stand-in (PYTHON) records each `main.py` call and trains nothing; the scripts' `python -c`
    look-ups in experiments.py run for real, so a row group that no longer exists fails the script;
  - each recorded call is parsed by main.py's own flags and resolved to its row and run directory;
  - every row is trained before it is evaluated, in the run directory its evaluation reads, and the
    report reads the logdir the rows were written to.
Scripts run in a copy of the repository (`copy_repo`), so a run without --logdir never writes into
the repository's own logs/.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

from absl.testing import flagsaver

import experiments
import main
import report

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The stand-in: records argv, or, on SCRIPT_FAIL_AT=<n>, records the n-th main.py call and then fails
# it (exit status 7), so a test can see how a script reports a failing step.
RECORDER = """import json, os, sys
if sys.argv[1:2] == ['-c']:  # the scripts' look-ups in experiments.py run for real
  os.execv(sys.executable, [sys.executable] + sys.argv[1:])
with open(os.environ['SCRIPT_CALLS'], 'a') as f:
  f.write(json.dumps(sys.argv[1:]) + '\\n')
with open(os.environ['SCRIPT_CALLS']) as f:
  if str(sum(1 for _ in f)) == os.environ.get('SCRIPT_FAIL_AT'):
    print('error: the stand-in interpreter fails this call', file=sys.stderr)
    sys.exit(7)
"""
FAIL_STATUS = 7


def repo_files(*patterns: str) -> list[str]:
  """The repository's files as a commit of the working tree would hold them (matching git pathspecs,
  if given): tracked ones still present, and untracked ones git does not ignore, since a change under
  development often adds a module before `git add` (logs/, runs/ and caches are ignored)."""
  names = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard', '--',
                          *patterns], cwd=ROOT, capture_output=True, check=True).stdout.decode()
  return sorted({n for n in names.split('\0') if n and (ROOT / n).is_file()})


def user_scripts() -> list[str]:
  """The scripts/*.sh a user runs (all but lib.sh), by file name: what the copies hold."""
  return [pathlib.Path(n).name for n in repo_files('scripts/*.sh') if n != 'scripts/lib.sh']


def copy_repo(dst: pathlib.Path) -> pathlib.Path:
  """Copies the repository's files (repo_files) from the working tree to dst and returns dst.

  The working tree, not HEAD: a change under development is what the tests must see.
  """
  for name in repo_files():
    (dst / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / name, dst / name)
  return dst


def make_interpreter(directory: pathlib.Path, program: str = RECORDER) -> pathlib.Path:
  """An executable `python` in `directory` that runs `program` (Python source) with sys.executable."""
  directory.mkdir(parents=True, exist_ok=True)
  (directory / 'recorder.py').write_text(program)
  interpreter = directory / 'python'  # a short shebang: long interpreter paths exceed the kernel's limit
  interpreter.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{directory / "recorder.py"}" "$@"\n')
  interpreter.chmod(0o755)
  return interpreter


def record(argv, cwd: pathlib.Path, work_dir: pathlib.Path, env: dict | None = None, timeout=60):
  """Runs argv (a script command) in cwd with the recording stand-in as PYTHON.

  Returns (the completed process, the recorded main.py calls, each an argv list). `env` adds
  variables to the environment; PYTHON is always the stand-in.
  """
  calls_file = work_dir / 'calls.jsonl'
  calls_file.unlink(missing_ok=True)
  env = dict(os.environ, **(env or {}), PYTHON=str(make_interpreter(work_dir / 'interpreter')),
             SCRIPT_CALLS=str(calls_file))
  proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
  lines = calls_file.read_text().splitlines() if calls_file.exists() else []
  return proc, [json.loads(line) for line in lines]


def report_rows(group):
  """The rows a report group tables, where the group has a fixed set."""
  if group in experiments.METHOD_ROWS:
    return experiments.METHOD_ROWS[group]
  if group.startswith('rl_'):
    return tuple(n for n in experiments.RL_EXPERIMENTS if n.rsplit('_', 1)[0] == group)
  if group in experiments.L2L_EXPERIMENTS:
    return (group,)
  return {'sinusoid': experiments.SINUSOID_ROWS, 'omniglot': experiments.OMNIGLOT_ROWS,
          'miniimagenet': experiments.MINIIMAGENET_ROWS}.get(group, ())


def resolve_call(argv, scripts_protocol=True):
  """A main.py call -> (kind, row or group, run directory of the model it trains/reads).

  kind is 'train', 'evaluate', 'predict', 'benchmark', 'compare', 'report' or 'queue' (a step of the run queue); for a
  report or a queue step the third item is the logdir it reads. Raises (absl flag errors,
  ConfigError, AssertionError) for a call main.py would refuse.
  scripts_protocol: the scripts evaluate on the test split only; a hand-typed command may validate.
  """
  assert argv[0] == 'main.py', argv
  with flagsaver.flagsaver():
    main.FLAGS.unparse_flags()
    main.FLAGS(argv)
    flags = main.FLAGS
    if flags.report:
      assert flags.report in report.GROUPS, argv
      return 'report', flags.report, flags.logdir
    if flags.compare_speed:  # writes <logdir>/speed/comparison.jsonl, which --report=speed reads
      return 'compare', 'speed', os.path.dirname(flags.compare_out)
    if 'queue' in flags and flags.queue:
      row = flags.experiment
      assert row is None or row in {**experiments.EXPERIMENTS, **experiments.RL_EXPERIMENTS,
                                    **experiments.L2L_EXPERIMENTS}, argv
      return 'queue', row or flags.queue, flags.logdir
    kind = ('benchmark' if flags.benchmark else 'predict' if flags.predict
            else 'train' if flags.train else 'evaluate')
    if kind == 'evaluate' and scripts_protocol:
      assert flags.test_set, f'the scripts evaluate on the test split: {argv}'
    if flags.experiment in experiments.RL_EXPERIMENTS:
      return kind, flags.experiment, main.resolve_rl()[1]
    if flags.experiment in experiments.L2L_EXPERIMENTS:
      return kind, flags.experiment, main.resolve_l2l()[1]
    main._check_predict_flags()
    test_mode = kind in ('evaluate', 'predict')  # both read a trained run's config
    cfg, _ = main.resolve(test_mode)
    # a row with model_from trains and reads the run of its source row
    return kind, flags.experiment, main.resolve(test_mode, cfg.model_from)[1]


def resolved_or_fail(what, argv, scripts_protocol=True):
  """resolve_call, any refusal of main.py's (a flag error, a ConfigError) as an AssertionError."""
  try:
    return resolve_call(argv, scripts_protocol)
  except AssertionError:
    raise
  except Exception as e:
    raise AssertionError(f'{what}: {" ".join(argv)} does not resolve: {e!r}') from e


def check_calls(script, calls, every_report_row=True):
  """Checks one script run's recorded main.py calls; returns them resolved (resolve_call).

  Each call resolves; each evaluated run was trained before; every run a script trains, evaluates or
  benchmarks is read by a report that follows it, from the logdir the run lives in (a run queue's own
  steps are not runs). every_report_row: the run passed the options that add rows, so each row the
  report tables must have been evaluated (without them a script runs a subset, and the report marks
  the rest as not run).
  """
  resolved = [resolved_or_fail(script, argv) for argv in calls]
  trained, evaluated, pending = set(), set(), []
  for kind, row, run_dir in resolved:
    if kind == 'queue':
      continue
    if kind == 'report':
      logdir = os.path.normpath(run_dir)
      elsewhere = [d for d in pending if os.path.dirname(os.path.normpath(d)) != logdir]
      assert not elsewhere, f'{script}: report {row} reads {logdir}, the runs are in {elsewhere}'
      pending = []
      missing = set(report_rows(row)) - evaluated
      assert not (every_report_row and missing), (
          f'{script}: report {row} tables rows the script never runs: {missing}')
      continue
    pending.append(run_dir)
    if kind == 'train':
      trained.add(run_dir)
    elif kind == 'evaluate':
      assert run_dir in trained, f'{script} evaluates {row} ({run_dir}) before training it'
      evaluated.add(row)
  assert not pending, f'{script} ends with runs no report reads: {pending}'
  return resolved
