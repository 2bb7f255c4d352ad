"""Omniglot and MiniImagenet for few-shot classification: prepared once with tensorflow-datasets.

The tfds builders below decode every PNG/JPEG once, preprocess it as the original code did
(cbfinn/maml, see shared/reference/paper-protocol.md §1.4) and write uint8 arrays into a tfds data
dir. Later runs read the arrays back in seconds (`load_split`); episodes never decode an image.

  * Omniglot (`OmniglotMaml`): the official `images_background.zip` and `images_evaluation.zip`,
    from a local folder or downloaded from github.com/brendenlake/omniglot with SHA-256 checks.
    Each 105x105 drawing is resized with PIL exactly as the original `resize_images.py`
    (`im.resize((28, 28), resample=Image.LANCZOS)` on the decoded image) and stored as uint8
    [28, 28, 1] with the values the original's `tf.image.decode_png` saw (0 stroke, 255 paper).
    The drawings are 1-bit (PIL mode '1') and PIL resizes mode '1' images with NEAREST whatever
    filter is asked for, so the original's "LANCZOS" 28x28 images, and these, are binary.
    Inversion (1 - x, strokes = 1) and /255 happen at episode time (data_generator.ImageTasks).
  * MiniImagenet (`MiniImagenetMaml`): the Ravi & Larochelle split CSVs and 84x84 JPEGs laid out
    `train|val|test/<wnid>/*.jpg` (a folder, or zips whose members have that layout), as written by
    the original `proc_images.py` or scripts/prepare_miniimagenet.py. JPEGs are decoded with
    `tf.io.decode_jpeg` (the original's decoder; PIL's differs by up to 15 levels) and stored as
    uint8 [84, 84, 3]; /255 happens at episode time. It cannot be downloaded (ImageNet terms of
    access).

Splits never share a class. Omniglot: the 1623 characters in global-id order (zip, alphabet,
character, all sorted), shuffled with Python's `random.seed(1); random.shuffle` as the original; the
first 1100 are train, the next 100 val, the last 423 test. The original listed its merged folder
with `os.listdir`, whose order depends on the file system, so no loader can promise the original's
exact characters; the sorted order makes the split the same on every machine. MiniImagenet: the
CSVs' 64/16/20 classes.

Every problem with the data raises `DataError` with the path and what to do.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import os
import pathlib
import random
import re
import zipfile
import zlib
from typing import Iterable, Iterator

from absl import logging
import numpy as np
from PIL import Image, ImageOps
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import util as tfds_download_util
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError


class DataError(Exception):
  """The raw data or the prepared cache is missing, damaged or laid out wrongly; says what to do."""


DATASOURCES = ('omniglot', 'miniimagenet', 'folder')
SPLITS = ('train', 'val', 'test')
TFDS_DIR_ENV = 'MAML_TFDS_DIR'
PREPARE_MINI = 'scripts/prepare_miniimagenet.py'
SHA256SUMS = 'SHA256SUMS'
# Files some zip tools add; they are not data and never images.
_ZIP_JUNK = re.compile(r'(^|/)(__MACOSX/|\.DS_Store$)')


def default_tfds_dir() -> str:
  """Where prepared datasets live: $MAML_TFDS_DIR, else ~/tensorflow_datasets (tfds' default)."""
  return os.environ.get(TFDS_DIR_ENV) or os.path.expanduser('~/tensorflow_datasets')


# --- checksums and zips ---------------------------------------------------------------------------

def sha256(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, where: str) -> None:
  """Raises DataError naming the file, the expected and the actual SHA-256 if they differ."""
  actual = sha256(path)
  if actual != expected:
    raise DataError(f'{path}: SHA-256 is {actual}, expected {expected} ({where}). The file is '
                    'damaged or not the one expected: download or copy it again.')


def verify_against_sha256sums(folder: pathlib.Path, files: Iterable[pathlib.Path]) -> list[str]:
  """Checks `files` against folder/SHA256SUMS when the folder has one; returns the names checked.

  Files the list does not name are not checked (their zips are still opened and their layout
  checked before use).
  """
  sums_path = folder / SHA256SUMS
  if not sums_path.exists():
    logging.info('%s has no %s: checking the layout of the files only', folder, SHA256SUMS)
    return []
  expected = {}
  for number, line in enumerate(sums_path.read_text().splitlines(), start=1):
    fields = line.split(maxsplit=1)
    if not fields:
      continue
    if len(fields) != 2 or not re.fullmatch(r'[0-9a-fA-F]{64}', fields[0]):
      raise DataError(f'{sums_path}:{number} is not "<sha256>  <file>" (sha256sum\'s format); '
                      'fix or delete the line')
    expected[os.path.normpath(fields[1].lstrip('*'))] = fields[0].lower()
  checked = []
  for path in files:
    name = os.path.normpath(os.path.relpath(path, folder))
    if name in expected:
      verify_sha256(path, expected[name], f'listed in {sums_path}')
      checked.append(name)
    else:
      logging.info('%s does not list %s: checking its layout only', sums_path, name)
  return checked


def open_zip(path: pathlib.Path) -> zipfile.ZipFile:
  """Opens a zip, or raises DataError for a missing or corrupt (e.g. truncated) file."""
  if not path.is_file():
    raise DataError(f'missing file {path}')
  try:
    return zipfile.ZipFile(path)
  except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
    raise DataError(f'{path} is not a readable zip ({e}); it is corrupt or truncated: download '
                    'or copy it again') from e


def read_member(archive: zipfile.ZipFile, name: str) -> bytes:
  try:
    return archive.read(name)
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
    raise DataError(f'{archive.filename}: member {name} cannot be read ({e}); the zip is corrupt: '
                    'download or copy it again') from e


def _data_members(archive: zipfile.ZipFile) -> list[str]:
  """The file members (no directory entries, no zip-tool junk), sorted."""
  return sorted(n for n in archive.namelist() if not n.endswith('/') and not _ZIP_JUNK.search(n))


# --- Omniglot -------------------------------------------------------------------------------------

OMNIGLOT_ZIPS = ('images_background.zip', 'images_evaluation.zip')
OMNIGLOT_URL = 'https://github.com/brendenlake/omniglot/raw/master/python/'
# The official zips' SHA-256, as tensorflow-datasets 4.9 records them in
# tensorflow_datasets/url_checksums/omniglot.txt (with sizes 9,464,212 and 6,462,886 bytes).
OMNIGLOT_SHA256 = {
    'images_background.zip': 'ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640',
    'images_evaluation.zip': '1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee',
}
OMNIGLOT_NUM_CHARACTERS = {'images_background.zip': 964, 'images_evaluation.zip': 659}
OMNIGLOT_SPLIT_SIZES = {'train': 1100, 'val': 100, 'test': 423}
OMNIGLOT_SPLIT_SEED = 1  # the original's random.seed(1)
_OMNIGLOT_MEMBER = re.compile(
    r'^(images_background|images_evaluation)/([^/]+)/(character\d+)/([^/]+\.png)$')


@dataclasses.dataclass(frozen=True)
class OmniglotCharacter:
  zip_name: str
  alphabet: str
  character: str
  members: tuple[str, ...]

  @property
  def name(self) -> str:
    return f'{self.alphabet}/{self.character}'


def omniglot_index(path: pathlib.Path, zip_name: str) -> list[OmniglotCharacter]:
  """The characters of one official Omniglot zip, sorted by (alphabet, character).

  zip_name: which official zip `path` is (tfds names its downloads after the URL's hash).
  Raises DataError for a missing or corrupt zip, a member outside
  `images_background|images_evaluation/<Alphabet>/characterNN/*.png`, or a character count other
  than the official one (the 1100/100/423 split needs all 1623 characters).
  """
  top = zip_name[:-len('.zip')]
  with open_zip(path) as archive:
    members = _data_members(archive)
  layout = f'{top}/<Alphabet>/characterNN/<drawing>.png'
  if not members:
    raise DataError(f'{path} holds no files; expected {layout}')
  groups = collections.defaultdict(list)
  for name in members:
    match = _OMNIGLOT_MEMBER.match(name)
    if not match or match.group(1) != top:
      raise DataError(f'{path}: member {name!r} is not laid out as {layout} (the official zip\'s '
                      'layout); use the official zips from github.com/brendenlake/omniglot')
    groups[(match.group(2), match.group(3))].append(name)
  characters = [OmniglotCharacter(zip_name, a, c, tuple(groups[a, c])) for a, c in sorted(groups)]
  want = OMNIGLOT_NUM_CHARACTERS[zip_name]
  if len(characters) != want:
    raise DataError(f'{path} holds {len(characters)} characters, the official zip {want}: the '
                    f'1100/100/423 split needs all 1623 characters; use the official zip')
  return characters


def omniglot_local_zips(source_dir: str | os.PathLike) -> dict[str, pathlib.Path]:
  """The two Omniglot zips in a user's folder, checked against its SHA256SUMS when present."""
  folder = pathlib.Path(source_dir).expanduser()
  what = ('the folder holding the official Omniglot zips (images_background.zip, '
          'images_evaluation.zip from github.com/brendenlake/omniglot/tree/master/python)')
  if not folder.is_dir():
    raise DataError(f'no folder {folder}; pass {what}, or no data_dir to download them')
  paths = {name: folder / name for name in OMNIGLOT_ZIPS}
  for name, path in paths.items():
    if path.exists():
      continue
    unzipped = folder / name[:-len('.zip')]
    if unzipped.is_dir():
      raise DataError(f'missing {path}: {folder} holds the unzipped folder {unzipped.name}/ but '
                      f'this loader reads the zips; put {name} there (zip -r {name} '
                      f'{unzipped.name})')
    stray = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == '.png')[:3]
    hint = f' (it holds images directly: {", ".join(stray)})' if stray else ''
    raise DataError(f'missing {path}{hint}; pass {what}')
  verify_against_sha256sums(folder, paths.values())
  return paths


def download_omniglot(dl_manager) -> dict[str, pathlib.Path]:
  """Downloads the two official zips (tfds caches them) and checks their SHA-256."""
  manual = (f'download {" and ".join(OMNIGLOT_URL + n for n in OMNIGLOT_ZIPS)} yourself and pass '
            'their folder as data_dir')
  try:
    downloaded = dl_manager.download({n: OMNIGLOT_URL + n for n in OMNIGLOT_ZIPS})
  except NonMatchingChecksumError as e:
    # tfds checks the same official checksums (its url_checksums/omniglot.txt) first.
    raise DataError(f'a downloaded Omniglot zip is not the official file: {e}\nRetry, or '
                    f'{manual}') from e
  except (OSError, tfds_download_util.DownloadError) as e:  # requests' errors are OSErrors
    raise DataError(f'cannot download Omniglot from {OMNIGLOT_URL} ({e}); {manual}') from e
  paths = {n: pathlib.Path(p) for n, p in downloaded.items()}
  for name, path in paths.items():
    verify_sha256(path, OMNIGLOT_SHA256[name], f'the official checksum of {OMNIGLOT_URL}{name}')
  return paths


def omniglot_split_ids(num_characters: int = 1623) -> dict[str, np.ndarray]:
  """Global character ids of each split, as the original: seed 1, shuffle, 1100/100/rest.

  Returns {'train': [1100], 'val': [100], 'test': [423]} int32 ids, each sorted.
  """
  ids = list(range(num_characters))
  # A private Random: the same permutation as the original's random.seed(1); random.shuffle(list)
  # without touching the global RNG.
  random.Random(OMNIGLOT_SPLIT_SEED).shuffle(ids)
  n_train, n_val = OMNIGLOT_SPLIT_SIZES['train'], OMNIGLOT_SPLIT_SIZES['val']
  parts = {'train': ids[:n_train], 'val': ids[n_train:n_train + n_val],
           'test': ids[n_train + n_val:]}
  return {k: np.array(sorted(v), np.int32) for k, v in parts.items()}


def omniglot_preprocess(png: bytes, name: str) -> np.ndarray:
  """One drawing -> uint8 [28, 28, 1] as the original resize_images.py, then decode_png.

  name: where the bytes come from, for the error message.
  """
  try:
    with Image.open(io.BytesIO(png)) as im:
      im.load()
      # As the original, the resize sees the image as decoded (mode '1'), so PIL picks NEAREST.
      small = im.resize((28, 28), resample=Image.LANCZOS)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f'{name} does not decode as an image ({e}); the file is damaged: download or '
                    'copy the zip again') from e
  return np.asarray(small.convert('L'), np.uint8)[:, :, None]


class _SourceBuilder:
  """What both builders share: the folder of raw files they read, and their DatasetInfo from the
  class's DESCRIPTION, HOMEPAGE and `_features()`. (A plain mixin, so tfds registers no dataset.)"""
  DESCRIPTION = HOMEPAGE = ''

  def __init__(self, *, source_dir: str | os.PathLike | None = None, **kwargs):
    self._source_dir = source_dir
    super().__init__(**kwargs)

  def _features(self) -> dict:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                 features=tfds.features.FeaturesDict(self._features()),
                                 homepage=self.HOMEPAGE, disable_shuffling=True)


class OmniglotMaml(_SourceBuilder, tfds.core.GeneratorBasedBuilder):
  """Omniglot at 28x28 as cbfinn/maml preprocesses it; tfds splits 'background' and 'evaluation'.

  Each example: image uint8 [28, 28, 1] (0 = stroke, 255 = paper, not yet inverted), label = global
  character id 0..1622 (zips, alphabets, characters in sorted order; names 'Alphabet/characterNN'),
  alphabet, character, drawing (the file name).
  """
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'PIL resize to 28x28 as cbfinn/maml resize_images.py; uint8, zlib.'}

  DESCRIPTION = 'Omniglot (Lake et al. 2015) resized to 28x28 as cbfinn/maml.'
  HOMEPAGE = 'https://github.com/brendenlake/omniglot'
  # source_dir: folder with the two official zips; None downloads them (SHA-256 checked).

  def _features(self) -> dict:
    return {
        'image': tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8, encoding='zlib'),
        'label': tfds.features.ClassLabel(num_classes=1623),
        'alphabet': tfds.features.Text(),
        'character': tfds.features.Text(),
        'drawing': tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    if self._source_dir is not None:
      paths = omniglot_local_zips(self._source_dir)
    else:
      paths = download_omniglot(dl_manager)
    characters = [c for name in OMNIGLOT_ZIPS for c in omniglot_index(paths[name], name)]
    self.info.features['label'].names = [c.name for c in characters]
    return {split: self._generate_examples(paths[name], name, characters)
            for split, name in zip(('background', 'evaluation'), OMNIGLOT_ZIPS)}

  def _generate_examples(self, path, zip_name, characters) -> Iterator[tuple[str, dict]]:
    # Labels are global: `characters` holds both zips' characters in global-id order.
    with open_zip(path) as archive:
      for label, char in enumerate(characters):
        if char.zip_name != zip_name:
          continue
        for member in char.members:
          image = omniglot_preprocess(read_member(archive, member), f'{path}: member {member}')
          yield member, {'image': image, 'label': label, 'alphabet': char.alphabet,
                         'character': char.character, 'drawing': os.path.basename(member)}


# --- MiniImagenet ---------------------------------------------------------------------------------

MINI_SPLIT_CLASSES = {'train': 64, 'val': 16, 'test': 20}
_MINI_MEMBER = re.compile(r'^(?:.*/)?(train|val|test)/(n\d{8})/([^/]+)$')
_MINI_IMAGE = re.compile(r'\.jpe?g$', re.IGNORECASE)


def miniimagenet_csvs(source_dir: pathlib.Path) -> dict[str, pathlib.Path]:
  """train/val/test.csv in source_dir/splits/ or source_dir/."""
  for folder in (source_dir / 'splits', source_dir):
    paths = {s: folder / f'{s}.csv' for s in SPLITS}
    if all(p.is_file() for p in paths.values()):
      return paths
  raise DataError(f'no split CSVs in {source_dir}: expected train.csv, val.csv, test.csv (Ravi & '
                  'Larochelle, github.com/twitter/meta-learning-lstm data/miniImagenet) in '
                  f'{source_dir / "splits"} or {source_dir}')


def read_split_csv(path: pathlib.Path) -> dict[str, list[str]]:
  """{wnid: [file names]} in CSV order from a Ravi & Larochelle `filename,label` CSV."""
  classes = collections.defaultdict(list)
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  if not rows or [c.strip() for c in rows[0]] != ['filename', 'label']:
    raise DataError(f'{path} does not start with the header filename,label: not a Ravi & '
                    'Larochelle split CSV')
  for line, row in enumerate(rows[1:], start=2):
    if len(row) != 2:
      raise DataError(f'{path}:{line}: expected filename,label, got {row!r}')
    classes[row[1]].append(row[0])
  return dict(classes)


def miniimagenet_classes(source_dir: str | os.PathLike) -> dict[str, list[str]]:
  """The wnids of each split from the CSVs, in CSV order; checks 64/16/20 and disjointness."""
  source_dir = pathlib.Path(source_dir).expanduser()
  csvs = miniimagenet_csvs(source_dir)
  splits = {s: list(read_split_csv(csvs[s])) for s in SPLITS}
  seen = {}
  for split, wnids in splits.items():
    if len(wnids) != MINI_SPLIT_CLASSES[split]:
      raise DataError(f'{csvs[split]} lists {len(wnids)} classes, the Ravi & Larochelle split '
                      f'{MINI_SPLIT_CLASSES[split]}: use the official split CSVs')
    for wnid in wnids:
      if wnid in seen:
        raise DataError(f'class {wnid} is in both {seen[wnid]}.csv and {split}.csv; use the '
                        'official split CSVs')
      seen[wnid] = split
  return splits


@dataclasses.dataclass(frozen=True)
class _MiniImage:
  container: pathlib.Path  # a zip or a split folder's root
  name: str                # the member name, or the path relative to the root


def _image_roots(source_dir: pathlib.Path) -> list[pathlib.Path]:
  return [p for p in (source_dir / 'images', source_dir) if p.is_dir()]


def miniimagenet_index(source_dir: pathlib.Path) -> tuple[dict[str, dict[str, list[_MiniImage]]],
                                                          list[pathlib.Path]]:
  """Finds the images: {split: {wnid: [images]}} and the zips used.

  Looks in source_dir/images and source_dir for split folders (train/, val/, test/) or zips whose
  members are `<split>/<wnid>/<file>.jpg`. An image found twice (a zip unzipped beside itself, or
  in two zips) is an error: its copies would count twice in its class, and a task could take the
  same image as a support and a query example.
  """
  found = {s: collections.defaultdict(list) for s in SPLITS}
  seen = {}  # (split, wnid, file) -> where it was found first
  zips = []
  for root in _image_roots(source_dir):
    for split in SPLITS:
      folder = root / split
      if not folder.is_dir():
        continue
      for path in sorted(folder.rglob('*')):
        if path.is_dir() or _ZIP_JUNK.search(path.as_posix()):
          continue
        _add_mini_image(found, seen, root, path.relative_to(root).as_posix(), root)
    for path in sorted(root.glob('*.zip')):
      with open_zip(path) as archive:
        members = _data_members(archive)
      zips.append(path)
      for name in members:
        _add_mini_image(found, seen, path, name, path)
    if any(found[s] for s in SPLITS):
      break
  if not any(found[s] for s in SPLITS):
    jpgs = [p for r in _image_roots(source_dir) for p in r.glob('*.jpg')][:1]
    hint = (f' It holds JPEGs directly ({jpgs[0].name}, ...), like the Ravi & Larochelle images/ '
            f'folder: run {PREPARE_MINI} to resize and sort them.') if jpgs else ''
    raise DataError(f'no MiniImagenet images in {source_dir}: expected folders or zips laid out as '
                    f'train|val|test/<wnid>/<file>.jpg (84x84), in {source_dir / "images"} or '
                    f'{source_dir}.{hint} MiniImagenet cannot be downloaded (ImageNet terms of '
                    f'access): make it from ImageNet with {PREPARE_MINI}.')
  return {s: dict(v) for s, v in found.items()}, zips


def _add_mini_image(found, seen, container: pathlib.Path, name: str, where: pathlib.Path) -> None:
  match = _MINI_MEMBER.match(name)
  if not match or not _MINI_IMAGE.search(name):
    raise DataError(f'{where}: {name!r} is not laid out as train|val|test/<wnid>/<file>.jpg; '
                    f'prepare the images with {PREPARE_MINI}')
  place = f'{container}: member {name}' if container.suffix == '.zip' else str(container / name)
  first = seen.setdefault(match.groups(), place)
  if first != place:
    raise DataError(f'{"/".join(match.groups())} is in {first} and in {place}: each image must be '
                    'in one place (a zip unzipped beside itself? two zips that overlap?); delete '
                    'one of the copies')
  found[match.group(1)][match.group(2)].append(_MiniImage(container, name))


def miniimagenet_decode(data: bytes, name: str) -> np.ndarray:
  """JPEG bytes -> uint8 [84, 84, 3] with tf.io.decode_jpeg (the original's decoder)."""
  try:
    image = tf.io.decode_jpeg(data, channels=3).numpy()
  except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
    raise DataError(f'{name} does not decode as a JPEG ({e.message}); the file is damaged: copy it '
                    f'again or re-run {PREPARE_MINI}') from e
  if image.shape != (84, 84, 3):
    raise DataError(f'{name} is {image.shape[1]}x{image.shape[0]}, expected 84x84: resize the '
                    f'images with {PREPARE_MINI}')
  return image


class MiniImagenetMaml(_SourceBuilder, tfds.core.GeneratorBasedBuilder):
  """MiniImagenet (Ravi & Larochelle splits), decoded once; tfds splits 'train', 'val', 'test'.

  Each example: image uint8 [84, 84, 3]; label = global class id 0..99 (train CSV classes, then
  val, then test, each in CSV order; names are the wnids); wnid; filename. A class keeps whatever
  images the source has. A split with no images at all in the source is not prepared (logged), and
  `load_split` says so; a split with only some of its classes is an error.
  """
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': '84x84 JPEGs decoded with tf.io.decode_jpeg, stored as uint8.'}

  DESCRIPTION = 'MiniImagenet 84x84 (Vinyals et al. 2016) with the Ravi & Larochelle splits.'
  HOMEPAGE = 'https://github.com/twitter/meta-learning-lstm'
  # source_dir: folder with the split CSVs and the images (see the module docstring).

  def _features(self) -> dict:
    return {
        # Raw bytes: zlib keeps 80% of a decoded photo and adds ~3 s to every train load.
        'image': tfds.features.Tensor(shape=(84, 84, 3), dtype=np.uint8, encoding='bytes'),
        'label': tfds.features.ClassLabel(num_classes=100),
        'wnid': tfds.features.Text(),
        'filename': tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    if self._source_dir is None:
      raise DataError(f'MiniImagenet cannot be downloaded (ImageNet terms of access): make it with '
                      f'{PREPARE_MINI} and pass the folder it writes as data_dir')
    source = pathlib.Path(self._source_dir).expanduser()
    if not source.is_dir():
      raise DataError(f'no folder {source}: pass the MiniImagenet folder (split CSVs and '
                      f'train|val|test/<wnid>/*.jpg, or zips of them); make it with {PREPARE_MINI}')
    classes = miniimagenet_classes(source)
    csvs = miniimagenet_csvs(source)
    found, zips = miniimagenet_index(source)
    verify_against_sha256sums(source, list(csvs.values()) + zips)
    wnids = [w for s in SPLITS for w in classes[s]]
    self.info.features['label'].names = wnids
    label = {w: i for i, w in enumerate(wnids)}
    generators = {}
    for split in SPLITS:
      if not found[split]:
        logging.warning('MiniImagenet: no %s images in %s; the %s split is not prepared', split,
                        source, split)
        continue
      have, want = set(found[split]), set(classes[split])
      for wnid in sorted(have - want):
        other = [s for s in SPLITS if wnid in classes[s]]
        where = f'the CSVs put it in {other[0]}' if other else 'no split CSV lists it'
        raise DataError(f'{source}: class {wnid} is in the {split} images but {where}; the images '
                        f'do not match the CSVs: re-run {PREPARE_MINI}')
      missing = [w for w in classes[split] if w not in have]
      if missing:
        raise DataError(f'{source}: {len(missing)} of the {len(want)} {split} classes have no '
                        f'images (e.g. {missing[0]}); add them or re-run {PREPARE_MINI}')
      items = [(label[w], w, img) for w in classes[split] for img in found[split][w]]
      generators[split] = self._generate_examples(items)
    return generators

  def _generate_examples(self, items) -> Iterator[tuple[str, dict]]:
    archives = {}
    try:
      for label, wnid, img in items:
        if img.container.suffix == '.zip':
          if img.container not in archives:
            archives[img.container] = open_zip(img.container)
          data = read_member(archives[img.container], img.name)
          where = f'{img.container}: member {img.name}'
        else:
          path = img.container / img.name
          data = path.read_bytes()
          where = str(path)
        yield f'{img.container.name}/{img.name}', {
            'image': miniimagenet_decode(data, where), 'label': label, 'wnid': wnid,
            'filename': os.path.basename(img.name)}
    finally:
      for archive in archives.values():
        archive.close()


# --- A folder of classes (the folder datasource) ---------------------------------------------------

FOLDER_LAYOUTS = ('split folders', 'split CSVs', 'class folders')
# The inputs of the datasets whose preprocessing is fixed (the folder's: FolderSpec.shape).
IMAGE_SHAPES = {'omniglot': (28, 28, 1), 'miniimagenet': (84, 84, 3)}
# Files that are no one's images: hidden files (.DS_Store, ._*) and what file managers add.
_NOT_IMAGES = frozenset({'thumbs.db', 'desktop.ini'})
_IMAGE_SUFFIXES = frozenset(s.lower() for s in Image.registered_extensions())
FOLDER_DOC = 'docs/your-own-data.md'


@dataclasses.dataclass(frozen=True)
class FolderSpec:
  """How the folder datasource reads a folder (the row's config.FolderData fields).

  image_size, grey: every image is resized to [image_size, image_size, 1 (grey) or 3 (RGB)].
  train_fraction, val_fraction, split_seed: the split of the classes when the folder has neither
  split folders nor split CSVs (seeded shuffle of the sorted class names; the rest are test).
  """
  image_size: int
  grey: bool
  train_fraction: float = 0.64
  val_fraction: float = 0.16
  split_seed: int = 0

  @property
  def shape(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, 1 if self.grey else 3)


@dataclasses.dataclass(frozen=True)
class FolderIndex:
  """The classes of a folder, split: {split: {class name: [image paths, sorted]}}, classes in order.

  Class names are paths relative to the folder ('cat', or 'train/cat' for split folders).
  """
  root: pathlib.Path
  layout: str
  splits: dict[str, dict[str, list[pathlib.Path]]]
  csvs: tuple[pathlib.Path, ...] = ()

  def key(self, spec: FolderSpec) -> str:
    """A hash of what the prepared cache holds: every image's path, size and modification time,
    the split CSVs, the classes of each split and the resizing. A changed folder gets a new key,
    so it is prepared again; an unchanged one is read from its cache."""
    digest = hashlib.sha256()
    digest.update(repr((FolderImages.VERSION, spec.image_size, spec.grey, self.layout)).encode())
    for split in SPLITS:
      for name, paths in self.splits[split].items():
        digest.update(f'\n{split}\t{name}'.encode())
        for path in paths:
          stat = path.stat()
          digest.update(f'\n{path.relative_to(self.root).as_posix()}\t{stat.st_size}\t'
                        f'{stat.st_mtime_ns}'.encode())
    for path in self.csvs:
      digest.update(path.read_bytes())
    return digest.hexdigest()[:16]

  @property
  def class_names(self) -> list[str]:
    """Every class, train first, then val, then test: the global label order."""
    return [name for split in SPLITS for name in self.splits[split]]


def _is_data_file(path: pathlib.Path) -> bool:
  return not path.name.startswith('.') and path.name.lower() not in _NOT_IMAGES


def _class_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """The files of one class folder (sub-folders included), sorted; DataError if none."""
  files = data_files(folder)
  if not files:
    raise DataError(f'class folder {folder} holds no images: add some or remove the folder')
  return files


def data_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """Every file below `folder` (sub-folders included) but hidden ones, sorted."""
  return sorted(p for p in folder.rglob('*')
                if p.is_file() and all(_is_data_file(q) for q in p.relative_to(folder).parents
                                       if q.name) and _is_data_file(p))


def _sub_folders(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in folder.iterdir() if p.is_dir() and _is_data_file(p))


def _refuse_loose_images(folder: pathlib.Path, what: str) -> None:
  """DataError if `folder` holds images directly: each class needs a folder of its own."""
  loose = sorted(p.name for p in folder.iterdir()
                 if p.is_file() and _is_data_file(p) and p.suffix.lower() in _IMAGE_SUFFIXES)
  if loose:
    raise DataError(f'{folder} holds images directly ({", ".join(loose[:3])}{", ..." * (len(loose) > 3)}); '
                    f'{what} must hold one sub-folder of images per class ({FOLDER_DOC})')


def class_folders(folder: pathlib.Path, what: str) -> dict[str, list[pathlib.Path]]:
  """{class name: its image files, sorted} of a folder holding one sub-folder per class, classes in
  sorted order. what: how errors name the folder. DataError for images outside class folders or
  a class folder with no files."""
  _refuse_loose_images(folder, what)
  return {sub.name: _class_files(sub) for sub in _sub_folders(folder)}


def _split_csvs(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """train/val/test.csv in root/splits or root (all three, or DataError naming the missing ones),
  or {} when there is none."""
  for folder in (root / 'splits', root):
    paths = {s: folder / f'{s}.csv' for s in SPLITS}
    found = [s for s, p in paths.items() if p.is_file()]
    if found and len(found) < len(SPLITS):
      missing = [f'{s}.csv' for s in SPLITS if s not in found]
      raise DataError(f'{folder} has {", ".join(f"{s}.csv" for s in found)} but no '
                      f'{" or ".join(missing)}: split CSVs must name the train, val and test '
                      f'classes ({FOLDER_DOC})')
    if found:
      return paths
  return {}


def folder_index(root: str | os.PathLike, spec: FolderSpec) -> FolderIndex:
  """Finds the classes of a user's folder and splits them (train, val, test).

  Layouts, the first that applies:
    split folders  root/train|val|test/<class>/<images> (all three);
    split CSVs     train.csv, val.csv, test.csv (in root/splits or root) with the header
                   filename,label as MiniImagenet's: the image `filename` of class `label` is
                   root/<label>/<filename> or root/images/<filename>;
    class folders  root/<class>/<images>: the sorted classes shuffled with
                   random.Random(spec.split_seed), then round(C * train_fraction) train,
                   round(C * val_fraction) val and the rest test.
  Any file below a class folder is an image (hidden files aside): one that does not decode stops
  the preparation, naming it. Raises DataError for a missing folder, a split with no class, a
  class in two splits or with no images, images outside class folders.
  """
  root = pathlib.Path(root).expanduser()
  if not root.is_dir():
    raise DataError(f'no folder {root}: --data_dir must be a folder with one sub-folder of images '
                    f'per class ({FOLDER_DOC})')
  split_dirs = [s for s in SPLITS if (root / s).is_dir()]
  csvs = _split_csvs(root) if not split_dirs else {}
  splits = {s: {} for s in SPLITS}
  if split_dirs:
    layout = 'split folders'
    missing = [f'{s}/' for s in SPLITS if s not in split_dirs]
    if missing:
      raise DataError(f'{root} has {", ".join(f"{s}/" for s in split_dirs)} but no '
                      f'{" or ".join(missing)}: split folders must hold the train, val and test '
                      f'classes, or put the class folders in {root} itself to split them by '
                      f'--train_fraction and --val_fraction ({FOLDER_DOC})')
    seen = {}
    for split in SPLITS:
      for name, files in class_folders(root / split, str(root / split)).items():
        if name in seen:
          raise DataError(f'class {name} is in {seen[name]}/ and in {split}/ of {root}: the '
                          'splits must not share a class')
        seen[name] = split
        splits[split][f'{split}/{name}'] = files
  elif csvs:
    layout = 'split CSVs'
    seen = {}
    for split in SPLITS:
      for label, names in read_split_csv(csvs[split]).items():
        if label in seen:
          raise DataError(f'class {label} is in both {seen[label]}.csv and {split}.csv: the '
                          'splits must not share a class')
        seen[label] = split
        paths = []
        for name in names:
          candidates = (root / label / name, root / 'images' / name)
          path = next((p for p in candidates if p.is_file()), None)
          if path is None:
            raise DataError(f'{csvs[split]} lists {name} of class {label}, which is neither '
                            f'{candidates[0]} nor {candidates[1]}')
          paths.append(path)
        splits[split][label] = paths
  else:
    layout = 'class folders'
    classes = class_folders(root, str(root))
    if not classes:
      raise DataError(f'{root} holds no class folders: expected one sub-folder of images per '
                      f'class ({FOLDER_DOC})')
    names = sorted(classes)
    random.Random(spec.split_seed).shuffle(names)
    n_train = round(len(names) * spec.train_fraction)
    n_val = round(len(names) * spec.val_fraction)
    parts = {'train': names[:n_train], 'val': names[n_train:n_train + n_val],
             'test': names[n_train + n_val:]}
    for split in SPLITS:
      splits[split] = {name: classes[name] for name in sorted(parts[split])}
  for split in SPLITS:
    if not splits[split]:
      how = (f'its {len([n for s in splits.values() for n in s])} classes split by '
             f'--train_fraction={spec.train_fraction} and --val_fraction={spec.val_fraction} '
             'leave none there: add classes or change the fractions' if layout == 'class folders'
             else f'add classes to it ({layout})')
      raise DataError(f'the {split} split of {root} is empty: {how}')
  return FolderIndex(root, layout, splits, tuple(csvs[s] for s in SPLITS) if csvs else ())


def _flatten_alpha(im: Image.Image) -> Image.Image:
  """A transparent image composited on white paper (transparent pixels are often black)."""
  if im.mode in ('RGBA', 'LA', 'PA') or (im.mode == 'P' and 'transparency' in im.info):
    im = im.convert('RGBA')
    return Image.alpha_composite(Image.new('RGBA', im.size, (255, 255, 255, 255)), im)
  return im


def read_image(path: str | os.PathLike, size: int, grey: bool, binary: bool = False) -> np.ndarray:
  """One image file -> uint8 [size, size, 1 (grey) or 3]: EXIF orientation applied, transparency on
  white, resized (stretched to a square) with LANCZOS. binary: thresholded at 128 to 0 or 255, as
  Omniglot's 1-bit drawings. DataError naming the file if Pillow cannot read it."""
  try:
    with Image.open(path) as im:
      im.load()
      im = _flatten_alpha(ImageOps.exif_transpose(im))
      im = im.convert('L' if grey else 'RGB').resize((size, size), resample=Image.LANCZOS)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f'{path} is not an image Pillow can read ({e}): fix or remove it') from e
  image = np.asarray(im, np.uint8)
  if binary:
    image = np.where(image >= 128, 255, 0).astype(np.uint8)
  return image.reshape(size, size, 1 if grey else 3)


class FolderImages(_SourceBuilder, tfds.core.GeneratorBasedBuilder):
  """A user's folder of classes, resized once; tfds splits 'train', 'val', 'test'.

  Each example: image uint8 [S, S, 1 or 3] (FolderSpec), label = global class id (FolderIndex's
  order: train, val, test classes; names are the class names), file (the path in the folder).
  Every prepared folder has a data dir of its own, named by FolderIndex.key.
  """
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'PIL LANCZOS resize to a square, grey or RGB, stored as uint8.'}
  DESCRIPTION = 'A folder of image classes for N-way K-shot episodes (docs/your-own-data.md).'

  def __init__(self, *, index: FolderIndex, spec: FolderSpec, **kwargs):
    self._index, self._spec = index, spec
    super().__init__(source_dir=index.root, **kwargs)

  def _features(self) -> dict:
    return {
        'image': tfds.features.Tensor(shape=self._spec.shape, dtype=np.uint8, encoding='zlib'),
        'label': tfds.features.ClassLabel(names=self._index.class_names),
        'file': tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    label = {name: i for i, name in enumerate(self._index.class_names)}
    return {split: self._generate_examples([(label[name], path) for name, paths in classes.items()
                                            for path in paths])
            for split, classes in self._index.splits.items()}

  def _generate_examples(self, items) -> Iterator[tuple[str, dict]]:
    for label, path in items:
      name = path.relative_to(self._index.root).as_posix()
      yield name, {'image': read_image(path, self._spec.image_size, self._spec.grey),
                   'label': label, 'file': name}


# --- preparation and loading ----------------------------------------------------------------------

BUILDERS = {'omniglot': OmniglotMaml, 'miniimagenet': MiniImagenetMaml}


def prepare(datasource: str, data_dir: str | os.PathLike | None = None,
            tfds_dir: str | os.PathLike | None = None,
            folder: FolderSpec | None = None) -> tfds.core.DatasetBuilder:
  """Prepares a dataset into the tfds dir once; later calls only open it.

  Args:
    datasource: 'omniglot', 'miniimagenet' or 'folder'.
    data_dir: the folder with the raw files (zips, CSVs; the folder datasource: its classes); None
      downloads Omniglot (MiniImagenet cannot be downloaded; a folder must be given). Only read
      when the tfds dir has no prepared copy yet (a folder is listed every time: its key).
    tfds_dir: the tfds data dir; None means `default_tfds_dir()`.
    folder: the folder datasource's resizing and split (FolderSpec); only for 'folder'.

  Returns the prepared builder.
  """
  if datasource not in DATASOURCES:
    raise ValueError(f'no image dataset {datasource!r}; choose one of {DATASOURCES}')
  tfds_dir = os.fspath(tfds_dir or default_tfds_dir())
  if datasource == 'folder':
    if data_dir is None:
      raise DataError(f'the folder datasource needs --data_dir=DIR, a folder with one sub-folder '
                      f'of images per class ({FOLDER_DOC})')
    if folder is None:
      raise ValueError('the folder datasource needs a FolderSpec')
    index = folder_index(data_dir, folder)
    # A data dir per folder content: a changed folder is prepared anew beside the old cache.
    builder = FolderImages(data_dir=os.path.join(tfds_dir, 'folder_images', index.key(folder)),
                           index=index, spec=folder)
  else:
    builder = BUILDERS[datasource](data_dir=tfds_dir, source_dir=data_dir)
  if builder.is_prepared():
    return builder
  if datasource == 'miniimagenet' and data_dir is None:
    raise DataError(f'MiniImagenet is not prepared in {tfds_dir} and cannot be downloaded '
                    f'(ImageNet terms of access): make it with {PREPARE_MINI} and pass the folder '
                    'as data_dir')
  logging.info('preparing %s from %s into %s (once)', datasource, data_dir or 'the official URLs',
               builder.data_dir if datasource == 'folder' else tfds_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


@dataclasses.dataclass(frozen=True)
class ClassImages:
  """The images of one split, class after class.

  images: uint8 [M, H, W, C] as stored (Omniglot not yet inverted); the images of class c are
    images[offsets[c]:offsets[c] + counts[c]].
  offsets, counts: int64 [C].
  class_ids: int32 [C], global class ids (Omniglot 0..1622, MiniImagenet 0..99, a folder's in
    FolderIndex order), ascending.
  class_names: C names ('Alphabet/characterNN', the wnid, or a folder's class name).
  """
  datasource: str
  split: str
  images: np.ndarray
  offsets: np.ndarray
  counts: np.ndarray
  class_ids: np.ndarray
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_ids)

  def class_images(self, c: int) -> np.ndarray:
    """uint8 [counts[c], H, W, C], the images of the c-th class of this split."""
    return self.images[self.offsets[c]:self.offsets[c] + self.counts[c]]


def _read_tfds_split(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [M, H, W, C], labels int64 [M]) of one prepared split, in stored order."""
  if split not in builder.info.splits:
    raise DataError(f'the {builder.name} cache in {builder.data_dir} has no {split!r} split (its '
                    f'source had no {split} images when it was prepared); delete '
                    f'{builder.data_dir} and prepare again from a complete folder, or set '
                    f'${TFDS_DIR_ENV} to another dir')
  ds = builder.as_dataset(split=split)
  ds = ds.map(lambda ex: (ex['image'], ex['label']), num_parallel_calls=tf.data.AUTOTUNE)
  images, labels = [], []
  for x, y in ds.batch(4096).prefetch(2).as_numpy_iterator():
    images.append(x)
    labels.append(y)
  return np.concatenate(images), np.concatenate(labels)


def _group(datasource, split, images, labels, keep_ids, names) -> ClassImages:
  """Keeps the classes keep_ids and puts each class's images together (stored order within)."""
  keep = np.isin(labels, keep_ids)
  order = np.flatnonzero(keep)
  order = order[np.argsort(labels[order], kind='stable')]
  labels = labels[order]
  # MiniImagenet splits come stored class by class: skip the copy of up to 813 MB.
  if len(order) != len(images) or np.any(order != np.arange(len(order))):
    images = images[order]
  class_ids, offsets, counts = np.unique(labels, return_index=True, return_counts=True)
  return ClassImages(datasource, split, images, offsets.astype(np.int64), counts.astype(np.int64),
                     class_ids.astype(np.int32), tuple(names[i] for i in class_ids))


def load_split(datasource: str, split: str, data_dir: str | os.PathLike | None = None,
               tfds_dir: str | os.PathLike | None = None,
               folder: FolderSpec | None = None) -> ClassImages:
  """The images of one split in memory, preparing the dataset first if needed.

  Args:
    datasource: 'omniglot', 'miniimagenet' or 'folder'.
    split: 'train', 'val' or 'test' (Omniglot: the original's 1100/100/423 characters;
      MiniImagenet: the Ravi & Larochelle CSV classes; a folder: folder_index's split).
    data_dir, tfds_dir, folder: as `prepare`.

  Returns the process's one copy of the split (read-only images): a second call for the same
  prepared cache returns the same object without reading it again.
  """
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; choose one of {SPLITS}')
  builder = prepare(datasource, data_dir, tfds_dir, folder)
  # Kept for the process: evaluation asks for a split once per K (and tuning for the val split
  # again), and each Omniglot split reads all 32k images. A re-prepared cache has a new stamp.
  key = (datasource, split, str(builder.data_dir),
         os.stat(os.path.join(builder.data_dir, 'dataset_info.json')).st_mtime_ns)
  if key not in _LOADED:
    data = _load(builder, datasource, split)
    data.images.flags.writeable = False  # shared by every caller
    _LOADED[key] = data
    while len(_LOADED) > _LOADED_MAX:  # the oldest first: at most the three splits of one dataset
      del _LOADED[next(iter(_LOADED))]
  return _LOADED[key]


_LOADED: dict[tuple, ClassImages] = {}
_LOADED_MAX = 3


def _load(builder, datasource: str, split: str) -> ClassImages:
  """load_split's reading and grouping, checked against the expected number of classes."""
  names = builder.info.features['label'].names
  if datasource == 'omniglot':
    parts = [_read_tfds_split(builder, s) for s in ('background', 'evaluation')]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    keep_ids = omniglot_split_ids(len(names))[split]
  else:
    images, labels = _read_tfds_split(builder, split)
    keep_ids = np.unique(labels)
  data = _group(datasource, split, images, labels, keep_ids, names)
  if datasource == 'omniglot' and data.num_classes != OMNIGLOT_SPLIT_SIZES[split]:
    raise DataError(f'the Omniglot cache in {builder.data_dir} gives {data.num_classes} {split} '
                    f'characters, expected {OMNIGLOT_SPLIT_SIZES[split]}: delete it and prepare '
                    'again')
  if datasource == 'miniimagenet' and data.num_classes != MINI_SPLIT_CLASSES[split]:
    raise DataError(f'the MiniImagenet cache in {builder.data_dir} has {data.num_classes} {split} '
                    f'classes, expected {MINI_SPLIT_CLASSES[split]}: delete it and prepare again')
  return data
