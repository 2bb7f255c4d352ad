"""Omniglot and MiniImagenet: preparation, splits, preprocessing, episodes, resuming, errors.

Runs on the real data in <repo>/../shared/data (or $MAML_SHARED_DATA) and skips what is absent.
Omniglot is prepared once per session into a temporary tfds dir (~5 s); MiniImagenet from its val.zip
only (800 images); the full MiniImagenet preparation is marked slow.
"""

import importlib.util
import io
import os
import pathlib
import random
import shutil
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import data_generator
from data_generator import ImageTasks
import experiments
import image_datasets
from image_datasets import DataError

# One test process takes every real-data test (test_image_rows.py too), so Omniglot is prepared once.
pytestmark = pytest.mark.xdist_group('real_data')
ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('MAML_SHARED_DATA') or ROOT.parent / 'shared' / 'data')
OMNIGLOT = SHARED / 'omniglot'
MINI = SHARED / 'miniimagenet'


def _need(path: pathlib.Path, *files: str) -> pathlib.Path:
  missing = [f for f in files if not (path / f).exists()]
  if missing:
    pytest.skip(f'real data absent: {path} lacks {", ".join(missing)} (set MAML_SHARED_DATA)')
  return path


@pytest.fixture(scope='session')
def omniglot(tfds_dir):
  """{split: ClassImages} of the real Omniglot, prepared once into the session's tfds dir."""
  _need(OMNIGLOT, *image_datasets.OMNIGLOT_ZIPS)
  return {s: image_datasets.load_split('omniglot', s, OMNIGLOT, tfds_dir)
          for s in image_datasets.SPLITS}


@pytest.fixture(scope='session')
def mini_val(tfds_dir, tmp_path_factory):
  """The MiniImagenet val split prepared from the CSVs and val.zip only (the other splits absent)."""
  _need(MINI, 'splits/train.csv', 'images/val.zip')
  source = tmp_path_factory.mktemp('mini_val_source')
  shutil.copytree(MINI / 'splits', source / 'splits')
  (source / 'images').mkdir()
  shutil.copyfile(MINI / 'images' / 'val.zip', source / 'images' / 'val.zip')
  cache = tfds_dir / 'mini_val_only'
  return image_datasets.load_split('miniimagenet', 'val', source, cache), source, cache


def _tasks(data, n=5, k=1, q=1, t=4, seed=(0, 0), **kw):
  omni = data.datasource == 'omniglot'
  return ImageTasks(data, num_classes=n, shots=k, queries=q, meta_batch_size=t, seed=seed,
                    rotate=kw.get('rotate', omni), invert=omni)


def _assert_episodes_equal(a, b):
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- Omniglot: splits and preprocessing -----------------------------------------------------------

def test_omniglot_split_sizes_disjoint_and_seeded_as_the_original(omniglot):
  ids = {s: set(d.class_ids.tolist()) for s, d in omniglot.items()}
  assert {s: len(v) for s, v in ids.items()} == {'train': 1100, 'val': 100, 'test': 423}
  assert not ids['train'] & ids['val'] and not ids['train'] & ids['test']
  assert not ids['val'] & ids['test']
  assert set.union(*ids.values()) == set(range(1623))
  order = list(range(1623))
  random.Random(1).shuffle(order)  # the original: random.seed(1); random.shuffle(all characters)
  assert ids['train'] == set(order[:1100]) and ids['val'] == set(order[1100:1200])
  assert all((d.counts == 20).all() for d in omniglot.values())


def test_omniglot_global_ids_follow_zip_alphabet_character_order(omniglot):
  names = {int(i): n for d in omniglot.values() for i, n in zip(d.class_ids, d.class_names)}
  assert names[0] == 'Alphabet_of_the_Magi/character01'
  assert names[963].startswith('Tifinagh/') and names[964] == 'Angelic/character01'
  assert names[1622].startswith('ULOG/')


def test_omniglot_images_are_the_original_preprocessing(omniglot):
  data = omniglot['train']
  assert data.images.dtype == np.uint8 and data.images.shape == (22000, 28, 28, 1)
  # Class 0 of the split is global id 0: Alphabet_of_the_Magi/character01, drawings 0709_01.. sorted.
  with zipfile.ZipFile(OMNIGLOT / 'images_background.zip') as z:
    png = z.read('images_background/Alphabet_of_the_Magi/character01/0709_01.png')
  im = Image.open(io.BytesIO(png))
  want = np.asarray(im.resize((28, 28), resample=Image.LANCZOS).convert('L'))
  np.testing.assert_array_equal(data.class_images(0)[0, :, :, 0], want)
  assert set(np.unique(data.images)) == {0, 255}  # 1-bit drawings: PIL resizes mode '1' by NEAREST


def test_omniglot_episode_images_are_inverted_rotations_of_the_stored_images(omniglot):
  data = omniglot['val']
  sampler = _tasks(data, n=5, k=2, q=3)
  episode = sampler.tasks(0, 40)
  x = np.concatenate([episode.support_x, episode.query_x], 1)
  y = np.concatenate([episode.support_y, episode.query_y], 1).argmax(-1)
  assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
  assert set(np.unique(x)) == {0.0, 1.0} and (x == 0).mean() > 0.8  # background 0, strokes 1
  seen_turns = set()
  for i in range(40):
    plan = {k: v.numpy() for k, v in sampler.plan(i).items()}
    stored = data.images[plan['images']]
    for j in range(len(stored)):
      turns = plan['turns'][plan['labels'][j]]
      want = 1.0 - np.rot90(stored[j], turns, axes=(0, 1)) / 255.0
      np.testing.assert_array_equal(x[i, j], want.astype(np.float32))
      assert y[i, j] == plan['labels'][j]
    seen_turns.update(plan['turns'].tolist())
    assert np.array_equal(episode.task[i], data.class_ids[plan['classes']])
  assert seen_turns == {0, 1, 2, 3}


# --- episodes -------------------------------------------------------------------------------------

@pytest.mark.parametrize('n,k,q,t', [(5, 1, 1, 32), (20, 1, 1, 16), (5, 2, 3, 4)])
def test_episode_shapes_and_label_balance(omniglot, n, k, q, t):
  sampler = _tasks(omniglot['train'], n, k, q, t)
  ep = sampler.sample(t, n * k, n * q)
  assert tuple(ep.support_x.shape) == (t, n * k, 28, 28, 1) and ep.support_x.dtype == tf.float32
  assert tuple(ep.support_y.shape) == (t, n * k, n) and ep.support_y.dtype == tf.float32
  assert tuple(ep.query_x.shape) == (t, n * q, 28, 28, 1) and tuple(ep.query_y.shape) == (t, n * q, n)
  assert tuple(ep.task.shape) == (t, n) and ep.task.dtype == tf.int32
  np.testing.assert_array_equal(ep.support_y.numpy().sum(1), k)  # each label K times
  np.testing.assert_array_equal(ep.query_y.numpy().sum(1), q)
  assert set(np.unique(ep.support_y)) == {0.0, 1.0}
  task = ep.task.numpy()
  assert all(len(set(row)) == n for row in task) and np.isin(task, omniglot['train'].class_ids).all()


def test_labels_are_shuffled_and_support_query_images_distinct(omniglot):
  sampler = _tasks(omniglot['val'], n=5, k=5, q=10)
  first_class_label = []
  for i in range(30):
    plan = {k: v.numpy() for k, v in sampler.plan(i).items()}
    assert len(set(plan['images'])) == len(plan['images'])  # K + Q distinct images, no overlap
    first_class_label.append(plan['labels'][0])
    assert len(set(plan['classes'])) == 5
  assert len(set(first_class_label)) > 1  # slot order reshuffled per task, as the original
  ep = sampler.tasks(0, 30)
  # The smallest class id lands on every label across tasks: labels are a fresh permutation.
  assert len(set(np.argmin(ep.task.numpy(), 1))) == 5


def test_determinism_and_task_i_independent_of_batching(omniglot):
  data = omniglot['test']
  a, b = _tasks(data, t=2, seed=(3, 0)), _tasks(data, t=3, seed=(3, 0))
  stream_a = [a.sample(2, 5, 5) for _ in range(3)]
  stream_b = [b.sample(3, 5, 5) for _ in range(2)]
  cat = lambda eps: [np.concatenate([np.asarray(e[f]) for e in eps]) for f in range(5)]
  _assert_episodes_equal(cat(stream_a), cat(stream_b))
  _assert_episodes_equal(cat(stream_a), a.tasks(0, 6))
  _assert_episodes_equal(cat(stream_a)[4][2:], a.tasks(2, 4).task)
  other = _tasks(data, t=2, seed=(4, 0)).sample(2, 5, 5)
  assert not np.array_equal(other.support_x, stream_a[0].support_x)


def test_fixed_task_chunks_give_the_same_tasks_at_every_call(omniglot):
  """Meta-validation's tasks: image tasks rebuilt from their indices, sinusoid tasks drawn once."""
  sampler = _tasks(omniglot['val'], t=2, seed=(1, 1))
  tasks = data_generator.fixed_task_chunks(sampler, 7, 5, 5, chunk=3)
  first, again = list(tasks()), list(tasks())
  assert [len(c.support_x) for c in first] == [3, 3, 1]
  for a, b in zip(first, again):
    _assert_episodes_equal(a, b)
  _assert_episodes_equal([np.concatenate([np.asarray(c[f]) for c in first]) for f in range(5)],
                         sampler.tasks(0, 7))
  sine = data_generator.fixed_task_chunks(data_generator.SinusoidTasks(0), 5, 10, 10, chunk=2)
  for a, b in zip(sine(), sine()):
    _assert_episodes_equal(a, b)


def test_sample_refuses_other_sizes(omniglot):
  sampler = _tasks(omniglot['val'], n=5, k=1, q=1, t=4)
  with pytest.raises(ValueError, match='built for meta-batch 4'):
    sampler.sample(4, 5, 10)
  with pytest.raises(ValueError, match='N\\*K = 5'):
    data_generator.sample_tasks(sampler, 3, 10, 5)


def test_resuming_the_iterator_from_a_checkpoint_gives_the_same_next_episodes(omniglot, tmp_path):
  data = omniglot['train']
  sampler = _tasks(data, t=8, seed=(7, 0))
  for _ in range(3):
    sampler.sample(8, 5, 5)
  path = tf.train.Checkpoint(data=sampler.trackable()).write(str(tmp_path / 'ckpt'))
  want = [sampler.sample(8, 5, 5) for _ in range(2)]
  resumed = _tasks(data, t=8, seed=(7, 0))
  tf.train.Checkpoint(data=resumed.trackable()).read(path).assert_consumed()
  for w in want:
    _assert_episodes_equal(resumed.sample(8, 5, 5), w)
  # Symbolic checkpointing: the position only, not the prefetched episodes.
  size = sum(p.stat().st_size for p in tmp_path.glob('ckpt*'))
  assert size < 100_000, size


def test_make_sampler_and_sample_tasks_for_evaluation(omniglot, tfds_dir, monkeypatch):
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(tfds_dir))
  cfg = experiments.get('omniglot_5way_1shot').replace(data_dir=str(OMNIGLOT))
  train = data_generator.make_sampler(cfg, 'train')
  ep = train.sample(32, 5, 5)
  assert tuple(ep.support_x.shape) == (32, 5, 28, 28, 1)
  assert np.isin(ep.task.numpy(), omniglot['train'].class_ids).all()
  test = data_generator.make_sampler(cfg, 'test', 5)
  assert (test.shots, test.queries) == (5, 5)
  ten = data_generator.sample_tasks(test, 10, 25, 25)
  other_seed = data_generator.make_sampler(cfg.replace(seed=9), 'test', 5)
  four = data_generator.sample_tasks(other_seed, 4, 25, 25)
  _assert_episodes_equal([a[:4] for a in ten], four)  # eval tasks: eval_seed, split and K only
  assert np.isin(ten.task.numpy(), omniglot['test'].class_ids).all()
  val = data_generator.sample_tasks(data_generator.make_sampler(cfg, 'val', 5), 4, 25, 25)
  assert np.isin(val.task.numpy(), omniglot['val'].class_ids).all()


# --- errors ---------------------------------------------------------------------------------------

def test_class_too_small_for_k_plus_q_names_the_class_and_counts(omniglot):
  with pytest.raises(DataError, match=r'class \S+/character\d+ \(id \d+\) of the omniglot val split '
                                      r'has 20 images; a task needs K \+ Q = 15 \+ 10 = 25'):
    _tasks(omniglot['val'], n=5, k=15, q=10)
  with pytest.raises(DataError, match='has 100 classes; 200-way'):
    _tasks(omniglot['val'], n=200)


def _omniglot_folder(tmp_path, **replace):
  folder = tmp_path / 'omniglot'
  folder.mkdir()
  for name in image_datasets.OMNIGLOT_ZIPS:
    if name in replace:
      if replace[name] is not None:
        (folder / name).write_bytes(replace[name])
    else:
      os.symlink(OMNIGLOT / name, folder / name)
  return folder


def _prepare_omniglot(folder, tmp_path):
  return image_datasets.prepare('omniglot', folder, tmp_path / 'tfds')


def test_missing_folder_and_missing_zip(tmp_path):
  _need(OMNIGLOT, *image_datasets.OMNIGLOT_ZIPS)
  with pytest.raises(DataError, match='no folder .*nowhere'):
    _prepare_omniglot(tmp_path / 'nowhere', tmp_path)
  folder = _omniglot_folder(tmp_path, **{'images_evaluation.zip': None})
  with pytest.raises(DataError, match='missing .*images_evaluation.zip'):
    _prepare_omniglot(folder, tmp_path)
  assert not (tmp_path / 'tfds' / 'omniglot_maml' / '1.0.0' / 'dataset_info.json').exists()


def test_corrupt_zip(tmp_path):
  _need(OMNIGLOT, *image_datasets.OMNIGLOT_ZIPS)
  data = (OMNIGLOT / 'images_background.zip').read_bytes()  # read first: fails without decoding
  folder = _omniglot_folder(tmp_path, **{'images_background.zip': data[:len(data) // 2]})
  with pytest.raises(DataError, match='images_background.zip is not a readable zip .*truncated'):
    _prepare_omniglot(folder, tmp_path)


def _zip_bytes(members: dict) -> bytes:
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w') as z:
    for name, data in members.items():
      z.writestr(name, data)
  return buf.getvalue()


def test_wrong_folder_layout(tmp_path):
  _need(OMNIGLOT, *image_datasets.OMNIGLOT_ZIPS)
  flat = tmp_path / 'flat'
  flat.mkdir()
  (flat / '0709_01.png').write_bytes(b'')
  with pytest.raises(DataError, match='missing .*images_background.zip .*holds images directly'):
    _prepare_omniglot(flat, tmp_path)
  no_top = _zip_bytes({'Alphabet_of_the_Magi/character01/0709_01.png': b''})
  folder = _omniglot_folder(tmp_path, **{'images_background.zip': no_top})
  with pytest.raises(DataError, match="member 'Alphabet_of_the_Magi/character01/0709_01.png' is not "
                                      'laid out as images_background/<Alphabet>/characterNN'):
    _prepare_omniglot(folder, tmp_path)


def test_undecodable_images_name_the_member():
  with pytest.raises(DataError, match='x.zip: member a/b.png does not decode'):
    image_datasets.omniglot_preprocess(b'not a png', 'x.zip: member a/b.png')
  with pytest.raises(DataError, match='y.zip: member val/n1/c.jpg does not decode as a JPEG'):
    image_datasets.miniimagenet_decode(b'not a jpeg', 'y.zip: member val/n1/c.jpg')
  big = io.BytesIO()
  Image.new('RGB', (100, 90)).save(big, format='JPEG')
  with pytest.raises(DataError, match='is 100x90, expected 84x84.*prepare_miniimagenet'):
    image_datasets.miniimagenet_decode(big.getvalue(), 'z.jpg')


def test_checksum_mismatch_names_file_expected_and_actual(tmp_path):
  _need(OMNIGLOT, *image_datasets.OMNIGLOT_ZIPS)
  folder = _omniglot_folder(tmp_path)
  actual = image_datasets.sha256(OMNIGLOT / 'images_background.zip')
  (folder / 'SHA256SUMS').write_text(f'{"0" * 64}  images_background.zip\n')
  with pytest.raises(DataError,
                     match=f'images_background.zip: SHA-256 is {actual}, expected {"0" * 64}'):
    _prepare_omniglot(folder, tmp_path)


def test_official_checksums_are_the_ones_tfds_records():
  import tensorflow_datasets
  path = pathlib.Path(tensorflow_datasets.__file__).parent / 'url_checksums' / 'omniglot.txt'
  rows = [line.split('\t') for line in path.read_text().splitlines() if line.strip()]
  recorded = {row[3].strip(): row[2] for row in rows}
  for name, digest in image_datasets.OMNIGLOT_SHA256.items():
    assert recorded[name] == digest
    assert image_datasets.OMNIGLOT_URL + name in path.read_text()


def test_a_loaded_split_is_shared_read_only_and_not_read_again(omniglot, tfds_dir):
  again = image_datasets.load_split('omniglot', 'test', OMNIGLOT, tfds_dir)
  assert again is omniglot['test']
  with pytest.raises(ValueError, match='read-only'):
    again.images[0, 0, 0, 0] = 0


def test_prepared_cache_is_reused_without_the_source(omniglot, tfds_dir):
  again = image_datasets.load_split('omniglot', 'val', '/no/such/folder', tfds_dir)
  np.testing.assert_array_equal(again.images, omniglot['val'].images)


# --- MiniImagenet -----------------------------------------------------------------------------------

def test_miniimagenet_csv_splits_sizes_and_disjoint():
  _need(MINI, 'splits/train.csv')
  classes = image_datasets.miniimagenet_classes(MINI)
  assert {s: len(v) for s, v in classes.items()} == {'train': 64, 'val': 16, 'test': 20}
  assert len(set().union(*map(set, classes.values()))) == 100


def test_miniimagenet_val_images_and_episodes(mini_val):
  data, _, _ = mini_val
  assert data.images.dtype == np.uint8 and data.images.shape == (800, 84, 84, 3)
  assert data.num_classes == 16 and (data.counts == 50).all()
  assert data.class_ids.tolist() == list(range(64, 80))  # train classes come first
  with zipfile.ZipFile(MINI / 'images' / 'val.zip') as z:
    first = sorted(n for n in z.namelist() if n.startswith(f'val/{data.class_names[0]}/'))[0]
    want = tf.io.decode_jpeg(z.read(first), channels=3).numpy()
  np.testing.assert_array_equal(data.class_images(0)[0], want)
  sampler = _tasks(data, n=5, k=1, q=15, t=4)
  ep = sampler.sample(4, 5, 75)
  assert tuple(ep.support_x.shape) == (4, 5, 84, 84, 3)
  assert tuple(ep.query_x.shape) == (4, 75, 84, 84, 3)
  np.testing.assert_array_equal(ep.query_y.numpy().sum(1), 15)
  plan = sampler.plan(0)
  # No inversion, no rotation: x is the stored image / 255.
  want = data.images[plan['images'].numpy()].astype(np.float32) / 255.0
  np.testing.assert_array_equal(np.concatenate([ep.support_x[0], ep.query_x[0]]), want)
  with pytest.raises(DataError, match='has 50 images; a task needs K \\+ Q = 5 \\+ 50 = 55'):
    _tasks(data, n=5, k=5, q=50)


def test_miniimagenet_missing_split_and_missing_source(mini_val, tmp_path):
  _, source, cache = mini_val
  with pytest.raises(DataError, match="has no 'train' split .*delete"):
    image_datasets.load_split('miniimagenet', 'train', source, cache)
  with pytest.raises(DataError, match='cannot be downloaded .*prepare_miniimagenet.py'):
    image_datasets.load_split('miniimagenet', 'val', None, tmp_path / 'empty')
  with pytest.raises(DataError, match='no folder .*prepare_miniimagenet.py'):
    image_datasets.load_split('miniimagenet', 'val', tmp_path / 'nowhere', tmp_path / 'empty')


def test_miniimagenet_flat_jpeg_folder_points_to_the_script(tmp_path):
  _need(MINI, 'splits/train.csv')
  shutil.copytree(MINI / 'splits', tmp_path / 'src' / 'splits')
  (tmp_path / 'src' / 'images').mkdir()
  (tmp_path / 'src' / 'images' / 'n0153282900000005.jpg').write_bytes(b'')
  with pytest.raises(DataError, match='holds JPEGs directly .*run scripts/prepare_miniimagenet.py'):
    image_datasets.prepare('miniimagenet', tmp_path / 'src', tmp_path / 'tfds')


def test_miniimagenet_class_in_the_wrong_split(tmp_path):
  _need(MINI, 'splits/train.csv')
  shutil.copytree(MINI / 'splits', tmp_path / 'src' / 'splits')
  train_wnid = next(iter(image_datasets.miniimagenet_classes(MINI)['train']))
  jpg = io.BytesIO()
  Image.new('RGB', (84, 84)).save(jpg, format='JPEG')
  (tmp_path / 'src' / 'val.zip').write_bytes(_zip_bytes({f'val/{train_wnid}/x.jpg': jpg.getvalue()}))
  with pytest.raises(DataError,
                     match=f'class {train_wnid} is in the val images but the CSVs put it in train'):
    image_datasets.prepare('miniimagenet', tmp_path / 'src', tmp_path / 'tfds')


def test_miniimagenet_from_a_plain_folder_equals_the_zip(mini_val, tmp_path):
  data, _, _ = mini_val
  source = tmp_path / 'src'
  shutil.copytree(MINI / 'splits', source / 'splits')
  with zipfile.ZipFile(MINI / 'images' / 'val.zip') as z:
    z.extractall(source)  # source/val/<wnid>/*.jpg
  folder = image_datasets.load_split('miniimagenet', 'val', source, tmp_path / 'tfds')
  np.testing.assert_array_equal(folder.images, data.images)
  assert folder.class_names == data.class_names
  (source / 'val' / data.class_names[0] / 'notes.txt').write_text('')
  with pytest.raises(DataError, match="'val/n\\d+/notes.txt' is not laid out as "
                                      'train\\|val\\|test/<wnid>/<file>.jpg'):
    image_datasets.prepare('miniimagenet', source, tmp_path / 'tfds2')


@pytest.mark.slow
def test_miniimagenet_full_preparation(tmp_path):
  _need(MINI, 'splits/train.csv', 'images/train_part1of4.zip', 'images/test.zip')
  splits = {s: image_datasets.load_split('miniimagenet', s, MINI, tmp_path)
            for s in image_datasets.SPLITS}
  assert {s: d.num_classes for s, d in splits.items()} == {'train': 64, 'val': 16, 'test': 20}
  assert {s: set(d.counts.tolist()) for s, d in splits.items()} == {'train': {600}, 'val': {50},
                                                                    'test': {300}}
  ids = [set(d.class_ids.tolist()) for d in splits.values()]
  assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
  cfg = experiments.get('miniimagenet_5way_1shot')
  ep = _tasks(splits['train'], n=5, k=1, q=15, t=cfg.meta_batch_size).sample(4, 5, 75)
  assert tuple(ep.query_x.shape) == (4, 75, 84, 84, 3)


# --- scripts/prepare_miniimagenet.py ----------------------------------------------------------------

def _load_script():
  spec = importlib.util.spec_from_file_location('prepare_miniimagenet',
                                                ROOT / 'scripts' / 'prepare_miniimagenet.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _fake_csvs(folder, classes):
  folder.mkdir(parents=True)
  for split, wnids in classes.items():
    rows = ['filename,label'] + [f'{w}{i:08d}.jpg,{w}' for w in wnids for i in (1, 3)]
    (folder / f'{split}.csv').write_text('\n'.join(rows) + '\n')


def test_prepare_miniimagenet_script_from_ravi_images_and_from_ilsvrc(tmp_path):
  script = _load_script()
  classes = {'train': ['n00000001', 'n00000002'], 'val': ['n00000003'], 'test': ['n00000004']}
  _fake_csvs(tmp_path / 'splits', classes)
  images, ilsvrc = tmp_path / 'images', tmp_path / 'ilsvrc'
  images.mkdir()
  for wnid in sum(classes.values(), []):
    (ilsvrc / wnid).mkdir(parents=True)
    for i, number in enumerate((7, 12, 30), start=1):  # rank i among the class's files
      pixels = np.full((120 + i, 100, 3), 60 * i, np.uint8)  # the rank shows in the colour
      Image.fromarray(pixels).save(ilsvrc / wnid / f'{wnid}_{number}.JPEG')
      Image.fromarray(pixels).convert('L').save(images / f'{wnid}{i:08d}.jpg')  # grayscale too
  assert script.main(['--splits', str(tmp_path / 'splits'), '--images', str(images),
                      '--out', str(tmp_path / 'out'), '--workers', '0']) == 0
  assert script.main(['--splits', str(tmp_path / 'splits'), '--ilsvrc_train', str(ilsvrc),
                      '--out', str(tmp_path / 'out2'), '--workers', '0']) == 0
  for out in ('out', 'out2'):
    written = sorted(p.relative_to(tmp_path / out).as_posix()
                     for p in (tmp_path / out).rglob('*.jpg'))
    assert written == sorted(f'{s}/{w}/{w}{i:08d}.jpg' for s, ws in classes.items() for w in ws
                             for i in (1, 3))
    with Image.open(tmp_path / out / 'val' / 'n00000003' / 'n0000000300000003.jpg') as im:
      assert im.size == (84, 84) and im.mode == 'RGB'
    assert (tmp_path / out / 'splits' / 'test.csv').exists()
  # ILSVRC: CSV index 3 is the 3rd file by number, n00000003_30.JPEG (colour 180), not _3 or _12.
  with Image.open(tmp_path / 'out2' / 'val' / 'n00000003' / 'n0000000300000003.jpg') as im:
    assert abs(np.asarray(im, np.float32).mean() - 180) < 3
  (images / 'n0000000100000001.jpg').unlink()
  assert script.main(['--splits', str(tmp_path / 'splits'), '--images', str(images),
                      '--out', str(tmp_path / 'out3'), '--workers', '0']) == 1


def test_download_checks_the_official_checksums(tmp_path):
  """The download branch, offline: a dl_manager that 'downloads' the rebuilt local zips."""
  _need(OMNIGLOT, *image_datasets.OMNIGLOT_ZIPS)

  class LocalDownloads:
    def download(self, urls):
      return {name: OMNIGLOT / url.rsplit('/', 1)[1] for name, url in urls.items()}

  with pytest.raises(DataError, match='images_background.zip: SHA-256 is 7c8e1f93.*, expected '
                                      'ad41ab67.* \\(the official checksum of https://github.com/'):
    image_datasets.download_omniglot(LocalDownloads())
