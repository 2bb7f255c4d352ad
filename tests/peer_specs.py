"""The works' specs (benchmarks/work.py) for the peers' tests, read in a subprocess: work.py imports
TensorFlow, which a peer's own process does without."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def work_specs(*names: str) -> list[dict]:
  """work.get(name).spec() of each name, in order."""
  code = ('import json; from benchmarks import work; '
          f'print(json.dumps([work.get(n).spec() for n in {list(names)!r}]))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout
  return json.loads(out.strip().splitlines()[-1])
