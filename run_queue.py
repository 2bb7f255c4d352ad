"""The run queue: training runs one at a time, resumable on any machine from the committed results/.

`results/queue.txt` lists experiments-table rows in the order they run. `bash scripts/continue_runs.sh`
takes each row whose `results/<row>/run.json` does not yet say "done", and

  1. restores its committed checkpoint (`results/<row>/checkpoint/`) into the run directory when the
     run directory has none (a fresh clone, a new machine),
  2. trains it to the row's iterations (main.py; resumes, validates and checkpoints as the row says),
  3. evaluates the model picked by the row's selection rule with the paper's protocol (600 tasks),
  4. exports `results/<row>/` (below) and goes on to the next row.

`bash scripts/continue_runs.sh --save` snapshots the running row into `results/<row>/checkpoint/`
(replacing the previous snapshot) so that it can be committed before a machine goes away.

results/<row>/ holds
  run.json      row, iterations trained and targeted, the selection rule, the tested checkpoint, the
                commands that train and re-evaluate it, done or not
  config.json   the run's resolved config (without the machine's data_dir)
  results/      the result JSONs as trainer.evaluate / rl.trainer.evaluate_rl / l2l.trainer.evaluate
                wrote them
  validation.csv, train.csv   the validation curve (rows that validate) and the training curve
  model/        the tested model's weights only (a TensorFlow checkpoint, no optimizer state):
                `python main.py --experiment=<row> --train=False --test_set=True --logdir=results`
                re-evaluates it and rewrites results/ with the same numbers
  checkpoint/   only while the row is unfinished: the latest full checkpoint (weights, optimizer
                state, iteration, data RNG), the validation curve and the best model so far
"""

from __future__ import annotations

import csv
import glob
import os
import shutil
import tempfile

import experiments
import utils

QUEUE_FILE = 'queue.txt'
RUN_FILE = 'run.json'
MODEL_DIR = 'model'            # the tested weights, as trainer.restore_for_eval reads them
SNAPSHOT_DIR = 'checkpoint'    # the latest full checkpoint of an unfinished row
_STATE = 'checkpoint'          # TensorFlow's checkpoint state file
_RUN_FILES = ('config.json', 'validation.json', 'train.csv', 'curve.json')


class QueueError(Exception):
  """The queue file or a committed snapshot cannot be used; the message says what to do."""


def read_queue(results_dir: str) -> list[str]:
  """The rows of results/queue.txt in order (one per line; '#' starts a comment)."""
  path = os.path.join(results_dir, QUEUE_FILE)
  if not os.path.exists(path):
    raise QueueError(f'no queue file {path}: it lists one experiments-table row per line')
  rows = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      row = line.split('#', 1)[0].strip()
      if not row:
        continue
      if (row not in experiments.EXPERIMENTS and row not in experiments.RL_EXPERIMENTS
          and row not in experiments.L2L_EXPERIMENTS):
        raise QueueError(f'{path}:{number}: {row!r} is not a row of the experiments table')
      if row in rows:
        raise QueueError(f'{path}:{number}: {row} is queued twice')
      rows.append(row)
  return rows


def is_rl(row: str) -> bool:
  return row in experiments.RL_EXPERIMENTS


def is_l2l(row: str) -> bool:
  return row in experiments.L2L_EXPERIMENTS


def target_iterations(row: str) -> int:
  if is_l2l(row):
    return experiments.get_l2l(row).iterations
  return (experiments.get_rl(row).iterations if is_rl(row)
          else experiments.get(row).total_iterations)


def selection_rule(row: str, run_dir: str | None = None) -> str:
  """The rule that picks the tested checkpoint: the run's own config's, else the table row's."""
  path = os.path.join(run_dir, 'config.json') if run_dir else ''
  if is_l2l(row):  # the last iteration, whatever the run
    return experiments.get_l2l(row).selection_rule
  if os.path.exists(path):
    return experiments.config_type(row).from_dict(utils.read_json(path)).selection_rule
  return (experiments.get_rl(row) if is_rl(row) else experiments.get(row)).selection_rule


def run_info(results_dir: str, row: str) -> dict | None:
  path = os.path.join(results_dir, row, RUN_FILE)
  return utils.read_json(path) if os.path.exists(path) else None


def pending(results_dir: str) -> list[str]:
  """The queued rows whose results/<row>/run.json does not say done, in queue order."""
  return [r for r in read_queue(results_dir) if not (run_info(results_dir, r) or {}).get('done')]


def has_checkpoint(run_dir: str) -> bool:
  return _latest_iteration(run_dir) is not None


def _latest_iteration(directory: str) -> int | None:
  """The iteration of the newest ckpt-<N> in a directory's checkpoint state file, if any."""
  import tensorflow as tf
  path = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
  return int(path.rsplit('-', 1)[1]) if path else None


def _copy_checkpoint(src_dir: str, dst_dir: str, path: str | None = None) -> int:
  """Copies one checkpoint (default: the latest of src_dir) and a state file naming it; returns its
  iteration. The trainer keeps several checkpoints, so the one copied is not deleted under us."""
  import tensorflow as tf
  path = path or tf.train.latest_checkpoint(src_dir)
  if path is None:
    raise QueueError(f'no checkpoint in {src_dir}')
  os.makedirs(dst_dir, exist_ok=True)
  name = os.path.basename(path)
  for f in glob.glob(glob.escape(path) + '.*'):
    shutil.copy2(f, os.path.join(dst_dir, os.path.basename(f)))
  with open(os.path.join(dst_dir, _STATE), 'w') as f:
    f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
  return int(name.rsplit('-', 1)[1])


def _replace_dir(build, final: str) -> None:
  """Builds a directory next to `final` with build(tmp) and swaps it in, so an interrupted export or
  snapshot never leaves half a folder in results/."""
  parent = os.path.dirname(final)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix='.tmp-', dir=parent)
  try:
    build(tmp)
    if os.path.exists(final):
      old = final + '.old'
      shutil.rmtree(old, ignore_errors=True)
      os.replace(final, old)
      os.replace(tmp, final)
      shutil.rmtree(old)
    else:
      os.replace(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


# --- resuming from the committed snapshot ---------------------------------------------------------

def restore(results_dir: str, row: str, run_dir: str) -> int | None:
  """Copies results/<row>/checkpoint/ into run_dir if run_dir has no checkpoint; returns the iteration
  restored (None: nothing to restore, or run_dir is already further)."""
  snapshot = os.path.join(results_dir, row, SNAPSHOT_DIR)
  if not os.path.isdir(snapshot):
    return None
  have = _latest_iteration(run_dir)
  committed = _latest_iteration(snapshot)
  if committed is None:
    raise QueueError(f'{snapshot} holds no checkpoint; delete the folder to start {row} afresh')
  if have is not None and have >= committed:
    return None
  if have is not None:
    raise QueueError(f'{run_dir} is at iteration {have} and the committed snapshot at {committed}: '
                     f'move {run_dir} aside to resume from the snapshot, or delete the snapshot')
  os.makedirs(run_dir, exist_ok=True)
  for entry in os.listdir(snapshot):
    src = os.path.join(snapshot, entry)
    (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(run_dir, entry))
  return committed


def save_snapshot(results_dir: str, row: str, run_dir: str) -> int:
  """results/<row>/checkpoint/ <- run_dir's latest checkpoint (full: optimizer and data RNG too),
  its curves and its best model so far; replaces the previous snapshot. Returns the iteration."""
  if _latest_iteration(run_dir) is None:
    raise QueueError(f'{run_dir} has no checkpoint yet: nothing to save for {row}')

  def build(tmp):
    it = _copy_checkpoint(run_dir, tmp)
    for name in _RUN_FILES:
      if os.path.exists(os.path.join(run_dir, name)):
        shutil.copy2(os.path.join(run_dir, name), os.path.join(tmp, name))
    _drop_data_dir(os.path.join(tmp, 'config.json'))
    if _latest_iteration(os.path.join(run_dir, 'best')) is not None:
      # the best model so far is only ever evaluated, so its weights suffice (half the size)
      _export_model(row, run_dir, os.path.join(tmp, 'best'))
    build.iteration = it

  _replace_dir(build, os.path.join(results_dir, row, SNAPSHOT_DIR))
  _write_run_info(results_dir, row, trained=build.iteration, done=False,
                  rule=selection_rule(row, run_dir))
  _export_curves(run_dir, os.path.join(results_dir, row))
  return build.iteration


def _drop_data_dir(path: str) -> None:
  """Where one machine kept the data says nothing about the run (a runtime field; resume and
  evaluation take --data_dir, the learned-optimizer MNIST row --mnist_path)."""
  if os.path.exists(path):
    config = utils.read_json(path)
    config.pop('data_dir', None)
    config.pop('mnist_path', None)
    utils.write_json(path, config)


# --- exporting a finished row ---------------------------------------------------------------------

def _export_curves(run_dir: str, out_dir: str) -> None:
  """validation.csv (iteration, metric) and train.csv of the run, as far as it got."""
  val = os.path.join(run_dir, 'validation.json')
  if os.path.exists(val):
    data = utils.read_json(val)
    with open(os.path.join(out_dir, 'validation.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['iteration', f'{data["metric"]}_step{data["step"]}'])
      for it, value in sorted(data['curve'].items(), key=lambda kv: int(kv[0])):
        w.writerow([int(it), f'{value:.6g}'])
  if os.path.exists(os.path.join(run_dir, 'train.csv')):
    shutil.copy2(os.path.join(run_dir, 'train.csv'), os.path.join(out_dir, 'train.csv'))
  elif os.path.exists(os.path.join(run_dir, 'curve.json')):  # RL: returns per TRPO iteration
    curve = utils.read_json(os.path.join(run_dir, 'curve.json'))
    fields = ['iteration', 'pre_return', 'post_return', 'kl']
    with open(os.path.join(out_dir, 'train.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(fields)
      for c in curve:
        w.writerow([c['iteration']] + [('' if c.get(k) is None else f'{c[k]:.6g}') for k in fields[1:]])


def _export_model(row: str, run_dir: str, model_dir: str) -> int | None:
  """model_dir <- the weights of the checkpoint the row's selection rule picks; returns its iteration.
  RL checkpoints hold the policy and its RNG only, so they are copied as they are; the supervised
  ones are re-saved without the optimizer state and the data iterator."""
  if is_rl(row):
    if experiments.get_rl(row).method == 'random':
      return None
    return _copy_checkpoint(os.path.join(run_dir, 'best'), model_dir)
  if is_l2l(row):  # the LSTM optimizer's last checkpoint (phi and Adam's moments: a few kB)
    return _copy_checkpoint(run_dir, model_dir)
  import tensorflow as tf
  import trainer
  cfg = experiments.Config.load(run_dir)
  setup, path = trainer.restore_for_eval(cfg, run_dir)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(**trainer.trackables(setup)), model_dir,
                                       max_to_keep=1, checkpoint_name=trainer.CKPT_PREFIX)
  manager.save(checkpoint_number=int(setup.iteration))
  return int(setup.iteration)


def export(results_dir: str, row: str, run_dir: str, model_run_dir: str | None = None) -> dict:
  """results/<row>/ <- a trained and evaluated run: config, results, curves, tested weights, run.json.
  Removes the row's snapshot (the run is done). model_run_dir: the run whose model a model_from row
  evaluates (default run_dir)."""
  model_run_dir = model_run_dir or run_dir
  trained = _latest_iteration(model_run_dir) or 0
  if not os.path.isdir(os.path.join(run_dir, 'results')) and not (
      is_rl(row) and experiments.get_rl(row).method == 'random'):
    raise QueueError(f'{run_dir} has no results/: evaluate {row} before exporting it')
  out = os.path.join(results_dir, row)

  def build(tmp):
    if os.path.exists(os.path.join(model_run_dir, 'config.json')):
      shutil.copy2(os.path.join(model_run_dir, 'config.json'), os.path.join(tmp, 'config.json'))
      _drop_data_dir(os.path.join(tmp, 'config.json'))
    shutil.copytree(os.path.join(run_dir, 'results'), os.path.join(tmp, 'results'))
    _export_curves(model_run_dir, tmp)
    build.tested = _export_model(row, model_run_dir, os.path.join(tmp, MODEL_DIR))

  build.tested = None
  _replace_dir(build, out)
  return _write_run_info(results_dir, row, trained=trained, done=True, tested=build.tested,
                         rule=selection_rule(row, model_run_dir))


def _write_run_info(results_dir: str, row: str, *, trained: int, done: bool, rule: str,
                    tested: int | None = None) -> dict:
  if is_l2l(row):
    data_flag = ' --mnist_path=FILE' if experiments.get_l2l(row).problem == 'mnist' else ''
  else:
    data_flag = '' if is_rl(row) or experiments.get(row).datasource == 'sinusoid' else ' --data_dir=DIR'
  evaluate = ('' if is_rl(row) else ' --test_set=True')
  info = {
      'row': row, 'done': done, 'trained_iterations': trained, 'target_iterations': target_iterations(row),
      'selection_rule': rule, 'tested_iteration': tested,
      'train_command': f'bash scripts/continue_runs.sh  # or: python main.py --experiment={row}{data_flag}',
      'evaluate_command': (f'python main.py --experiment={row} --train=False{evaluate} '
                           f'--logdir={results_dir}{data_flag}'),
      'commit': utils.git_commit(),
  }
  utils.write_json(os.path.join(results_dir, row, RUN_FILE), info)
  return info


def status_lines(results_dir: str, run_dirs: dict[str, str]) -> list[str]:
  """One line per queued row: done, or how far it got (its run directory, else its snapshot)."""
  lines = []
  for row in read_queue(results_dir):
    info = run_info(results_dir, row) or {}
    target = target_iterations(row)
    if info.get('done'):
      lines.append(f'{row}: done, {info["trained_iterations"]} of {target} iterations, tested '
                   f'iteration {info["tested_iteration"]}')
      continue
    here = _latest_iteration(run_dirs[row]) if row in run_dirs else None
    committed = info.get('trained_iterations')
    reached = max([i for i in (here, committed) if i is not None], default=0)
    lines.append(f'{row}: {reached} of {target} iterations'
                 + (f' (committed snapshot: {committed})' if committed is not None else ''))
  return lines
