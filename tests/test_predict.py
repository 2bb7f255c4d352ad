"""Adapting a trained model to a user's own few labelled images (predict.py, main.py --predict).

The hook every method answers (Method.make_predict_fn), the worked example end to end (meta-train
the folder row on drawn glyphs by main.py, then --predict on classes it never saw), the README's
hand-drawn example with the committed Omniglot model, and one clear line for every bad input."""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import experiments
import methods
import predict
import synthetic_data
import trainer
from test_cli import ROOT, assert_clean_error, run_main

# One row per registered method (and Meta-SGD's learned step sizes), made small.
METHOD_ROWS = {
    'maml': 'omniglot_5way_1shot', 'meta_sgd': 'omniglot_5way_1shot_meta_sgd',
    'reptile': 'omniglot_5way_reptile', 'protonet': 'omniglot_5way_1shot_protonet',
    'matching': 'miniimagenet_5way_1shot_matching', 'finetune': 'miniimagenet_5way_1shot_finetune',
    'nearest_neighbor': 'miniimagenet_5way_1shot_nearest_neighbor',
    'siamese': 'omniglot_5way_1shot_siamese', 'relation': 'omniglot_5way_1shot_relation',
    'meta_lstm': 'miniimagenet_5way_1shot_meta_lstm',
    'metanet': 'omniglot_5way_1shot_metanet',
    'mann': 'omniglot_5way_1shot_mann',
}
HANDDRAWN = ROOT / 'examples' / 'handdrawn'
COMMITTED = ('--experiment=omniglot_5way_1shot_noconv', f'--logdir={ROOT / "results"}')


def test_every_registered_method_is_covered():
  covered = {methods.get(experiments.get(row)).name for row in METHOD_ROWS.values()}
  assert covered == set(methods.REGISTRY)


@pytest.mark.parametrize('key', list(METHOD_ROWS))
def test_every_method_adapts_and_gives_probabilities(key):
  """make_predict_fn on random inputs: [T, Q, N] probabilities; each query is predicted with the
  support set only (non-transductive), so its answer does not depend on the other queries."""
  # Relation networks score a task's queries together (their evaluation refuses the other way);
  # so do Meta Networks' rows (their bodies may batch-normalize the queries together).
  alone_too = key not in ('relation', 'metanet')
  cfg = experiments.get(METHOD_ROWS[key]).replace(num_filters=4, transductive=not alone_too)
  setup = trainer.build(cfg)
  steps = cfg.report_step if setup.method.inner_loop else 0
  fn = setup.method.make_predict_fn(setup.learner, min(steps, 3))
  rng = np.random.default_rng(0)
  shape = (28, 28, 1) if cfg.datasource == 'omniglot' else (84, 84, 3)
  n, k, q = cfg.num_classes, 2, 3
  support_x = tf.constant(rng.uniform(0, 1, (1, n * k, *shape)), tf.float32)
  support_y = tf.one_hot(np.tile(np.arange(n), k)[None], n)
  query_x = tf.constant(rng.uniform(0, 1, (1, q, *shape)), tf.float32)
  lr = tf.constant(predict.step_size(cfg, 0.01 if cfg.test_update_lr_grid else None))
  p = np.asarray(fn(support_x, support_y, query_x, lr))
  assert p.shape == (1, q, n) and np.isfinite(p).all()
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  if alone_too:
    alone = np.asarray(fn(support_x, support_y, query_x[:, :1], lr))
    np.testing.assert_allclose(alone[0, 0], p[0, 0], atol=1e-5)
  if key == 'nearest_neighbor':  # a support image is its own nearest neighbour
    own = np.asarray(fn(support_x, support_y, support_x[:, :n], lr))
    assert (own[0].argmax(-1) == np.arange(n)).all()


# --- the worked example: a folder of glyphs, meta-trained, then adapted to new ones -----------------

TRAIN_FLAGS = ('--datasource=folder', '--image_size=28', '--grey=True', '--invert=True',
               '--num_filters=16', '--query_size=2')


def split_examples(source: pathlib.Path, dst: pathlib.Path, shots: int) -> None:
  """dst/support/<class>/ (the first `shots` images) and dst/query/<class>/ (the rest)."""
  for folder in sorted(source.iterdir()):
    files = sorted(folder.iterdir())
    for part, chosen in (('support', files[:shots]), ('query', files[shots:])):
      (dst / part / folder.name).mkdir(parents=True)
      for f in chosen:
        shutil.copy(f, dst / part / folder.name / f.name)


def test_meta_train_a_folder_then_adapt_to_new_classes(tmp_path, monkeypatch):
  """The two commands of docs/your-own-data.md: 200 meta-updates on 30 glyph classes, then
  --predict on 5 glyph classes never seen, 1 image each: well above chance (20%)."""
  monkeypatch.setenv('MAML_TFDS_DIR', str(tmp_path / 'tfds'))
  data = synthetic_data.make_folder_dataset(tmp_path / 'glyphs', classes=30, per_class=6)
  logdir = f'--logdir={tmp_path / "logs"}'
  trained = run_main(*TRAIN_FLAGS, f'--data_dir={data}', logdir, '--metatrain_iterations=200',
                     '--val_every=100', '--num_val_tasks=20', '--print_every=100',
                     '--checkpoint_every=100', timeout=300)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert 'training done: iteration 200' in trained.stderr

  mine = synthetic_data.make_folder_dataset(tmp_path / 'new', classes=5, per_class=6,
                                            first_label=100)
  split_examples(mine, tmp_path / 'mine', shots=1)
  out = tmp_path / 'predictions.json'
  proc = run_main(*TRAIN_FLAGS, logdir, '--predict', f'--support_dir={tmp_path / "mine/support"}',
                  f'--query={tmp_path / "mine/query"}', f'--predict_out={out}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result['steps'] == 10 and result['update_lr'] == 0.01 and not result['transductive']
  assert result['classes'] == [f'glyph{i}' for i in range(100, 105)]
  predictions = result['predictions']
  assert len(predictions) == 25
  right = [pathlib.Path(p['query']).parent.name == p['predicted'] for p in predictions]
  assert np.mean(right) >= 0.5, proc.stdout  # chance: 0.2
  assert f'accuracy {100 * np.mean(right):.1f}% ({sum(right)} of 25' in proc.stdout
  for p in predictions:  # printed, one line each
    assert re.search(rf'^{re.escape(p["query"])}\s+{p["predicted"]}\s', proc.stdout, re.M)

  # The same from Python, arrays in and probabilities out, and as CSV.
  run_dir = tmp_path / 'logs' / 'folder_5way_1shot.num_filters16.query_size2.image_size28.greyTrue.invertTrue'
  predictor = predict.Predictor.from_run(str(run_dir))
  support = sorted((tmp_path / 'mine/support').glob('*/*'))
  queries = [pathlib.Path(p['query']) for p in predictions]
  probabilities = predictor.probabilities(predictor.read_images(support), np.arange(5),
                                          predictor.read_images(queries))
  expected = [[p['probabilities'][c] for c in result['classes']] for p in predictions]
  np.testing.assert_allclose(probabilities, expected, atol=1e-3)
  with pytest.raises(ValueError, match='must label each of the 5 classes'):
    predictor.probabilities(predictor.read_images(support), np.array([0, 1, 2, 3, 3]),
                            predictor.read_images(queries))
  csv_out = tmp_path / 'predictions.csv'  # predict.run, as --predict calls it, in this process
  predict.run(predictor.cfg, str(run_dir), support_dir=str(tmp_path / 'mine/support'),
              queries=[str(queries[0])], out_path=str(csv_out))
  header, row = csv_out.read_text().splitlines()
  assert header == 'query,predicted,' + ','.join(result['classes'])
  assert row.split(',')[:2] == [str(queries[0]), predictions[0]['predicted']]


# --- the README's example: the committed Omniglot model and examples/handdrawn --------------------

def readme_predict_output() -> list[str]:
  """The output the README prints under its --predict command (the ```text block after it)."""
  text = (ROOT / 'README.md').read_text()
  block = re.search(r'--predict .*?\n```\n+```text\n(.*?)```', text, re.S)
  assert block, 'README.md shows no output of a --predict command'
  return block.group(1).splitlines()


def test_the_readme_handdrawn_example_gives_the_printed_output():
  proc = run_main(*COMMITTED, '--predict', '--support_dir=examples/handdrawn/support',
                  '--query=examples/handdrawn/query')
  assert proc.returncode == 0, proc.stderr[-3000:]
  got, printed = proc.stdout.splitlines(), readme_predict_output()
  assert len(got) == len(printed) and got[:2] == printed[:2] and got[-1] == printed[-1], proc.stdout
  for line, shown in zip(got[2:-1], printed[2:-1]):  # the same answers; probabilities to 0.02
    words, seen = line.split(), shown.split()
    assert words[:2] == seen[:2], (line, shown)
    np.testing.assert_allclose([float(w) for w in words[2:]], [float(w) for w in seen[2:]],
                               atol=0.02)


def test_the_handdrawn_examples_are_small_and_as_the_script_draws_them(tmp_path):
  files = sorted(HANDDRAWN.rglob('*.png'))
  assert len(files) == 20 and sum(f.stat().st_size for f in files) < 20_000
  proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'draw_handdrawn.py'),
                         f'--out={tmp_path}'], capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  for f in files:  # the pixels: PNG bytes may differ with the zlib version
    redrawn = np.asarray(Image.open(tmp_path / f.relative_to(HANDDRAWN)))
    assert (redrawn == np.asarray(Image.open(f))).all(), f


# --- one clear line for every bad input ------------------------------------------------------------

@pytest.mark.parametrize('case', ['wrong class count', 'unequal K', 'unreadable query',
                                  'missing query', 'bad out file', 'without --predict',
                                  'a test K'])
def test_a_bad_prediction_input_stops_with_one_clear_line(tmp_path, case):
  support = tmp_path / 'support'
  shutil.copytree(HANDDRAWN / 'support', support)
  flags = ['--predict', f'--support_dir={support}', f'--query={HANDDRAWN / "query"}']
  if case == 'wrong class count':
    shutil.rmtree(support / 'spiral')
    match = f'{support} holds 4 class folders; the model is 5-way'
  elif case == 'unequal K':
    shutil.copy(support / 'eye' / '1.png', support / 'eye' / '2.png')
    match = 'must have the same number of images (K): arrow 1, eye 2'
  elif case == 'unreadable query':
    (tmp_path / 'q.png').write_text('not an image')
    flags[-1] = f'--query={tmp_path / "q.png"}'
    match = f'{tmp_path / "q.png"} is not an image Pillow can read'
  elif case == 'missing query':
    flags = flags[:-1]
    match = '--predict needs --query'
  elif case == 'bad out file':
    flags.append(f'--predict_out={tmp_path / "out.txt"}')
    match = 'name a .json or .csv file'
  elif case == 'a test K':  # K comes from the support folders
    flags.append('--update_batch_size=5')
    match = '--predict takes K from --support_dir'
  else:
    flags = flags[1:]
    match = '--support_dir --query: read by --predict only'
  assert_clean_error(run_main(*COMMITTED, *flags), match)
