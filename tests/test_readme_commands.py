"""Every command README.md prints in a ```bash block, checked exactly as printed.

A user copies these lines; each must work as written. The commands are read from the README at test
time (comments stripped, `\\` continuation lines joined, `&&` chains split) and checked by what they
run:
  - `bash scripts/<x>.sh ...`: run as printed, no flag added, in a copy of the repository with the
    recording stand-in interpreter of script_recorder.py (seconds, nothing trained): exit 0, every
    main.py call resolves to its row, rows trained before they are evaluated, each report reads the
    logdir the runs are in. A `pip install ... &&` before it is checked as a pip command, not run
    here: the stand-in run checks the script (the main job below runs its pip for real).
  - `python main.py ...`: parsed by main.py's own flags and resolved to its row, nothing trained. The
    placeholder `<row>` stands for any row of the experiments table: the command must resolve for
    every one of experiments.EXPERIMENTS (the RL rows take their own, smaller set of flags). Other
    placeholders (DIR, /shared/logs) are plain strings to main.py's flags and stay as printed.
  - `python -m pytest`: the test command; the whole line must be exactly the command .ci/run runs.
    With arguments (`-m slow`), pytest must accept them and collect tests (nothing runs).
  - `pip install -r FILE [spec ...]`: FILE exists; a spec that pins a package requirements.txt pins
    (`tensorflow[and-cuda]==2.21.0`) names the same version, or pip would install another one.
  - `python <file>.py ...`: the file is in the repository. Any other program (tensorboard): installed.
Variable assignments before a command (TF_CONFIG=...) are applied to a script run, not to main.py's
flags, which they do not change.

The main job, the first line that runs `bash scripts/sinusoid.sh`, also runs for real, as printed
(pip included; only its comment dropped) through `bash -c` in a copy of the repository: 4-10 minutes on 2 cores, in an xdist group of
its own so the other worker runs the rest meanwhile. It must print App. C Table 2 with MAML below the
pretrained baseline and write the figures.
"""

import dataclasses
import math
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import experiments
import report
from script_recorder import ROOT, check_calls, copy_repo, record, resolved_or_fail

README = ROOT / 'README.md'
CI_RUN = ROOT / '.ci' / 'run'
MAIN_JOB = ('bash', 'scripts/sinusoid.sh')
MAIN_JOB_TIMEOUT = 40 * 60  # 4 min alone on 2 cores; more beside the other tests and other runs
PYTHONS = ('python', 'python3')


@dataclasses.dataclass(frozen=True)
class Command:
  """One command line of a ```bash block."""
  text: str    # as printed, continuation lines joined, the trailing comment stripped
  parts: tuple  # the `&&`-chained commands: (variable assignments, words) each

  def runs(self, *prefix):
    return any(words[:len(prefix)] == prefix for _, words in self.parts)


def strip_comment(line: str) -> str:
  """The line without its comment: a `#` that starts a word outside quotes, as bash reads it."""
  quote, escaped = None, False
  for i, ch in enumerate(line):
    if escaped:
      escaped = False
    elif ch == '\\' and quote != "'":
      escaped = True
    elif quote:
      quote = None if ch == quote else quote
    elif ch in '\'"':
      quote = ch
    elif ch == '#' and (i == 0 or line[i - 1].isspace()):
      return line[:i].rstrip()
  return line.rstrip()


def parse_command(text: str) -> Command:
  words = shlex.split(text)
  unsupported = {'|', '||', ';', '&', '>', '<'} & set(words)
  assert not unsupported, f'{text!r}: teach this test the shell syntax {unsupported}'
  parts, current = [], []
  for word in words + ['&&']:
    if word != '&&':
      current.append(word)
      continue
    assignments = {}
    while current and re.match(r'[A-Za-z_]\w*=', current[0]):
      name, value = current.pop(0).split('=', 1)
      assignments[name] = value
    assert current, f'{text!r}: an empty command'
    parts.append((assignments, tuple(current)))
    current = []
  return Command(text, tuple(parts))


def readme_commands(text: str) -> list[Command]:
  """The command lines of the ```bash blocks of a README text, in order."""
  commands = []
  for block in re.findall(r'^```bash[ \t]*\n(.*?)^```', text, re.M | re.S):
    pending = ''
    for line in block.splitlines():
      line = strip_comment(line)
      if line.endswith('\\'):  # continued on the next line
        pending += line[:-1] + ' '
        continue
      line, pending = (pending + line).strip(), ''
      if line:
        commands.append(parse_command(line))
  return commands


def ci_command() -> str:
  """The one command line of .ci/run (its set-up lines, set and cd, aside)."""
  lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
  commands = [line for line in lines
              if line and not line.startswith(('#', 'set ', 'cd '))]
  assert len(commands) == 1, f'.ci/run should run one command line: {commands}'
  return commands[0]


def requirement_pins(path: pathlib.Path) -> dict[str, str]:
  """name -> pinned version of a requirements file's `name[extras]==version` lines."""
  pins = {}
  for line in path.read_text().splitlines():
    m = re.match(r'\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;#]+)', line)
    if m:
      pins[canonical(m[1])] = m[3]
  return pins


def canonical(name: str) -> str:
  return re.sub(r'[-_.]+', '-', name).lower()


COMMANDS = readme_commands(README.read_text())


# --- what each kind of command must do ------------------------------------------------------------

def check_pip(words, assignments, command, tmp_path):
  args = list(words[2:])
  files = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ('-r', '--requirement')]
  specs = [a for a in args if not a.startswith('-') and a not in files]
  for name in files:
    assert (ROOT / name).is_file(), f'{command.text}: no {name} in the repository'
  pins = requirement_pins(ROOT / 'requirements.txt')
  for spec in specs:
    m = re.fullmatch(r'([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)', spec)
    if m and canonical(m[1]) in pins:
      assert m[3] == pins[canonical(m[1])], (
          f'{command.text}: {spec}, but requirements.txt pins {m[1]}=={pins[canonical(m[1])]}')


def check_script(words, assignments, command, tmp_path):
  script = words[1]
  assert (ROOT / script).is_file(), f'{command.text}: no script {script}'
  repo = copy_repo(tmp_path / 'repo')
  proc, calls = record(list(words), cwd=repo, work_dir=tmp_path, env=assignments)
  assert proc.returncode == 0, f'{command.text}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}'
  assert calls, f'{command.text}: calls main.py not once'
  check_calls(script, calls, every_report_row=False)


def check_main(words, assignments, command, tmp_path):
  argv = list(words[1:])
  rows = experiments.EXPERIMENTS if any('<row>' in w for w in argv) else (None,)
  for row in rows:
    resolved_or_fail(command.text, [w.replace('<row>', row) for w in argv] if row else argv,
                     scripts_protocol=False)


def is_test_command(command):
  """The README's test command: a line that runs pytest with no arguments (all default tests)."""
  return any(words[0] in PYTHONS and words[1:] == ('-m', 'pytest') for _, words in command.parts)


def check_pytest(words, assignments, command, tmp_path):
  if len(words) == 3:
    assert command.text == ci_command(), (
        f'the README\'s test command {command.text!r} is not what .ci/run runs ({ci_command()!r})')
    return
  # A subset (`-m slow`, one file): pytest must accept the arguments and select tests; only collected.
  proc = subprocess.run([sys.executable, '-m', 'pytest', *words[3:], '--collect-only', '-q'],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, f'{command.text}: pytest exits {proc.returncode}\n{proc.stdout[-2000:]}'


def check_python_file(words, assignments, command, tmp_path):
  assert (ROOT / words[1]).is_file(), f'{command.text}: no {words[1]} in the repository'


def check_program(words, assignments, command, tmp_path):
  assert shutil.which(words[0]), f'{command.text}: {words[0]} is not installed'


def checker(words):
  if words[:2] == ('pip', 'install'):
    return check_pip
  if words[0] == 'bash' and len(words) > 1 and words[1].startswith('scripts/'):
    return check_script
  if words[0] in PYTHONS and words[1:2] == ('main.py',):
    return check_main
  if words[0] in PYTHONS and words[1:3] == ('-m', 'pytest'):
    return check_pytest
  if words[0] in PYTHONS and len(words) > 1 and words[1].endswith('.py'):
    return check_python_file
  return check_program


# --- the tests -------------------------------------------------------------------------------------

def test_the_parser_reads_commands_as_bash_does():
  text = ('```bash\n'
          'pip install -r requirements.txt && bash scripts/sinusoid.sh   # the main job\n'
          "# a comment line\n"
          "A='{\"b\": \"#1\"}' \\\n"
          '  python main.py --experiment=<row>  # x\n'
          '```\n'
          '```\n'
          'python not_bash.py\n'
          '```\n')
  first, second = readme_commands(text)
  assert first.text == 'pip install -r requirements.txt && bash scripts/sinusoid.sh'
  assert first.parts == (({}, ('pip', 'install', '-r', 'requirements.txt')),
                         ({}, ('bash', 'scripts/sinusoid.sh')))
  assert second.parts == (({'A': '{"b": "#1"}'}, ('python', 'main.py', '--experiment=<row>')),)


def test_the_readme_gives_the_sinusoid_script_and_the_test_command():
  assert any(c.runs(*MAIN_JOB) for c in COMMANDS), f'no ```bash line of README.md runs {MAIN_JOB}'
  assert any(map(is_test_command, COMMANDS)), 'README.md gives no test command (`python -m pytest`)'


def test_ci_runs_the_readme_test_command():
  """.ci/run's command line is exactly the README's test command (also checked per command below)."""
  tests = [c.text for c in COMMANDS if is_test_command(c)]
  assert tests == [ci_command()], tests


def check(command, tmp_path):
  for assignments, words in command.parts:
    checker(words)(words, assignments, command, tmp_path)


@pytest.mark.parametrize('command', COMMANDS, ids=[c.text for c in COMMANDS])
def test_readme_command_works_as_printed(command, tmp_path):
  check(command, tmp_path)


@pytest.mark.parametrize('text', [
    'bash scripts/sinusoid.sh --no_such_flag',  # the script passes it on; main.py refuses it
    'bash scripts/no_such_script.sh',
    'python main.py --experiment=no_such_row',
    'python main.py --experiment=<row> --update_batch_size=<K>',
    'python main.py --report=no_such_group',
    'pip install -r requirements.txt "tensorflow[and-cuda]==2.0.0"',
    'pip install -r no_such_requirements.txt',
    'python -m pytest',  # not what .ci/run runs: without the pip install
    'python -m pytest tests/no_such_test.py',
    'python no_such_file.py',
    'no_such_program --help',
])
def test_a_wrong_command_fails_its_check(text, tmp_path):
  with pytest.raises(AssertionError):
    check(parse_command(text), tmp_path)


def test_a_row_placeholder_stands_for_every_row(tmp_path):
  check(parse_command('python main.py --experiment=<row> --benchmark'), tmp_path)
  with pytest.raises(AssertionError, match='contradicts'):  # true of the sinusoid rows only
    check(parse_command('python main.py --experiment=<row> --datasource=sinusoid'), tmp_path)


def markdown_table(text: str, first_header: str) -> tuple[list[str], dict[str, dict[str, str]]]:
  """The header and the rows (label -> header -> cell) of the markdown table whose first column is
  `first_header`."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(f'| {first_header} |'))
  header = [c.strip() for c in lines[start].strip('|').split('|')]
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith('|'):
      break
    cells = [c.strip() for c in line.strip('|').split('|')]
    rows[cells[0]] = dict(zip(header, cells))
  return header, rows


@pytest.mark.xdist_group('main_job')
def test_main_job_as_printed_reproduces_table2_and_writes_the_figures(tmp_path):
  """The README's main job, run as printed: App. C Table 2 printed, MAML below pretrained, figures."""
  command = next(c for c in COMMANDS if c.runs(*MAIN_JOB))
  repo = copy_repo(tmp_path / 'repo')
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'SCRIPT_CALLS')}
  proc = subprocess.run(['bash', '-c', command.text], cwd=repo, capture_output=True, text=True,
                        env=env, timeout=MAIN_JOB_TIMEOUT)
  assert proc.returncode == 0, f'{command.text}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}'

  header, rows = markdown_table(proc.stdout, 'model')
  for s in (1, 5, 10):
    for what in ('reproduced', 'published'):
      assert f'{s} step{"s" * (s != 1)}: {what}' in header, header
  reproduced = {}
  for row in report.TABLE2_ROWS:
    label = report.LABELS[row]
    assert label in rows, f'Table 2 has no {label} row: {list(rows)}'
    for s in (1, 5, 10):
      cell = rows[label][f'{s} step{"s" * (s != 1)}: reproduced']
      m = re.fullmatch(r'(\S+) ± (\S+)', cell)
      assert m, f'{label} after {s} steps: {cell!r} is not "mean ± CI"'
      reproduced[row, s] = float(m[1])  # the paper-alpha row may diverge to inf/nan: still printed
      published = rows[label][f'{s} step{"s" * (s != 1)}: published']
      if row != report.PAPER_ALPHA_ROW:
        assert math.isfinite(float(published)), f'{label} after {s} steps: published {published!r}'
  maml, pretrained = reproduced[report.MAML_ROW, 10], reproduced[report.PRETRAINED_ROW, 10]
  assert math.isfinite(maml) and maml < pretrained, (
      f'MAML K=5 MSE after 10 steps {maml} is not below the pretrained baseline\'s {pretrained}')

  figures = repo / 'logs' / 'sinusoid' / report.FIGURES_DIR
  wrote = next(line for line in proc.stdout.splitlines() if line.startswith('wrote '))
  written = [repo / p for p in wrote[len('wrote '):].split(', ')]
  assert {p.name for p in written} == {'fig2_sinusoid.png', 'fig3_sinusoid_k10.png',
                                       'fig6_sinusoid.png', 'table2_sinusoid.md'}, wrote
  for path in written:
    assert path.parent == figures and path.stat().st_size > 0, path
    if path.suffix == '.png':
      assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', path
  assert markdown_table((figures / 'table2_sinusoid.md').read_text(), 'model')[1] == rows
