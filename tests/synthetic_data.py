"""Synthetic Omniglot and MiniImagenet sources, in the layouts image_datasets.py reads, for tests.

So the image pipeline (tfds builders, splits, rotations, episodes, caching, error messages) runs on
any clone, without the real data in ../shared/data. Nothing here is data: every image is drawn from
a seeded RNG when a test asks for it, and only ever written under a test's temporary folder.

  * Omniglot: the official zips' layout, `images_background.zip` and `images_evaluation.zip` holding
    `<zip name>/<Alphabet>/characterNN/NNNN_DD.png` (directory entries included, deflate, sorted),
    of 105x105 1-bit (PIL mode '1') PNGs, white paper and black strokes. image_datasets.py insists
    on the official 964 + 659 characters (its 1100/100/423 split is fixed), so the fixture has all
    1623 characters, in 30 + 20 alphabets, but only 4 or 5 drawings each (the real zips: 20).
  * MiniImagenet: the Ravi & Larochelle split CSVs (`filename,label`; 64/16/20 classes, which
    image_datasets.py insists on) in `splits/`, and 84x84 RGB JPEGs laid out
    `<split>/<wnid>/<wnid><NNNNNNNN>.jpg`, as zips in `images/` (train in parts, as the shared copy)
    or as plain folders. Made-up wnids (n99......), a few images per class.

  * A folder of classes (the folder datasource, docs/your-own-data.md): `<class>/<NN>.png` glyphs,
    each class a few random strokes, each image the strokes drawn again with random jitter (shift,
    scale, rotation, wobble, pen width), black on white, with a few JPEGs, an RGB and a transparent
    PNG among them: classes that a few hundred meta-training iterations learn to tell apart.

The real files' checksums are never involved: a local folder is checked against its own SHA256SUMS
only when it has one (image_datasets.verify_against_sha256sums), which these folders do not, unless
a test writes one.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import pathlib
import zipfile

import numpy as np
from PIL import Image, ImageDraw

OMNIGLOT_ZIPS = ('images_background.zip', 'images_evaluation.zip')
OMNIGLOT_CHARACTERS = {'images_background.zip': 964, 'images_evaluation.zip': 659}  # the official
OMNIGLOT_ALPHABETS = {'images_background.zip': 30, 'images_evaluation.zip': 20}
MINI_CLASSES = {'train': 64, 'val': 16, 'test': 20}
# A fixed time for every zip entry, so the same fixture gives the same bytes (and SHA-256) each run.
_ZIP_TIME = (2015, 10, 21, 12, 0, 0)


# --- Omniglot -------------------------------------------------------------------------------------

def omniglot_drawings(global_id: int) -> int:
  """How many drawings character `global_id` (0-based, sorted order) has: 4 or 5, so classes differ
  in size (the loader must group them by their counts, not assume 20)."""
  return 4 + global_id % 2


@dataclasses.dataclass(frozen=True)
class OmniglotCharacter:
  global_id: int   # 0..1622 in (zip, alphabet, character) sorted order, the loader's label
  zip_name: str
  alphabet: str
  character: str
  members: tuple[str, ...]  # sorted, as the loader orders a class's images

  @property
  def name(self) -> str:
    return f'{self.alphabet}/{self.character}'


@functools.lru_cache(maxsize=None)
def omniglot_characters() -> tuple[OmniglotCharacter, ...]:
  """The fixture's 1623 characters in global-id order (what the loader should find)."""
  characters = []
  for zip_name in OMNIGLOT_ZIPS:
    top = zip_name[:-len('.zip')]
    n_alpha, n_char = OMNIGLOT_ALPHABETS[zip_name], OMNIGLOT_CHARACTERS[zip_name]
    per = [n_char // n_alpha + (a < n_char % n_alpha) for a in range(n_alpha)]
    # Distinct across both zips (as the real names) and zero-padded, so this is the sorted order.
    prefix = 'B' if zip_name == OMNIGLOT_ZIPS[0] else 'E'
    for a, count in enumerate(per):
      alphabet = f'Script_{prefix}{a:02d}'
      for c in range(1, count + 1):
        gid = len(characters)
        members = tuple(f'{top}/{alphabet}/character{c:02d}/{gid + 1:04d}_{d:02d}.png'
                        for d in range(1, omniglot_drawings(gid) + 1))
        characters.append(OmniglotCharacter(gid, zip_name, alphabet, f'character{c:02d}', members))
  return tuple(characters)


def omniglot_png(global_id: int, drawing: int) -> bytes:
  """One 105x105 mode '1' PNG: a few thick random strokes, seeded by (character, drawing).

  The strokes are 7 px wide, so they survive the loader's 28x28 resize (PIL uses NEAREST for mode
  '1'), and random, so no drawing is symmetric under a 90-degree rotation.
  """
  rng = np.random.default_rng((global_id, drawing))
  im = Image.new('1', (105, 105), 1)
  draw = ImageDraw.Draw(im)
  for _ in range(3):
    points = [tuple(int(v) for v in rng.integers(10, 95, 2)) for _ in range(3)]
    draw.line(points, fill=0, width=7)
  buf = io.BytesIO()
  im.save(buf, format='PNG')
  return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _omniglot_pngs() -> dict[str, bytes]:
  """Every member's PNG bytes, made once per process (a few seconds) and shared by every zip."""
  return {m: omniglot_png(ch.global_id, d) for ch in omniglot_characters()
          for d, m in enumerate(ch.members)}


def omniglot_member_png(member: str) -> bytes:
  return _omniglot_pngs()[member]


def _zip_entry(name: str, compress: int) -> zipfile.ZipInfo:
  info = zipfile.ZipInfo(name, _ZIP_TIME)
  info.compress_type = compress
  if name.endswith('/'):
    info.external_attr = 0o40755 << 16 | 0x10  # a directory, as zip -r writes it
  else:
    info.external_attr = 0o644 << 16
  return info


def write_zip(path: pathlib.Path, members: dict[str, bytes], *, directories: bool = True,
              compress: int = zipfile.ZIP_DEFLATED) -> pathlib.Path:
  """A zip of `members` in sorted order, with each folder's directory entry first (as `zip -r`
  writes them) unless directories=False; fixed timestamps, so the bytes are reproducible."""
  path.parent.mkdir(parents=True, exist_ok=True)
  names = set(members)
  if directories:
    for name in members:
      parts = name.split('/')[:-1]
      names.update('/'.join(parts[:i]) + '/' for i in range(1, len(parts) + 1))
  with zipfile.ZipFile(path, 'w') as z:
    for name in sorted(names):
      z.writestr(_zip_entry(name, compress), b'' if name.endswith('/') else members[name])
  return path


def omniglot_members(zip_name: str) -> dict[str, bytes]:
  """{member: PNG bytes} of one fixture zip."""
  pngs = _omniglot_pngs()
  return {m: pngs[m] for ch in omniglot_characters() if ch.zip_name == zip_name
          for m in ch.members}


def make_omniglot(folder: pathlib.Path, *,
                  replace: dict[str, dict[str, bytes | None]] | None = None,
                  zips: tuple[str, ...] = OMNIGLOT_ZIPS) -> pathlib.Path:
  """Writes the fixture's zips into `folder` (made if needed); returns the folder.

  replace: {zip name: {member: bytes, or None to drop it}} changes members of a zip (tests of
    damaged files). zips: which of the two zips to write.
  """
  folder.mkdir(parents=True, exist_ok=True)
  for zip_name in zips:
    members = omniglot_members(zip_name)
    for name, data in (replace or {}).get(zip_name, {}).items():
      if data is None:
        members.pop(name)
      else:
        members[name] = data
    write_zip(folder / zip_name, members)
  return folder


# --- MiniImagenet ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MiniClass:
  label: int         # the loader's global class id: train CSV classes, then val, then test
  split: str
  wnid: str
  files: tuple[str, ...]  # file names, in CSV order


def mini_images_per_class(label: int) -> int:
  """3, 4 or 5 images: uneven classes, and few, so a source takes well under a second to prepare."""
  return 3 + label % 3


@functools.lru_cache(maxsize=None)
def mini_classes() -> tuple[MiniClass, ...]:
  """The fixture's 100 classes in label order. Their wnids are not in sorted order within a CSV, so
  a loader that sorted them instead of keeping the CSV order would give other labels."""
  rng = np.random.default_rng(2017)
  wnids = [f'n99{v:06d}' for v in rng.choice(1_000_000, 100, replace=False)]
  classes = []
  for split, count in MINI_CLASSES.items():
    for _ in range(count):
      label = len(classes)
      wnid = wnids[label]
      files = tuple(f'{wnid}{i:08d}.jpg' for i in range(1, mini_images_per_class(label) + 1))
      classes.append(MiniClass(label, split, wnid, files))
  assert any(a.wnid > b.wnid for a, b in zip(classes, classes[1:]))
  return tuple(classes)


def mini_jpeg(label: int, index: int, size: tuple[int, int] = (84, 84)) -> bytes:
  """An RGB JPEG: a class colour plus noise, seeded by (class, image)."""
  rng = np.random.default_rng((label, index))
  base = np.array([(37 * label) % 256, (91 * label) % 256, (53 * index) % 256], np.int16)
  pixels = np.clip(base + rng.integers(-40, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels, 'RGB').save(buf, format='JPEG', quality=95)
  return buf.getvalue()


@functools.lru_cache(maxsize=None)
def _mini_jpegs() -> dict[str, bytes]:
  """{'<split>/<wnid>/<file>': JPEG bytes} of every fixture image, made once per process."""
  return {f'{c.split}/{c.wnid}/{f}': mini_jpeg(c.label, i)
          for c in mini_classes() for i, f in enumerate(c.files)}


def mini_members(split: str | None = None) -> dict[str, bytes]:
  """{'<split>/<wnid>/<file>': JPEG bytes}, of one split or all."""
  return {k: v for k, v in _mini_jpegs().items() if split is None or k.startswith(split + '/')}


def write_mini_csvs(folder: pathlib.Path, classes: tuple[MiniClass, ...] | None = None) -> None:
  """train.csv, val.csv, test.csv (`filename,label`, CSV order) into folder."""
  folder.mkdir(parents=True, exist_ok=True)
  classes = mini_classes() if classes is None else classes
  for split in MINI_CLASSES:
    rows = ['filename,label'] + [f'{f},{c.wnid}' for c in classes if c.split == split
                                 for f in c.files]
    (folder / f'{split}.csv').write_text('\n'.join(rows) + '\n')


def make_miniimagenet(folder: pathlib.Path, *, layout: str = 'zip', splits=tuple(MINI_CLASSES),
                      train_parts: int = 2,
                      replace: dict[str, bytes | None] | None = None) -> pathlib.Path:
  """Writes folder/splits/*.csv and the images of `splits`; returns the folder.

  layout: 'zip' writes folder/images/{train_part<i>of<n>,val,test}.zip as the shared copy (no
    directory entries, members `<split>/<wnid>/<file>.jpg`, train's classes cut into train_parts
    zips in CSV order); 'folder' writes folder/<split>/<wnid>/<file>.jpg, as proc_images.py.
  replace: {'<split>/<wnid>/<file>': bytes, or None to drop it} changes images (damaged files).
  """
  write_mini_csvs(folder / 'splits')
  for split in splits:
    members = mini_members(split)
    for name, data in (replace or {}).items():
      if name.startswith(split + '/'):
        if data is None:
          members.pop(name)
        else:
          members[name] = data
    if layout == 'folder':
      for name, data in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
      continue
    if layout != 'zip':
      raise ValueError(f'unknown layout {layout!r}')
    wnids = [c.wnid for c in mini_classes() if c.split == split]
    parts = train_parts if split == 'train' else 1
    # Part p takes its share of the CSV's classes; an image of a class the CSV does not list (a
    # test's stray class) goes into the last part.
    part_of = {w: i * parts // len(wnids) for i, w in enumerate(wnids)}
    for p in range(parts):
      name = f'{split}_part{p + 1}of{parts}.zip' if parts > 1 else f'{split}.zip'
      write_zip(folder / 'images' / name,
                {k: v for k, v in members.items() if part_of.get(k.split('/')[1], parts - 1) == p},
                directories=False)
  return folder


# --- A folder of classes ----------------------------------------------------------------------------

def glyph_strokes(label: int, seed: int = 0) -> list[np.ndarray]:
  """Class `label`'s glyph: 2 or 3 strokes, each a polyline of 3 points [3, 2] in [0.15, 0.85]^2."""
  rng = np.random.default_rng((seed, label, 0))
  return [rng.uniform(0.15, 0.85, (3, 2)) for _ in range(2 + label % 2)]


def glyph_image(label: int, index: int, size: int = 32, seed: int = 0) -> Image.Image:
  """Drawing `index` of class `label`: its strokes under a random similarity transform (shift up to
  8% of the side, scale 0.85-1.1, rotation up to 12 degrees) with 2% wobble per point and a pen of
  2-3 px, black strokes on white ('L')."""
  rng = np.random.default_rng((seed, label, 1 + index))
  angle = np.deg2rad(rng.uniform(-12, 12))
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  scale, shift = rng.uniform(0.85, 1.1), rng.uniform(-0.08, 0.08, 2)
  im = Image.new('L', (size, size), 255)
  draw = ImageDraw.Draw(im)
  width = int(rng.integers(2, 4))
  for stroke in glyph_strokes(label, seed):
    points = (stroke - 0.5) @ rotation.T * scale + 0.5 + shift + rng.normal(0, 0.02, stroke.shape)
    draw.line([tuple(p) for p in points * size], fill=0, width=width, joint='curve')
  return im


def make_folder_dataset(root: pathlib.Path, *, classes: int = 30, per_class: int = 6,
                        size: int = 32, seed: int = 0, first_label: int = 0) -> pathlib.Path:
  """root/<glyphNN>/<MM>.png (some .jpg, one RGB, one transparent PNG) for `classes` classes of
  `per_class` drawings, labels first_label, first_label + 1, ...; returns root."""
  for label in range(first_label, first_label + classes):
    folder = root / f'glyph{label:02d}'
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(per_class):
      im = glyph_image(label, index, size, seed)
      if index == 1 and label % 5 == 0:  # any format Pillow reads
        im.save(folder / f'{index:02d}.jpg', quality=90)
      elif index == 2 and label % 7 == 0:  # colour, read as grey
        im.convert('RGB').save(folder / f'{index:02d}.png')
      elif index == 3 and label % 11 == 0:  # strokes on a transparent background
        rgba = Image.new('RGBA', im.size, (0, 0, 0, 0))
        rgba.putalpha(Image.eval(im, lambda v: 255 - v))
        rgba.save(folder / f'{index:02d}.png')
      else:
        im.save(folder / f'{index:02d}.png')
  return root


if __name__ == '__main__':
  # A practice folder for the folder datasource (docs/your-own-data.md):
  #   python tests/synthetic_data.py glyphs DIR [--classes=30] [--per_class=6]
  import argparse
  parser = argparse.ArgumentParser(description='Write synthetic data for trying the pipeline.')
  parser.add_argument('kind', choices=['glyphs'], help='glyphs: a folder of drawn glyph classes')
  parser.add_argument('out', type=pathlib.Path, help='folder to write')
  parser.add_argument('--classes', type=int, default=30)
  parser.add_argument('--per_class', type=int, default=6)
  args = parser.parse_args()
  make_folder_dataset(args.out, classes=args.classes, per_class=args.per_class)
  print(f'wrote {args.classes} classes of {args.per_class} glyphs each to {args.out}')
