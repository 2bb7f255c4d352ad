"""Makes the MiniImagenet folder the data layer reads, as the original's proc_images.py.

Input: the Ravi & Larochelle split CSVs (train.csv, val.csv, test.csv: `filename,label`) and either
  --images: the Ravi & Larochelle `images/` folder, 60,000 JPEGs named as in the CSVs; or
  --ilsvrc_train: the ImageNet ILSVRC-2012 train folder (`<wnid>/<wnid>_<n>.JPEG`). A CSV name
    `<wnid><8 digits>.jpg` is read, as yaoyao-liu/mini-imagenet-tools does, as the 1-based rank of
    the file among that class's ILSVRC files sorted by their number <n> (Ravi & Larochelle did not
    publish the mapping; this is the one the community tools use).
Output: OUT/train|val|test/<wnid>/<filename>.jpg, resized to 84x84 with PIL LANCZOS and saved as
JPEG with PIL's default quality (75), as proc_images.py (`im.resize((84, 84),
resample=Image.LANCZOS); im.save(...)`); images are converted to RGB first (ImageNet has a few
grayscale and CMYK JPEGs; the loader reads 3 channels). The CSVs are copied to OUT/splits/, so OUT
is a `data_dir` for image_datasets (`--data_dir=OUT`).

Re-running resumes: finished files are kept (each is written to a temporary name and renamed).

  python scripts/prepare_miniimagenet.py --splits=DIR_WITH_CSVS --images=images/ --out=miniimagenet/
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import os
import pathlib
import re
import shutil
import sys

from PIL import Image

SPLITS = ('train', 'val', 'test')
SIZE = (84, 84)
_CSV_NAME = re.compile(r'^(n\d{8})(\d{8})\.jpg$')
_ILSVRC_NAME = re.compile(r'^(n\d{8})_(\d+)\.jpe?g$', re.IGNORECASE)


class PrepareError(Exception):
  """Missing or inconsistent input; the message says what to fix."""


def read_csvs(splits_dir: pathlib.Path) -> dict[str, list[tuple[str, str]]]:
  """{split: [(filename, wnid), ...]} in CSV order."""
  rows = {}
  for split in SPLITS:
    path = splits_dir / f'{split}.csv'
    if not path.is_file():
      raise PrepareError(f'missing {path}: pass --splits, the folder with train.csv, val.csv and '
                         'test.csv (github.com/twitter/meta-learning-lstm data/miniImagenet)')
    with open(path, newline='') as f:
      table = list(csv.reader(f))
    if not table or [c.strip() for c in table[0]] != ['filename', 'label']:
      raise PrepareError(f'{path} does not start with the header filename,label')
    rows[split] = [(r[0], r[1]) for r in table[1:] if r]
  return rows


def ilsvrc_sources(ilsvrc_train: pathlib.Path,
                   names: list[tuple[str, str]]) -> dict[str, pathlib.Path]:
  """CSV file name -> ILSVRC file, by rank among the class's files sorted by their number."""
  by_class = collections.defaultdict(list)
  for name, wnid in names:
    match = _CSV_NAME.match(name)
    if not match or match.group(1) != wnid:
      raise PrepareError(f'CSV name {name} (class {wnid}) is not <wnid><8 digits>.jpg; '
                         '--ilsvrc_train needs the Ravi & Larochelle names')
    by_class[wnid].append((name, int(match.group(2))))
  sources = {}
  for wnid, items in by_class.items():
    folder = ilsvrc_train / wnid
    if not folder.is_dir():
      raise PrepareError(f'missing {folder}: --ilsvrc_train must be the ILSVRC-2012 train folder '
                         '(<wnid>/<wnid>_<n>.JPEG)')
    files = []
    for path in folder.iterdir():
      match = _ILSVRC_NAME.match(path.name)
      if match and match.group(1) == wnid:
        files.append((int(match.group(2)), path))
    files.sort()
    for name, rank in items:
      if not 1 <= rank <= len(files):
        raise PrepareError(f'{name} asks for file {rank} of class {wnid}, but {folder} has '
                           f'{len(files)} files named {wnid}_<n>.JPEG')
      sources[name] = files[rank - 1][1]
  return sources


def convert(source: pathlib.Path, target: pathlib.Path, quality: int) -> None:
  """source image -> 84x84 RGB JPEG at target (written under a temporary name, then renamed)."""
  with Image.open(source) as im:
    small = im.convert('RGB').resize(SIZE, resample=Image.LANCZOS)
  partial = target.with_name(target.name + '.partial')
  small.save(partial, format='JPEG', quality=quality)
  os.replace(partial, target)


def _convert(args):
  source, target, quality = args
  try:
    convert(source, target, quality)
  except (OSError, SyntaxError, ValueError) as e:
    raise PrepareError(f'{source} cannot be converted ({e}); replace the file') from e


def _report(results, total: int) -> None:
  for i, _ in enumerate(results, start=1):
    if i % 5000 == 0:
      print(f'{i}/{total}', flush=True)


def prepare(splits_dir, out, images=None, ilsvrc_train=None, quality=75, workers=None) -> dict:
  """Writes out/train|val|test/<wnid>/<filename>.jpg and out/splits/*.csv.

  Returns the number of images per split.
  """
  if (images is None) == (ilsvrc_train is None):
    raise PrepareError('pass exactly one of --images (the Ravi & Larochelle images/ folder) and '
                       '--ilsvrc_train (the ILSVRC-2012 train folder)')
  splits_dir, out = pathlib.Path(splits_dir), pathlib.Path(out)
  rows = read_csvs(splits_dir)
  names = [r for split in SPLITS for r in rows[split]]
  if images is not None:
    images = pathlib.Path(images)
    if not images.is_dir():
      raise PrepareError(f'no folder {images}: --images must be the folder of the 60,000 JPEGs '
                         'named as in the CSVs')
    sources = {name: images / name for name, _ in names}
    missing = [n for n, p in sources.items() if not p.is_file()]
    if missing:
      raise PrepareError(f'{len(missing)} of the {len(sources)} CSV images are missing from '
                         f'{images} (e.g. {missing[0]}); --images must hold the JPEGs named as in '
                         'the CSVs')
  else:
    sources = ilsvrc_sources(pathlib.Path(ilsvrc_train), names)
  jobs = []
  for split in SPLITS:
    for name, wnid in rows[split]:
      target = out / split / wnid / name
      if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((sources[name], target, quality))
  (out / 'splits').mkdir(parents=True, exist_ok=True)
  for split in SPLITS:
    shutil.copyfile(splits_dir / f'{split}.csv', out / 'splits' / f'{split}.csv')
  print(f'{len(names) - len(jobs)} of {len(names)} images already done; converting {len(jobs)}')
  if workers == 0:  # in this process (tests: a process pool forked from a TF process can hang)
    _report(map(_convert, jobs), len(jobs))
  else:
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
      _report(pool.map(_convert, jobs, chunksize=64), len(jobs))
  return {split: len(rows[split]) for split in SPLITS}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--splits', required=True, help='folder with train.csv, val.csv, test.csv')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--images',
                      help='the Ravi & Larochelle images/ folder (names as in the CSVs)')
  source.add_argument('--ilsvrc_train', help='the ILSVRC-2012 train folder (<wnid>/*.JPEG)')
  parser.add_argument('--out', required=True, help='output folder (a data_dir for the loader)')
  parser.add_argument('--quality', type=int, default=75,
                      help='JPEG quality (default 75, PIL\'s default, as proc_images.py)')
  parser.add_argument('--workers', type=int, default=None,
                      help='processes (default: all cores; 0: in this process)')
  args = parser.parse_args(argv)
  try:
    counts = prepare(args.splits, args.out, args.images, args.ilsvrc_train, args.quality,
                     args.workers)
  except PrepareError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'wrote {args.out}: ' + ', '.join(f'{s} {n} images' for s, n in counts.items()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
