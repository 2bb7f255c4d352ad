"""The run queue (run_queue.py): a run resumed from its committed snapshot continues exactly, and an
exported results/<row>/ re-evaluates to the same numbers. Small sinusoid runs, seconds each."""

import csv
import json
import pathlib
import shutil

import pytest

import experiments
import run_queue
import trainer

ROW = 'sinusoid_maml'


def small(**changes):
  """A 40-iteration sinusoid row that validates, so the snapshot carries a curve and a best model."""
  return experiments.get(ROW).replace(**{
      'metatrain_iterations': 40, 'checkpoint_every': 10, 'summary_every': 5, 'print_every': 20,
      'val_every': 10, 'num_val_tasks': 20, 'num_test_tasks': 20, 'eval_shots': (5,),
      'jit_compile': False, **changes})


def losses(run_dir):
  with open(run_dir / trainer.TRAIN_CURVE, newline='') as f:
    return [tuple(r.values()) for r in csv.DictReader(f)]


def queue_dir(tmp_path, *rows):
  results = tmp_path / 'results'
  results.mkdir()
  (results / run_queue.QUEUE_FILE).write_text('# a comment line\n' + '\n'.join(rows) + '\n')
  return results


def test_a_run_resumed_from_the_committed_snapshot_continues_with_the_uninterrupted_losses(tmp_path):
  results = queue_dir(tmp_path, ROW)
  trainer.train(small(), str(tmp_path / 'uninterrupted'))

  first = tmp_path / 'machine1' / ROW
  trainer.train(small(metatrain_iterations=20), str(first))  # the machine goes away at 20...
  assert run_queue.save_snapshot(str(results), ROW, str(first)) == 20
  info = run_queue.run_info(str(results), ROW)
  assert not info['done'] and info['trained_iterations'] == 20 and info['target_iterations'] == experiments.get(ROW).total_iterations
  assert run_queue.pending(str(results)) == [ROW]
  snapshot_config = json.loads((results / ROW / run_queue.SNAPSHOT_DIR / 'config.json').read_text())
  assert 'data_dir' not in snapshot_config  # no machine's path is committed
  shutil.rmtree(tmp_path / 'machine1')

  second = tmp_path / 'machine2' / ROW  # ...and a fresh clone resumes from what was committed
  assert run_queue.restore(str(results), ROW, str(second)) == 20
  assert run_queue.restore(str(results), ROW, str(second)) is None  # never over a run in progress
  trainer.train(small(), str(second))

  assert losses(second) == losses(tmp_path / 'uninterrupted')
  assert [r[0] for r in losses(second)] == [str(i) for i in range(5, 45, 5)]
  a = json.loads((tmp_path / 'uninterrupted' / trainer.VAL_FILE).read_text())
  b = json.loads((second / trainer.VAL_FILE).read_text())
  assert a == b and len(a['curve']) == 4
  assert run_queue._latest_iteration(str(second / trainer.BEST_DIR)) == run_queue._latest_iteration(
      str(tmp_path / 'uninterrupted' / trainer.BEST_DIR))


def test_export_holds_the_tested_weights_and_reevaluates_to_the_same_results(tmp_path):
  results = queue_dir(tmp_path, ROW)
  run_dir = tmp_path / 'runs' / ROW
  cfg = small()
  trainer.train(cfg, str(run_dir))
  [before] = trainer.evaluate(cfg, str(run_dir), split='test')
  info = run_queue.export(str(results), ROW, str(run_dir))
  assert info['done'] and info['trained_iterations'] == 40
  assert info['tested_iteration'] == before['iteration']
  assert info['selection_rule'] == cfg.selection_rule == before['selection_rule']
  assert 'highest' not in cfg.selection_rule and 'lowest validation mse' in cfg.selection_rule
  out = results / ROW
  assert 'data_dir' not in json.loads((out / 'config.json').read_text())
  assert (out / 'validation.csv').read_text().startswith('iteration,mse_step10\n10,')
  assert losses(out) == losses(run_dir)
  assert not (out / run_queue.SNAPSHOT_DIR).exists() and run_queue.pending(str(results)) == []
  # weights only: a model/ checkpoint without the optimizer's slots is a fraction of a training one
  model_bytes = sum(p.stat().st_size for p in (out / 'model').glob('ckpt-*'))
  train_bytes = sum(p.stat().st_size for p in run_dir.glob(f'ckpt-{before["iteration"]}.*'))
  assert model_bytes < train_bytes / 2

  shutil.rmtree(run_dir)  # re-evaluated from results/ alone, as a user would
  saved = experiments.Config.load(str(out))
  [again] = trainer.evaluate(saved.replace(**{f: getattr(cfg, f) for f in ('num_test_tasks', 'eval_shots')}),
                             str(out), split='test')
  for key in ('mean', 'ci95', 'median', 'tasks_sha256', 'iteration', 'update_lr', 'selection_rule'):
    assert again[key] == before[key], key


def test_queue_file_errors_name_the_line(tmp_path):
  results = queue_dir(tmp_path, ROW, 'no_such_row')
  with pytest.raises(run_queue.QueueError, match=r'queue.txt:3: .no_such_row. is not a row'):
    run_queue.read_queue(str(results))
  (results / run_queue.QUEUE_FILE).write_text(f'{ROW}\n{ROW}  # again\n')
  with pytest.raises(run_queue.QueueError, match='queue.txt:2: sinusoid_maml is queued twice'):
    run_queue.read_queue(str(results))
  with pytest.raises(run_queue.QueueError, match='no queue file'):
    run_queue.read_queue(str(tmp_path))


def test_the_committed_queue_names_rows_of_the_table():
  rows = run_queue.read_queue(str(pathlib.Path(run_queue.__file__).parent / 'results'))
  assert set(rows[:4]) == set(experiments.SINUSOID_ROWS)  # the minutes-long rows first
  assert 'omniglot_20way_1shot' in rows
