"""The folder datasource: a user's folder of classes, its layouts, its cache, its episodes, and one
clear line for every bad folder (main.py as a subprocess). No real data: the folders are drawn
by synthetic_data.make_folder_dataset in each test's temporary folder."""

import pathlib

import numpy as np
import pytest

import data_generator
import experiments
import image_datasets
from image_datasets import DataError, FolderSpec
import synthetic_data
from test_cli import assert_clean_error, run_main

SPEC = FolderSpec(image_size=28, grey=True)
ROW = experiments.get('folder_5way_1shot')


def folder_row(data_dir, **changes):
  """The folder row on `data_dir` as tests read it: 28x28 grey drawings."""
  return ROW.replace(data_dir=str(data_dir), image_size=28, grey=True, invert=True, **changes)


def test_class_folders_are_split_by_a_seeded_shuffle(tmp_path):
  root = synthetic_data.make_folder_dataset(tmp_path / 'glyphs', classes=25, per_class=2)
  index = image_datasets.folder_index(root, SPEC)
  assert index.layout == 'class folders'
  sizes = {s: len(index.splits[s]) for s in image_datasets.SPLITS}
  assert sizes == {'train': 16, 'val': 4, 'test': 5}  # round(25 * 0.64), round(25 * 0.16), rest
  names = [n for s in image_datasets.SPLITS for n in index.splits[s]]
  assert sorted(names) == [f'glyph{i:02d}' for i in range(25)]
  assert index.splits == image_datasets.folder_index(root, SPEC).splits  # seeded
  other = image_datasets.folder_index(root, FolderSpec(28, True, split_seed=1))
  assert other.splits['train'].keys() != index.splits['train'].keys()
  halves = image_datasets.folder_index(root, FolderSpec(28, True, 0.5, 0.2))
  assert [len(halves.splits[s]) for s in image_datasets.SPLITS] == [12, 5, 8]


def test_split_folders_and_split_csvs_give_the_splits(tmp_path):
  nested = tmp_path / 'nested'
  for split, first in (('train', 0), ('val', 10), ('test', 20)):
    synthetic_data.make_folder_dataset(nested / split, classes=3, per_class=2, first_label=first)
  index = image_datasets.folder_index(nested, SPEC)
  assert index.layout == 'split folders'
  assert list(index.splits['val']) == ['val/glyph10', 'val/glyph11', 'val/glyph12']

  flat = synthetic_data.make_folder_dataset(tmp_path / 'flat', classes=6, per_class=3)
  (flat / 'splits').mkdir()
  for split, labels in (('train', (0, 1, 2)), ('val', (3,)), ('test', (4, 5))):
    rows = ['filename,label'] + [f'{p.name},glyph{label:02d}' for label in labels
                                 for p in sorted((flat / f'glyph{label:02d}').iterdir())[:2]]
    (flat / 'splits' / f'{split}.csv').write_text('\n'.join(rows) + '\n')
  index = image_datasets.folder_index(flat, SPEC)
  assert index.layout == 'split CSVs'
  assert list(index.splits['test']) == ['glyph04', 'glyph05']
  assert [len(v) for v in index.splits['train'].values()] == [2, 2, 2]  # the CSVs' images only


def test_a_folder_is_prepared_once_and_again_when_it_changes(tmp_path):
  root = synthetic_data.make_folder_dataset(tmp_path / 'glyphs', classes=10, per_class=3)
  tfds_dir = tmp_path / 'tfds'
  first = image_datasets.load_split('folder', 'train', root, tfds_dir, SPEC)
  assert first.images.shape[1:] == (28, 28, 1) and first.images.dtype == np.uint8
  assert first.num_classes == 6 and list(first.counts) == [3] * 6
  builder = image_datasets.prepare('folder', root, tfds_dir, SPEC)
  assert image_datasets.load_split('folder', 'train', root, tfds_dir, SPEC) is first  # cached
  # Transparent, colour and JPEG drawings all read as dark strokes on white paper.
  paper = np.median(first.images, axis=(1, 2, 3))
  assert (paper == 255).all(), paper
  # One more drawing: a new key, so the folder is prepared again and the class has it.
  synthetic_data.glyph_image(first.class_ids[0], 9).save(
      root / first.class_names[0] / '09.png')
  again = image_datasets.prepare('folder', root, tfds_dir, SPEC)
  assert again.data_dir != builder.data_dir
  assert image_datasets.load_split('folder', 'train', root, tfds_dir, SPEC).counts[0] == 4
  colour = image_datasets.load_split('folder', 'val', root, tfds_dir, FolderSpec(20, False))
  assert colour.images.shape[1:] == (20, 20, 3)


def test_folder_episodes_come_from_the_row(tmp_path, monkeypatch):
  root = synthetic_data.make_folder_dataset(tmp_path / 'glyphs', classes=12, per_class=4)
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))
  cfg = folder_row(root, query_size=2, meta_batch_size=3)
  sampler = data_generator.make_sampler(cfg, 'train')
  episode = sampler.sample(3, 5, 10)
  assert episode.support_x.shape == (3, 5, 28, 28, 1) and episode.query_y.shape == (3, 10, 5)
  # Inverted (strokes 1) and not rotated: only Omniglot rotates its classes.
  assert float(np.median(episode.support_x)) == 0.0 and not sampler.rotate


# --- one clear line for every bad folder (main.py as a user runs it) ------------------------------

def train_on(data_dir, tmp_path, *flags):
  return run_main('--datasource=folder', *([f'--data_dir={data_dir}'] if data_dir else []),
                  '--image_size=28', '--grey=True', f'--logdir={tmp_path / "logs"}',
                  '--metatrain_iterations=1', *flags)


@pytest.fixture
def env_tfds(tmp_path, monkeypatch):
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tmp_path / 'tfds'))


@pytest.mark.usefixtures('env_tfds')
@pytest.mark.parametrize('case', ['missing data_dir', 'no folder', 'fewer classes than N',
                                  'too few images', 'unreadable image', 'empty split',
                                  'images outside class folders'])
def test_a_bad_folder_stops_with_one_clear_line(tmp_path, case):
  root = tmp_path / 'data'
  flags = []
  if case == 'missing data_dir':
    root, match = None, 'the folder datasource needs --data_dir=DIR'
  elif case == 'no folder':
    match = f'no folder {root}: --data_dir must be a folder'
  elif case == 'fewer classes than N':  # 6 classes: 4 train classes for 5-way tasks
    synthetic_data.make_folder_dataset(root, classes=6, per_class=3)
    flags, match = ['--query_size=1'], 'the folder train split has 4 classes; 5-way tasks need 5'
  elif case == 'too few images':  # the row's 15 queries per class need 16 images
    synthetic_data.make_folder_dataset(root, classes=12, per_class=3)
    match = 'has 3 images; a task needs K + Q = 1 + 15 = 16'
  elif case == 'unreadable image':
    synthetic_data.make_folder_dataset(root, classes=12, per_class=3)
    (root / 'glyph03' / 'scan.png').write_bytes(b'not a png')
    match = f'{root / "glyph03" / "scan.png"} is not an image Pillow can read'
  elif case == 'empty split':  # 3 classes: none left for validation
    synthetic_data.make_folder_dataset(root, classes=3, per_class=3)
    match = f'the val split of {root} is empty'
  else:
    synthetic_data.make_folder_dataset(root, classes=8, per_class=2)
    synthetic_data.glyph_image(0, 0).save(root / 'stray.png')
    match = f'{root} holds images directly (stray.png)'
  assert_clean_error(train_on(root, tmp_path, *flags), match)
