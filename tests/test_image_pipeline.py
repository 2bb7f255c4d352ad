"""The Omniglot and MiniImagenet pipeline on synthetic sources, so that it is tested on every clone.

tests/test_image_data.py and tests/test_image_rows.py run on the real data in ../shared/data and
skip where it is absent (a fresh clone). This module runs the same code on small sources it makes
itself in the official layouts (tests/synthetic_data.py: all 1623 Omniglot characters with 4-5
drawings each, since the loader insists on the official character counts; 100 MiniImagenet classes
with 3-5 JPEGs each). It covers the tfds builders, the splits, preprocessing, rotations, episodes,
caching, every data error and a few MAML iterations. The real files (their counts, checksums and
pixels) are still checked only by the real-data tests.

The tests that use the prepared sources (the training run too) share one xdist group, so one
process prepares them (Omniglot ~3 s, MiniImagenet <1 s); the error tests, which make their own
small broken sources, go to either process. (pytest 9.2 with xdist 3.8 ignores the groups,
pytest-dev/pytest-xdist#1386: each process then prepares its own copy, a few seconds more.)
"""

import hashlib
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
import synthetic_data as synth
import trainer

SPLITS = image_datasets.SPLITS
PREPARED = pytest.mark.xdist_group('synthetic_images')


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope='session')
def synthetic_tfds(tmp_path_factory):
  """This module's own tfds dir. Not conftest's `tfds_dir`: the real-data tests prepare the real
  Omniglot there under the same builder name, and a prepared cache is never prepared again."""
  return tmp_path_factory.mktemp('synthetic_tfds')


@pytest.fixture(scope='session')
def omniglot_source(tmp_path_factory):
  return synth.make_omniglot(tmp_path_factory.mktemp('omniglot_source'))


@pytest.fixture(scope='session')
def omniglot(omniglot_source, synthetic_tfds):
  """{split: ClassImages} of the synthetic Omniglot, prepared once per process."""
  return {s: image_datasets.load_split('omniglot', s, omniglot_source, synthetic_tfds)
          for s in SPLITS}


@pytest.fixture(scope='session')
def mini_source(tmp_path_factory):
  return synth.make_miniimagenet(tmp_path_factory.mktemp('mini_source'))


@pytest.fixture(scope='session')
def mini(mini_source, synthetic_tfds):
  """{split: ClassImages} of the synthetic MiniImagenet (zips), prepared once per process."""
  return {s: image_datasets.load_split('miniimagenet', s, mini_source, synthetic_tfds)
          for s in SPLITS}


def _tasks(data, n=5, k=1, q=1, t=4, seed=(0, 0), rotate=None):
  omni = data.datasource == 'omniglot'
  return ImageTasks(data, num_classes=n, shots=k, queries=q, meta_batch_size=t, seed=seed,
                    rotate=omni if rotate is None else rotate, invert=omni)


def _assert_episodes_equal(a, b):
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _plan(sampler, i):
  return {k: v.numpy() for k, v in sampler.plan(i).items()}


def _is_prepared(tfds: pathlib.Path, builder: str) -> bool:
  return (tfds / builder / '1.0.0' / 'dataset_info.json').exists()


def _resized(png: bytes, resample=Image.LANCZOS) -> np.ndarray:
  with Image.open(io.BytesIO(png)) as im:
    return np.asarray(im.resize((28, 28), resample=resample).convert('L'))


# --- Omniglot: the builder, splits and preprocessing ----------------------------------------------

@PREPARED
def test_omniglot_builder_prepares_both_zips_with_global_labels(omniglot, omniglot_source,
                                                                synthetic_tfds):
  builder = image_datasets.prepare('omniglot', omniglot_source, synthetic_tfds)
  assert builder.is_prepared() and _is_prepared(synthetic_tfds, 'omniglot_maml')
  assert not (omniglot_source / image_datasets.SHA256SUMS).exists()  # the layout-only path
  characters = synth.omniglot_characters()
  want = {split: sum(len(c.members) for c in characters if c.zip_name == name)
          for split, name in zip(('background', 'evaluation'), synth.OMNIGLOT_ZIPS)}
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == want
  assert builder.info.features['label'].names == [c.name for c in characters]
  # Every stored example of the evaluation zip carries its global label and its file's names.
  got = set()
  for ex in builder.as_dataset(split='evaluation').as_numpy_iterator():
    got.add((int(ex['label']), ex['alphabet'].decode(), ex['character'].decode(),
             ex['drawing'].decode()))
  assert got == {(c.global_id, c.alphabet, c.character, m.rsplit('/', 1)[1])
                 for c in characters if c.zip_name == 'images_evaluation.zip' for m in c.members}


@PREPARED
def test_omniglot_split_sizes_disjoint_and_seeded_as_the_original(omniglot):
  ids = {s: set(d.class_ids.tolist()) for s, d in omniglot.items()}
  assert {s: len(v) for s, v in ids.items()} == {'train': 1100, 'val': 100, 'test': 423}
  assert not ids['train'] & ids['val'] and not ids['train'] & ids['test']
  assert not ids['val'] & ids['test']
  assert set.union(*ids.values()) == set(range(1623))
  order = list(range(1623))
  random.Random(1).shuffle(order)  # the original: random.seed(1); random.shuffle(all characters)
  assert ids['train'] == set(order[:1100]) and ids['val'] == set(order[1100:1200])
  characters = synth.omniglot_characters()
  for data in omniglot.values():
    assert data.class_names == tuple(characters[i].name for i in data.class_ids)
    np.testing.assert_array_equal(data.counts, [len(characters[i].members) for i in data.class_ids])
    np.testing.assert_array_equal(data.offsets, np.r_[0, np.cumsum(data.counts)[:-1]])


@PREPARED
def test_omniglot_global_ids_follow_zip_alphabet_character_order(omniglot):
  names = {int(i): n for d in omniglot.values() for i, n in zip(d.class_ids, d.class_names)}
  assert names[0] == 'Script_B00/character01'
  assert names[963].startswith('Script_B29/') and names[964] == 'Script_E00/character01'
  assert names[1622].startswith('Script_E19/')
  assert [names[i] for i in range(1623)] == [c.name for c in synth.omniglot_characters()]


def test_omniglot_global_ids_do_not_depend_on_the_zips_member_order(tmp_path):
  """Ids come from the sorted listing, so every copy of the zips gives every machine one split."""
  members = synth.omniglot_members('images_evaluation.zip')
  path = tmp_path / 'images_evaluation.zip'
  with zipfile.ZipFile(path, 'w') as z:
    for name in reversed(list(members)):
      z.writestr(name, members[name])
  index = image_datasets.omniglot_index(path, 'images_evaluation.zip')
  want = [c for c in synth.omniglot_characters() if c.zip_name == 'images_evaluation.zip']
  assert [(c.name, c.members) for c in index] == [(c.name, c.members) for c in want]


@PREPARED
def test_omniglot_images_are_the_original_preprocessing(omniglot):
  """Stored images: each member PNG resized by PIL as resize_images.py; 0 stroke, 255 paper."""
  characters = synth.omniglot_characters()
  for split, data in omniglot.items():
    assert data.images.dtype == np.uint8
    assert data.images.shape == (data.counts.sum(), 28, 28, 1)
    for c in range(0, data.num_classes, 1 if split == 'val' else 97):  # all of val, some others
      members = characters[data.class_ids[c]].members
      got = data.class_images(c)[:, :, :, 0]
      want = np.stack([_resized(synth.omniglot_member_png(m)) for m in members])
      np.testing.assert_array_equal(got, want)
      # PIL resizes a mode '1' image with NEAREST whatever filter is asked for.
      np.testing.assert_array_equal(
          got, np.stack([_resized(synth.omniglot_member_png(m), Image.NEAREST) for m in members]))
  images = omniglot['val'].images
  assert set(np.unique(images)) == {0, 255}
  assert (images == 255).mean() > 0.6  # paper, not yet inverted
  assert (images.reshape(len(images), -1).min(1) == 0).all()  # every drawing keeps strokes


@PREPARED
def test_omniglot_episodes_are_inverted_rotations_of_the_stored_images(omniglot):
  """Each class of each task turned by its own k * 90 degrees, as the original's rot90 classes."""
  data = omniglot['val']
  sampler = _tasks(data, n=5, k=2, q=2)
  episode = sampler.tasks(0, 40)
  x = np.concatenate([episode.support_x, episode.query_x], 1)
  y = np.concatenate([episode.support_y, episode.query_y], 1).argmax(-1)
  assert x.dtype == np.float32 and set(np.unique(x)) == {0.0, 1.0}
  assert (x == 0).mean() > 0.6  # background 0, strokes 1
  turns_seen = []
  for i in range(40):
    plan = _plan(sampler, i)
    stored = data.images[plan['images']]
    for j in range(len(stored)):
      turns = plan['turns'][plan['labels'][j]]  # one turn per label: all its images alike
      want = 1.0 - np.rot90(stored[j], turns, axes=(0, 1)) / 255.0
      np.testing.assert_array_equal(x[i, j], want.astype(np.float32))
      if turns:  # a turned class is a new class: no synthetic drawing is rotation-symmetric
        assert not np.array_equal(x[i, j], 1.0 - stored[j] / 255.0)
      assert y[i, j] == plan['labels'][j]
    turns_seen += plan['turns'].tolist()
    np.testing.assert_array_equal(episode.task[i], data.class_ids[plan['classes']])
  counts = np.bincount(turns_seen, minlength=4)
  assert len(counts) == 4 and counts.min() >= 30, counts  # 200 draws of U{0, 1, 2, 3}
  unturned = _tasks(data, n=5, k=2, q=2, rotate=False)
  plan = _plan(unturned, 0)
  assert not plan['turns'].any()
  ep = unturned.tasks(0, 1)
  np.testing.assert_array_equal(np.concatenate([ep.support_x[0], ep.query_x[0]]),
                                1.0 - data.images[plan['images']].astype(np.float32) / 255.0)


# --- episodes -------------------------------------------------------------------------------------

@PREPARED
@pytest.mark.parametrize('source,n,k,q,t', [
    ('omniglot', 5, 1, 1, 8), ('omniglot', 20, 1, 1, 4), ('omniglot', 5, 2, 2, 4),
    ('mini', 5, 1, 2, 3)])
def test_episode_shapes_and_label_balance(request, source, n, k, q, t):
  data = request.getfixturevalue(source)['train']
  shape = (28, 28, 1) if source == 'omniglot' else (84, 84, 3)
  ep = _tasks(data, n, k, q, t).sample(t, n * k, n * q)
  assert tuple(ep.support_x.shape) == (t, n * k, *shape) and ep.support_x.dtype == tf.float32
  assert tuple(ep.support_y.shape) == (t, n * k, n) and ep.support_y.dtype == tf.float32
  assert tuple(ep.query_x.shape) == (t, n * q, *shape) and tuple(ep.query_y.shape) == (t, n * q, n)
  assert tuple(ep.task.shape) == (t, n) and ep.task.dtype == tf.int32
  np.testing.assert_array_equal(ep.support_y.numpy().sum(1), k)  # each label K times
  np.testing.assert_array_equal(ep.query_y.numpy().sum(1), q)
  assert set(np.unique(ep.support_y)) == {0.0, 1.0}
  task = ep.task.numpy()
  assert all(len(set(row)) == n for row in task) and np.isin(task, data.class_ids).all()


@PREPARED
def test_labels_are_shuffled_and_support_query_images_distinct(omniglot):
  data = omniglot['val']
  sampler = _tasks(data, n=5, k=2, q=2)
  first_class_label = []
  for i in range(30):
    plan = _plan(sampler, i)
    assert len(set(plan['images'])) == len(plan['images'])  # K + Q distinct images, no overlap
    assert len(set(plan['classes'])) == 5
    # Every image of label j belongs to the class the plan gives label j.
    rows = np.searchsorted(data.offsets, plan['images'], side='right') - 1
    np.testing.assert_array_equal(rows, plan['classes'][plan['labels']])
    first_class_label.append(plan['labels'][0])
  assert len(set(first_class_label)) > 1  # slot order reshuffled per task, as the original
  ep = sampler.tasks(0, 30)
  assert len(set(np.argmin(ep.task.numpy(), 1))) == 5  # the smallest id lands on every label


@PREPARED
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


@PREPARED
def test_fixed_task_chunks_give_the_same_tasks_at_every_call(omniglot):
  sampler = _tasks(omniglot['val'], t=2, seed=(1, 1))
  tasks = data_generator.fixed_task_chunks(sampler, 5, 5, 5, chunk=3)
  first, again = list(tasks()), list(tasks())
  assert [len(c.support_x) for c in first] == [3, 2]
  for a, b in zip(first, again):
    _assert_episodes_equal(a, b)
  _assert_episodes_equal([np.concatenate([np.asarray(c[f]) for c in first]) for f in range(5)],
                         sampler.tasks(0, 5))


@PREPARED
def test_sample_refuses_other_sizes(omniglot):
  sampler = _tasks(omniglot['val'], n=5, k=1, q=1, t=4)
  with pytest.raises(ValueError, match='built for meta-batch 4'):
    sampler.sample(4, 5, 10)
  with pytest.raises(ValueError, match='N\\*K = 5'):
    data_generator.sample_tasks(sampler, 3, 10, 5)


@PREPARED
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
  size = sum(p.stat().st_size for p in tmp_path.glob('ckpt*'))
  assert size < 100_000, size  # symbolic checkpointing: the position, not prefetched episodes


@PREPARED
def test_make_sampler_for_the_rows(omniglot, omniglot_source, mini, mini_source, synthetic_tfds,
                                   monkeypatch):
  """The experiment rows' samplers: splits, K and Q, rotation and inversion, evaluation seeds."""
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(synthetic_tfds))
  cfg = experiments.get('omniglot_5way_1shot').replace(data_dir=str(omniglot_source),
                                                       meta_batch_size=4)
  train = data_generator.make_sampler(cfg, 'train')
  assert (train.shots, train.queries, train.rotate, train.invert) == (1, 1, True, True)
  ep = train.sample(4, 5, 5)
  assert tuple(ep.support_x.shape) == (4, 5, 28, 28, 1)
  assert np.isin(ep.task.numpy(), omniglot['train'].class_ids).all()
  test = data_generator.make_sampler(cfg, 'test', 2)
  assert (test.shots, test.queries, test.rotate) == (2, 2, True)  # test tasks are rotated too
  ten = data_generator.sample_tasks(test, 10, 10, 10)
  other_seed = data_generator.make_sampler(cfg.replace(seed=9), 'test', 2)
  four = data_generator.sample_tasks(other_seed, 4, 10, 10)
  _assert_episodes_equal([a[:4] for a in ten], four)  # eval tasks: eval_seed, split and K only
  assert np.isin(ten.task.numpy(), omniglot['test'].class_ids).all()
  other_eval = data_generator.make_sampler(cfg.replace(eval_seed=2), 'test', 2)
  assert not np.array_equal(data_generator.sample_tasks(other_eval, 4, 10, 10).task, four.task)
  val = data_generator.sample_tasks(data_generator.make_sampler(cfg, 'val', 2), 4, 10, 10)
  assert np.isin(val.task.numpy(), omniglot['val'].class_ids).all()
  plot = data_generator.sample_tasks(data_generator.make_sampler(cfg, 'plot', 2), 4, 10, 10)
  assert np.isin(plot.task.numpy(), omniglot['test'].class_ids).all()

  mini_cfg = experiments.get('miniimagenet_5way_1shot').replace(data_dir=str(mini_source))
  sampler = data_generator.make_sampler(mini_cfg, 'test', 1)
  assert (sampler.shots, sampler.queries, sampler.rotate, sampler.invert) == (1, 1, False, False)
  assert sampler.image_shape == (84, 84, 3)
  # Its training tasks take 1 + 15 images per class; the synthetic classes have 3 to 5.
  with pytest.raises(DataError, match=r'of the miniimagenet train split has \d images; a task '
                                      r'needs K \+ Q = 1 \+ 15 = 16 .*\(64 classes have fewer\)'):
    data_generator.make_sampler(mini_cfg, 'train')


# --- caching ------------------------------------------------------------------------------------

@PREPARED
def test_a_loaded_split_is_shared_read_only_and_not_read_again(omniglot, omniglot_source,
                                                               synthetic_tfds):
  # The process keeps the last three splits loaded (other tests here load MiniImagenet's too).
  first = image_datasets.load_split('omniglot', 'test', omniglot_source, synthetic_tfds)
  again = image_datasets.load_split('omniglot', 'test', omniglot_source, synthetic_tfds)
  assert again is first
  np.testing.assert_array_equal(again.images, omniglot['test'].images)
  with pytest.raises(ValueError, match='read-only'):
    again.images[0, 0, 0, 0] = 0


@PREPARED
def test_prepared_cache_is_reused_without_the_source(omniglot, synthetic_tfds, tmp_path,
                                                     monkeypatch):
  monkeypatch.setattr(image_datasets, '_LOADED', {})  # as a new process: read the cache from disk
  again = image_datasets.load_split('omniglot', 'val', tmp_path / 'no_such_folder', synthetic_tfds)
  assert again is not omniglot['val']
  np.testing.assert_array_equal(again.images, omniglot['val'].images)
  assert again.class_names == omniglot['val'].class_names
  # MiniImagenet, whose source is then deleted: no data_dir at all is needed any more.
  source = synth.make_miniimagenet(tmp_path / 'mini', splits=('val',))
  first = image_datasets.load_split('miniimagenet', 'val', source, tmp_path / 'tfds')
  shutil.rmtree(source)
  monkeypatch.setattr(image_datasets, '_LOADED', {})
  again = image_datasets.load_split('miniimagenet', 'val', None, tmp_path / 'tfds')
  np.testing.assert_array_equal(again.images, first.images)


@PREPARED
def test_a_re_prepared_cache_is_read_again(tmp_path):
  source = synth.make_miniimagenet(tmp_path / 'mini', splits=('test',))
  first = image_datasets.load_split('miniimagenet', 'test', source, tmp_path / 'tfds')
  assert image_datasets.load_split('miniimagenet', 'test', source, tmp_path / 'tfds') is first
  shutil.rmtree(tmp_path / 'tfds' / 'mini_imagenet_maml')
  again = image_datasets.load_split('miniimagenet', 'test', source, tmp_path / 'tfds')
  assert again is not first  # a new dataset_info.json: not the old cache's arrays
  np.testing.assert_array_equal(again.images, first.images)


def test_a_failed_preparation_leaves_no_cache_and_can_be_retried(tmp_path):
  first = f'val/{synth.mini_classes()[64].wnid}/{synth.mini_classes()[64].files[0]}'
  source = synth.make_miniimagenet(tmp_path / 'mini', splits=('val',),
                                   replace={first: b'not a jpeg'})
  with pytest.raises(DataError, match='does not decode as a JPEG'):
    image_datasets.prepare('miniimagenet', source, tmp_path / 'tfds')
  assert not _is_prepared(tmp_path / 'tfds', 'mini_imagenet_maml')
  synth.make_miniimagenet(source, splits=('val',))  # the user copies the file again
  data = image_datasets.load_split('miniimagenet', 'val', source, tmp_path / 'tfds')
  assert data.num_classes == 16


# --- MiniImagenet ---------------------------------------------------------------------------------

@PREPARED
def test_miniimagenet_splits_follow_the_csvs(mini, mini_source):
  classes = synth.mini_classes()
  assert image_datasets.miniimagenet_classes(mini_source) == {
      s: [c.wnid for c in classes if c.split == s] for s in SPLITS}
  want_ids = {'train': range(0, 64), 'val': range(64, 80), 'test': range(80, 100)}
  for split, data in mini.items():
    assert data.class_ids.tolist() == list(want_ids[split])  # CSV order, train first
    assert data.class_names == tuple(classes[i].wnid for i in data.class_ids)
    np.testing.assert_array_equal(data.counts, [len(classes[i].files) for i in data.class_ids])
    assert data.images.dtype == np.uint8 and data.images.shape == (data.counts.sum(), 84, 84, 3)
    members = synth.mini_members(split)
    for c in range(data.num_classes):
      cls = classes[data.class_ids[c]]
      want = [tf.io.decode_jpeg(members[f'{split}/{cls.wnid}/{f}'], channels=3).numpy()
              for f in sorted(cls.files)]
      np.testing.assert_array_equal(data.class_images(c), np.stack(want))
  ids = [set(d.class_ids.tolist()) for d in mini.values()]
  assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]


@PREPARED
def test_miniimagenet_episodes_are_the_stored_images_over_255(mini):
  data = mini['val']
  sampler = _tasks(data, n=5, k=1, q=2, t=2)
  assert not sampler.rotate and not sampler.invert
  ep = sampler.sample(2, 5, 10)
  for i in range(2):
    plan = _plan(sampler, i)
    assert not plan['turns'].any()
    want = data.images[plan['images']].astype(np.float32) / 255.0
    np.testing.assert_array_equal(np.concatenate([ep.support_x[i], ep.query_x[i]]), want)


@PREPARED
@pytest.mark.parametrize('where', ['images', '.'])
def test_miniimagenet_from_plain_folders_equals_the_zips(mini, tmp_path, where):
  """proc_images.py's folders, in <source>/images or <source> itself, give the zips' arrays."""
  source = tmp_path / 'src'
  synth.write_mini_csvs(source / 'splits')
  synth.make_miniimagenet(source / where, layout='folder')
  (source / where / 'val' / '.DS_Store').write_bytes(b'junk')  # ignored, as in zips
  for split in SPLITS:
    data = image_datasets.load_split('miniimagenet', split, source, tmp_path / 'tfds')
    np.testing.assert_array_equal(data.images, mini[split].images)
    assert data.class_names == mini[split].class_names


def test_miniimagenet_a_split_without_images_is_not_prepared(tmp_path):
  source = synth.make_miniimagenet(tmp_path / 'src', splits=('val',))
  val = image_datasets.load_split('miniimagenet', 'val', source, tmp_path / 'tfds')
  assert val.num_classes == 16
  with pytest.raises(DataError, match="has no 'train' split .*delete .*prepare again"):
    image_datasets.load_split('miniimagenet', 'train', source, tmp_path / 'tfds')


def test_miniimagenet_an_unzipped_copy_beside_its_zip_is_refused(tmp_path):
  """Else every image would count twice, and a task could take one image as support and query."""
  source = synth.make_miniimagenet(tmp_path / 'src', splits=('val',))
  with zipfile.ZipFile(source / 'images' / 'val.zip') as z:
    z.extractall(source / 'images')  # `unzip val.zip` inside images/
  with pytest.raises(DataError, match=r'val/n99\d{6}/n99\d{14}\.jpg is in .*images/val/n99.* '
                                      r'and in .*images/val.zip: member val/.*delete one of the '
                                      'copies'):
    image_datasets.prepare('miniimagenet', source, tmp_path / 'tfds')
  shutil.copyfile(source / 'images' / 'val.zip', source / 'images' / 'val_again.zip')
  shutil.rmtree(source / 'images' / 'val')
  with pytest.raises(DataError, match=r'is in .*images/val.zip: member .* and in '
                                      r'.*images/val_again.zip: member'):
    image_datasets.prepare('miniimagenet', source, tmp_path / 'tfds')
  assert not _is_prepared(tmp_path / 'tfds', 'mini_imagenet_maml')


# --- errors: episodes ---------------------------------------------------------------------------

@PREPARED
def test_class_too_small_for_k_plus_q_names_the_class(omniglot, mini):
  data = omniglot['val']
  small = np.flatnonzero(data.counts < 5)
  name, gid = data.class_names[small[0]], data.class_ids[small[0]]
  with pytest.raises(DataError, match=rf'class {name} \(id {gid}\) of the omniglot val split has 4 '
                                      rf'images; a task needs K \+ Q = 2 \+ 3 = 5 distinct images '
                                      rf'of each class \({len(small)} classes have fewer\)'):
    _tasks(data, n=5, k=2, q=3)
  _tasks(data, n=5, k=2, q=2)  # every class has 4
  data = mini['test']
  small = np.flatnonzero(data.counts < 4)
  with pytest.raises(DataError, match=rf'class {data.class_names[small[0]]} \(id '
                                      rf'{data.class_ids[small[0]]}\) of the miniimagenet test '
                                      rf'split has 3 images.*\({len(small)} classes have fewer\)'):
    _tasks(data, n=5, k=1, q=3)


@PREPARED
def test_more_ways_than_classes(omniglot, mini):
  with pytest.raises(DataError, match='the omniglot val split has 100 classes; 101-way tasks need '
                                      '101: lower --num_classes'):
    _tasks(omniglot['val'], n=101)
  with pytest.raises(DataError, match='miniimagenet val split has 16 classes; 20-way'):
    _tasks(mini['val'], n=20)


def test_unknown_dataset_and_split(tmp_path):
  with pytest.raises(ValueError, match="no image dataset 'cifar'"):
    image_datasets.prepare('cifar', tmp_path, tmp_path)
  with pytest.raises(ValueError, match="unknown split 'validation'"):
    image_datasets.load_split('omniglot', 'validation', tmp_path, tmp_path)


# --- errors: Omniglot sources ---------------------------------------------------------------------

def _prepare_omniglot(folder, tmp_path):
  return image_datasets.prepare('omniglot', folder, tmp_path / 'tfds')


def test_omniglot_missing_folder_zip_or_unzipped_folder(tmp_path):
  with pytest.raises(DataError, match='no folder .*nowhere; pass the folder holding the official '
                                      'Omniglot zips'):
    _prepare_omniglot(tmp_path / 'nowhere', tmp_path)
  folder = synth.make_omniglot(tmp_path / 'omniglot', zips=('images_background.zip',))
  with pytest.raises(DataError, match=r'missing .*omniglot/images_evaluation.zip; pass the folder'):
    _prepare_omniglot(folder, tmp_path)
  (folder / 'images_evaluation' / 'Script_E00').mkdir(parents=True)
  with pytest.raises(DataError, match=r'missing .*images_evaluation.zip: .* holds the unzipped '
                                      r'folder images_evaluation/ .*zip -r images_evaluation.zip'):
    _prepare_omniglot(folder, tmp_path)
  flat = tmp_path / 'flat'
  flat.mkdir()
  (flat / '0709_01.png').write_bytes(synth.omniglot_png(0, 0))
  with pytest.raises(DataError, match=r'missing .*images_background.zip \(it holds images '
                                      r'directly: 0709_01.png\)'):
    _prepare_omniglot(flat, tmp_path)
  assert not _is_prepared(tmp_path / 'tfds', 'omniglot_maml')


def test_omniglot_corrupt_zip(tmp_path):
  folder = synth.make_omniglot(tmp_path / 'omniglot')
  data = (folder / 'images_evaluation.zip').read_bytes()
  (folder / 'images_evaluation.zip').write_bytes(data[:len(data) // 2])
  with pytest.raises(DataError, match='images_evaluation.zip is not a readable zip .*corrupt or '
                                      'truncated'):
    _prepare_omniglot(folder, tmp_path)
  (folder / 'images_evaluation.zip').write_bytes(b'')
  with pytest.raises(DataError, match='images_evaluation.zip is not a readable zip'):
    _prepare_omniglot(folder, tmp_path)


def _first_member(zip_name='images_background.zip'):
  return next(c for c in synth.omniglot_characters() if c.zip_name == zip_name).members[0]


@pytest.mark.parametrize('zip_name,change,message', [
    ('images_background.zip', {'Script_B00/character01/0001_01.png': b'x'},
     "member 'Script_B00/character01/0001_01.png' is not laid out as "
     'images_background/<Alphabet>/characterNN/<drawing>.png'),
    ('images_background.zip', {'images_background/Script_B00/character01/notes.txt': b'x'},
     "member 'images_background/Script_B00/character01/notes.txt' is not laid out"),
    ('images_background.zip', {'images_background/Script_B00/0001_01.png': b'x'},
     "member 'images_background/Script_B00/0001_01.png' is not laid out"),
    ('images_background.zip', {'images_background/Script_B00/glyph01/0001_01.png': b'x'},
     "member 'images_background/Script_B00/glyph01/0001_01.png' is not laid out"),
    # The evaluation zip's content under the background zip's name.
    ('images_background.zip', {'images_evaluation/Script_E00/character01/9999_01.png': b'x'},
     "member 'images_evaluation/Script_E00/character01/9999_01.png' is not laid out as "
     'images_background/'),
])
def test_omniglot_wrong_layout_names_the_member(tmp_path, zip_name, change, message):
  folder = synth.make_omniglot(tmp_path / 'omniglot', replace={zip_name: change})
  with pytest.raises(DataError, match=f'{zip_name}: {message}.*official zip'):
    _prepare_omniglot(folder, tmp_path)
  assert not _is_prepared(tmp_path / 'tfds', 'omniglot_maml')


def test_omniglot_swapped_zips(tmp_path):
  folder = synth.make_omniglot(tmp_path / 'omniglot')
  os.rename(folder / 'images_background.zip', folder / 'tmp.zip')
  os.rename(folder / 'images_evaluation.zip', folder / 'images_background.zip')
  os.rename(folder / 'tmp.zip', folder / 'images_evaluation.zip')
  with pytest.raises(DataError, match=r"images_background.zip: member 'images_evaluation/.*' is "
                                      'not laid out as images_background/'):
    _prepare_omniglot(folder, tmp_path)


def test_omniglot_wrong_character_count_or_empty_zip(tmp_path):
  """The fixed 1100/100/423 split needs the official 964 + 659 characters."""
  dropped = next(c for c in synth.omniglot_characters() if c.zip_name == 'images_evaluation.zip')
  folder = synth.make_omniglot(tmp_path / 'omniglot', replace={
      'images_evaluation.zip': {m: None for m in dropped.members}})
  with pytest.raises(DataError, match='images_evaluation.zip holds 658 characters, the official '
                                      'zip 659: the 1100/100/423 split needs all 1623 characters'):
    _prepare_omniglot(folder, tmp_path)
  synth.write_zip(folder / 'images_evaluation.zip', {'images_evaluation/Script_E00/x/': b''})
  with pytest.raises(DataError, match='images_evaluation.zip holds no files; expected '
                                      'images_evaluation/<Alphabet>/characterNN/<drawing>.png'):
    _prepare_omniglot(folder, tmp_path)


def test_omniglot_zip_tool_junk_is_not_data(tmp_path):
  """macOS' __MACOSX/ and .DS_Store members are skipped, not taken for a wrong layout."""
  members = synth.omniglot_members('images_background.zip')
  members['__MACOSX/images_background/._Script_B00'] = b'junk'
  members['images_background/Script_B00/.DS_Store'] = b'junk'
  path = synth.write_zip(tmp_path / 'images_background.zip', members)
  index = image_datasets.omniglot_index(path, 'images_background.zip')
  want = [c for c in synth.omniglot_characters() if c.zip_name == 'images_background.zip']
  assert [(c.name, c.members) for c in index] == [(c.name, c.members) for c in want]


def _damage_member(path: pathlib.Path, member: str) -> None:
  """Flips bytes in the middle of one member's stored data: its CRC no longer matches."""
  with zipfile.ZipFile(path) as z:
    info = z.getinfo(member)
  data = bytearray(path.read_bytes())
  header = info.header_offset
  start = header + 30 + int.from_bytes(data[header + 26:header + 28], 'little') + int.from_bytes(
      data[header + 28:header + 30], 'little')
  for i in range(start + info.compress_size // 3, start + info.compress_size // 3 + 8):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


def test_omniglot_damaged_members_are_named(tmp_path):
  member = _first_member()
  folder = synth.make_omniglot(tmp_path / 'omniglot',
                               replace={'images_background.zip': {member: b'not a png'}})
  with pytest.raises(DataError, match=f'images_background.zip: member {member} does not decode as '
                                      'an image .*download or copy the zip again'):
    _prepare_omniglot(folder, tmp_path)
  assert not _is_prepared(tmp_path / 'tfds', 'omniglot_maml')
  folder = synth.make_omniglot(tmp_path / 'omniglot2')
  _damage_member(folder / 'images_background.zip', member)
  with pytest.raises(DataError, match=f'images_background.zip: member {member} cannot be read '
                                      '.*the zip is corrupt'):
    _prepare_omniglot(folder, tmp_path)


def test_omniglot_local_checksums(tmp_path):
  """A folder's own SHA256SUMS is checked when present (the official sums only on download)."""
  folder = synth.make_omniglot(tmp_path / 'omniglot')
  sums = {n: image_datasets.sha256(folder / n) for n in synth.OMNIGLOT_ZIPS}
  assert sums['images_background.zip'] != image_datasets.OMNIGLOT_SHA256['images_background.zip']
  (folder / 'SHA256SUMS').write_text(
      f'{sums["images_background.zip"]}  images_background.zip\n'
      f'{sums["images_evaluation.zip"]} *images_evaluation.zip\n\n'  # sha256sum -b's binary mark
      f'{"1" * 64}  LICENSE.txt\n')  # listed but not read
  paths = image_datasets.omniglot_local_zips(folder)
  checked = image_datasets.verify_against_sha256sums(folder, paths.values())
  assert checked == list(synth.OMNIGLOT_ZIPS)
  (folder / 'SHA256SUMS').write_text(f'{"0" * 64}  images_evaluation.zip\n')
  with pytest.raises(DataError, match=f'images_evaluation.zip: SHA-256 is '
                                      f'{sums["images_evaluation.zip"]}, expected {"0" * 64} '
                                      r'\(listed in .*SHA256SUMS\)'):
    _prepare_omniglot(folder, tmp_path)
  (folder / 'SHA256SUMS').write_text(f'{sums["images_background.zip"]}  images_background.zip\n'
                                     'abc images_evaluation.zip\n')
  with pytest.raises(DataError, match=r'SHA256SUMS:2 is not "<sha256>  <file>"'):
    _prepare_omniglot(folder, tmp_path)
  assert not _is_prepared(tmp_path / 'tfds', 'omniglot_maml')


def test_omniglot_download_checks_the_official_checksums(tmp_path):
  """The download branch, offline: dl_managers that 'download' the synthetic zips, or fail."""
  folder = synth.make_omniglot(tmp_path / 'omniglot')
  actual = image_datasets.sha256(folder / 'images_background.zip')

  class LocalDownloads:
    def download(self, urls):
      assert set(urls.values()) == {image_datasets.OMNIGLOT_URL + n for n in synth.OMNIGLOT_ZIPS}
      return {name: folder / url.rsplit('/', 1)[1] for name, url in urls.items()}

  class Failing:
    def __init__(self, error):
      self.error = error

    def download(self, urls):
      raise self.error

  with pytest.raises(DataError, match=f'images_background.zip: SHA-256 is {actual}, expected '
                                      'ad41ab67.* \\(the official checksum of https://github.com/'):
    image_datasets.download_omniglot(LocalDownloads())
  with pytest.raises(DataError, match='a downloaded Omniglot zip is not the official file: bad '
                                      'sum\nRetry, or download https://'):
    image_datasets.download_omniglot(Failing(
        image_datasets.NonMatchingChecksumError('bad sum')))
  with pytest.raises(DataError, match='cannot download Omniglot from https://github.com/.* '
                                      r'\(no network\); download .* yourself and pass their '
                                      'folder'):
    image_datasets.download_omniglot(Failing(OSError('no network')))


# --- errors: MiniImagenet sources -----------------------------------------------------------------

def _prepare_mini(source, tmp_path):
  return image_datasets.prepare('miniimagenet', source, tmp_path / 'tfds')


def test_miniimagenet_missing_source(tmp_path):
  with pytest.raises(DataError, match='not prepared in .* and cannot be downloaded .*make it with '
                                      'scripts/prepare_miniimagenet.py'):
    image_datasets.load_split('miniimagenet', 'val', None, tmp_path / 'tfds')
  with pytest.raises(DataError, match='no folder .*nowhere: pass the MiniImagenet folder'):
    _prepare_mini(tmp_path / 'nowhere', tmp_path)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(DataError, match='no split CSVs in .*empty: expected train.csv, val.csv, '
                                      'test.csv'):
    _prepare_mini(tmp_path / 'empty', tmp_path)


def test_miniimagenet_bad_csvs(tmp_path):
  source = tmp_path / 'src'
  synth.write_mini_csvs(source)  # in the source folder itself: also accepted
  (source / 'val.csv').write_text('file,class\nx.jpg,n00000001\n')
  with pytest.raises(DataError, match='val.csv does not start with the header filename,label'):
    _prepare_mini(source, tmp_path)
  (source / 'val.csv').write_text('filename,label\nx.jpg,n00000001\ny.jpg\n')
  with pytest.raises(DataError, match=r"val.csv:3: expected filename,label, got \['y.jpg'\]"):
    _prepare_mini(source, tmp_path)
  classes = synth.mini_classes()
  synth.write_mini_csvs(source, classes[1:])  # 63 train classes
  with pytest.raises(DataError, match='train.csv lists 63 classes, the Ravi & Larochelle split 64'):
    _prepare_mini(source, tmp_path)
  # The last train class replaced by a val class: 64/16/20 classes, one of them in two CSVs.
  intruder = synth.MiniClass(63, 'train', classes[64].wnid, ('x.jpg',))
  moved = classes[:63] + (intruder,) + classes[64:]
  synth.write_mini_csvs(source, moved)
  with pytest.raises(DataError, match=f'class {classes[64].wnid} is in both train.csv and val.csv'):
    _prepare_mini(source, tmp_path)


def test_miniimagenet_no_images(tmp_path):
  source = tmp_path / 'src'
  synth.write_mini_csvs(source / 'splits')
  with pytest.raises(DataError, match='no MiniImagenet images in .*src: expected folders or zips '
                                      r'laid out as train\|val\|test/<wnid>/<file>.jpg'):
    _prepare_mini(source, tmp_path)
  (source / 'images').mkdir()
  (source / 'images' / 'n0153282900000005.jpg').write_bytes(synth.mini_jpeg(0, 0, (500, 375)))
  with pytest.raises(DataError, match=r'holds JPEGs directly \(n0153282900000005.jpg, ...\), like '
                                      'the Ravi & Larochelle images/ folder: run '
                                      'scripts/prepare_miniimagenet.py'):
    _prepare_mini(source, tmp_path)


@pytest.mark.parametrize('layout', ['zip', 'folder'])
def test_miniimagenet_wrong_layout_names_the_file(tmp_path, layout):
  wnid = synth.mini_classes()[64].wnid
  source = synth.make_miniimagenet(tmp_path / 'src', layout=layout, splits=('val',),
                                   replace={f'val/{wnid}/notes.txt': b'x'})
  with pytest.raises(DataError, match=f"'val/{wnid}/notes.txt' is not laid out as "
                                      r'train\|val\|test/<wnid>/<file>.jpg; prepare the images'):
    _prepare_mini(source, tmp_path)
  source = synth.make_miniimagenet(tmp_path / 'src2', layout=layout, splits=('val',),
                                   replace={f'val/{wnid[:-1]}/x.jpg': b'x'})  # not a wnid
  with pytest.raises(DataError, match=f"'val/{wnid[:-1]}/x.jpg' is not laid out"):
    _prepare_mini(source, tmp_path)


def test_miniimagenet_images_that_do_not_match_the_csvs(tmp_path):
  classes = synth.mini_classes()
  train_wnid, val_wnid = classes[0].wnid, classes[64].wnid
  jpg = synth.mini_jpeg(0, 0)
  source = synth.make_miniimagenet(tmp_path / 'a', splits=('val',),
                                   replace={f'val/{train_wnid}/x.jpg': jpg})
  with pytest.raises(DataError, match=f'class {train_wnid} is in the val images but the CSVs put '
                                      'it in train; the images do not match the CSVs'):
    _prepare_mini(source, tmp_path)
  source = synth.make_miniimagenet(tmp_path / 'b', splits=('val',),
                                   replace={'val/n00000042/x.jpg': jpg})
  with pytest.raises(DataError, match='class n00000042 is in the val images but no split CSV lists '
                                      'it'):
    _prepare_mini(source, tmp_path)
  source = synth.make_miniimagenet(tmp_path / 'c', splits=('val',), replace={
      f'val/{val_wnid}/{f}': None for f in classes[64].files})
  with pytest.raises(DataError,
                     match=f'1 of the 16 val classes have no images \\(e.g. {val_wnid}\\)'):
    _prepare_mini(source, tmp_path)
  assert not _is_prepared(tmp_path / 'tfds', 'mini_imagenet_maml')


def test_miniimagenet_damaged_images_are_named(tmp_path):
  cls = synth.mini_classes()[64]
  member = f'val/{cls.wnid}/{cls.files[0]}'
  source = synth.make_miniimagenet(tmp_path / 'a', splits=('val',), replace={member: b'x' * 99})
  with pytest.raises(DataError, match=f'images/val.zip: member {member} does not decode as a JPEG'):
    _prepare_mini(source, tmp_path)
  source = synth.make_miniimagenet(tmp_path / 'b', layout='folder', splits=('val',),
                                   replace={member: synth.mini_jpeg(0, 0, (100, 90))})
  with pytest.raises(DataError, match=f'b/{member} is 100x90, expected 84x84: resize the images '
                                      'with scripts/prepare_miniimagenet.py'):
    _prepare_mini(source, tmp_path)
  source = synth.make_miniimagenet(tmp_path / 'c', splits=('val',))
  _damage_member(source / 'images' / 'val.zip', member)
  with pytest.raises(DataError, match=f'val.zip: member {member} cannot be read'):
    _prepare_mini(source, tmp_path)
  zip_path = source / 'images' / 'val.zip'
  zip_path.write_bytes(zip_path.read_bytes()[:1000])
  with pytest.raises(DataError, match='val.zip is not a readable zip .*corrupt or truncated'):
    _prepare_mini(source, tmp_path)
  assert not _is_prepared(tmp_path / 'tfds', 'mini_imagenet_maml')


def test_miniimagenet_checksums(tmp_path):
  """SHA256SUMS as the shared copy writes it: paths relative to the folder (splits/, images/)."""
  source = synth.make_miniimagenet(tmp_path / 'src', splits=('val',))
  files = ['splits/train.csv', 'splits/val.csv', 'splits/test.csv', 'images/val.zip']
  sums = {f: image_datasets.sha256(source / f) for f in files}
  (source / 'SHA256SUMS').write_text(''.join(f'{sums[f]}  {f}\n' for f in files))
  checked = image_datasets.verify_against_sha256sums(source, [source / f for f in files])
  assert checked == files
  (source / 'SHA256SUMS').write_text(f'{"f" * 64}  images/val.zip\n')
  with pytest.raises(DataError, match=f'images/val.zip: SHA-256 is {sums["images/val.zip"]}, '
                                      f'expected {"f" * 64}'):
    _prepare_mini(source, tmp_path)
  (source / 'SHA256SUMS').write_text(f'{"f" * 64}  splits/test.csv\n')
  with pytest.raises(DataError, match='splits/test.csv: SHA-256 is'):
    _prepare_mini(source, tmp_path)
  assert not _is_prepared(tmp_path / 'tfds', 'mini_imagenet_maml')


# --- end to end -----------------------------------------------------------------------------------

@PREPARED
def test_omniglot_row_trains_and_evaluates_on_synthetic_data(omniglot, omniglot_source,
                                                             synthetic_tfds, tmp_path, monkeypatch):
  """The Table 1 row's code path on any clone: 3 meta-updates, a validation, a 4-task test."""
  monkeypatch.setenv(image_datasets.TFDS_DIR_ENV, str(synthetic_tfds))
  cfg = experiments.get('omniglot_5way_1shot').replace(
      meta_batch_size=2, metatrain_iterations=3, val_every=3, num_val_tasks=2, num_test_tasks=4,
      eval_chunk=2, print_every=1, checkpoint_every=3, num_filters=8, test_num_updates=3,
      eval_shots=(1,), data_dir=str(omniglot_source))
  assert trainer.train(cfg, str(tmp_path)) == 3
  results = trainer.evaluate(cfg, str(tmp_path), split='test')
  assert len(results) == 1
  r = results[0]
  assert (r['shots'], r['iteration'], r['num_tasks'], r['metric']) == (1, 3, 4, 'accuracy')
  assert len(r['mean']) == 4 and all(0 <= m <= 100 for m in r['mean'])
  assert np.all(np.isfinite(r['ci95']))
  assert os.path.exists(tmp_path / 'results' / 'test_K1.json')
  # It tested the first 4 tasks of the synthetic test split's stream (the digest of their images).
  tasks = data_generator.sample_tasks(data_generator.make_sampler(cfg, 'test', 1), 4, 5, 5)
  assert np.isin(tasks.task.numpy(), omniglot['test'].class_ids).all()
  digest = hashlib.sha256()
  for support, query in zip(tasks.support_x.numpy(), tasks.query_x.numpy()):
    digest.update(support.tobytes())
    digest.update(query.tobytes())
  assert r['tasks_sha256'] == digest.hexdigest()
