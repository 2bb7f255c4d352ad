"""A few training iterations and an evaluation of the Table 1 rows on the real data.

The default run covers Omniglot 5-way 1-shot; `-m slow` runs every image row (MiniImagenet needs its
0.9 GB cache). Skipped, with the reason, where ../shared/data (or $MAML_SHARED_DATA) is absent.
"""

import os
import pathlib

import numpy as np
import pytest

import experiments
import trainer

# One test process takes every real-data test (test_image_data.py too), so Omniglot is prepared once.
pytestmark = pytest.mark.xdist_group('real_data')
ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('MAML_SHARED_DATA') or ROOT.parent / 'shared' / 'data')
DATA = {'omniglot': SHARED / 'omniglot', 'miniimagenet': SHARED / 'miniimagenet'}


@pytest.fixture(scope='module')
def tfds_cache(tfds_dir):
  """The session's tfds cache (conftest.py) for the trainer, so each dataset is prepared once."""
  old = os.environ.get('MAML_TFDS_DIR')
  os.environ['MAML_TFDS_DIR'] = str(tfds_dir)
  yield tfds_dir
  if old is None:
    del os.environ['MAML_TFDS_DIR']
  else:
    os.environ['MAML_TFDS_DIR'] = old


def train_and_test(name: str, tmp_path, **changes) -> list[dict]:
  """Three meta-updates (meta-batch 2), one validation, and a 4-task test at every K of the row."""
  cfg = experiments.get(name)
  if not DATA[cfg.datasource].exists():
    pytest.skip(f'real data absent: {DATA[cfg.datasource]} (set MAML_SHARED_DATA)')
  # Classifier baselines train a classifier (pretrain_iterations) and never meta-validate.
  iterations = (dict(pretrain_iterations=3, val_every=0) if cfg.baseline else
                dict(metatrain_iterations=3, val_every=3))
  cfg = cfg.replace(meta_batch_size=2, num_val_tasks=2, num_test_tasks=4, eval_chunk=2,
                    print_every=1, checkpoint_every=3, data_dir=str(DATA[cfg.datasource]),
                    **iterations, **changes)
  trainer.train(cfg, str(tmp_path))
  results = trainer.evaluate(cfg, str(tmp_path), split='test')
  assert [r['shots'] for r in results] == list(cfg.eval_shots)
  for r in results:
    assert r['iteration'] == 3 and r['num_tasks'] == 4 and r['metric'] == 'accuracy'
    assert len(r['mean']) == cfg.test_num_updates + 1
    assert all(0 <= m <= 100 for m in r['mean']) and np.all(np.isfinite(r['ci95']))
    assert [p['step'] for p in r['published']] == [
        p.step for p in cfg.published if p.shots == r['shots'] and p.step <= cfg.test_num_updates
        and p.transductive == cfg.transductive]
  return results


def test_omniglot_5way_1shot_trains_and_evaluates(tfds_cache, tmp_path):
  train_and_test('omniglot_5way_1shot', tmp_path, eval_shots=(1,))  # K=5 in the slow run


@pytest.mark.slow  # ANIL's inner loop: tests/methods/test_variants.py; ~25 s here
def test_anil_row_trains_and_evaluates(tfds_cache, tmp_path):
  train_and_test('omniglot_20way_1shot_anil', tmp_path, eval_shots=(1,), test_num_updates=5)


# The default run keeps Reptile, whose evaluation has a second mode (~35 s); the others (20-50 s
# each) run with -m slow, beside every row's default settings below. MAML++'s phases (first-order
# iterations, multi-step loss epochs) are also trained on fake data in test_variants.py.
@pytest.mark.parametrize('name,changes', [
    ('omniglot_5way_reptile', dict(test_num_updates=3, report_step=3)),
    pytest.param('omniglot_5way_1shot_meta_sgd', dict(task_chunk=1),  # a task at a time
                 marks=pytest.mark.slow),
    pytest.param('omniglot_5way_1shot_maml_plus_plus',
                 dict(first_order_iterations=2, epoch_iterations=1), marks=pytest.mark.slow),
    pytest.param('omniglot_5way_1shot_protonet', {}, marks=pytest.mark.slow),
    pytest.param('omniglot_5way_1shot_matching', {}, marks=pytest.mark.slow),  # FCE: test_metric_learning
])
def test_every_method_trains_and_evaluates_on_omniglot(tfds_cache, tmp_path, name, changes):
  """Reptile (both evaluation modes), Meta-SGD, MAML++ (through its first-order phase and the
  multi-step loss epochs), ProtoNets and Matching networks."""
  results = train_and_test(name, tmp_path, eval_shots=(1,), **changes)
  if name == 'omniglot_5way_reptile':
    cfg = experiments.Config.load(str(tmp_path)).replace(transductive=True)
    again = trainer.evaluate(cfg, str(tmp_path), split='test')
    assert os.path.exists(tmp_path / 'results' / 'test_K1_nontransductive.json')
    assert os.path.exists(tmp_path / 'results' / 'test_K1.json')
    assert again[0]['tasks_sha256'] == results[0]['tasks_sha256']  # the same tasks either way


@pytest.mark.slow
@pytest.mark.parametrize('name', experiments.OMNIGLOT_ROWS + experiments.MINIIMAGENET_ROWS + tuple(
    row for rows in experiments.METHOD_ROWS.values() for row in rows))
def test_every_image_row_trains_and_evaluates(tfds_cache, tmp_path, name):
  train_and_test(name, tmp_path)
