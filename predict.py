"""Adapt a trained model to your own few labelled images and classify new ones (`--predict`).

A trained run (a run directory under --logdir, or results/<row>/ with its committed model/ weights)
is restored as for meta-test (trainer.restore_for_eval). Its Method's `make_predict_fn` adapts it to
a support set of N new classes, K images each, with the row's test-time steps (report_step: the
step its results report) and step size alpha, and gives each query image its class probabilities.

Images are read as the row's data was prepared (image_datasets.read_image): Omniglot rows 28x28
grey, thresholded to black and white as its 1-bit drawings; MiniImagenet rows 84x84 RGB; folder
rows their image_size and grey. Then /255 and, where the row inverts (Omniglot, folder rows with
invert), 1 - x.

Each query is predicted in a batch with the support set only (non-transductive, see maml.MAML),
so its probabilities do not depend on which other images are asked about at the same time; the
row's evaluation (transductive) normalizes all queries together.

From Python (arrays in, probabilities out):

    predictor = predict.Predictor.from_run('results/omniglot_5way_1shot_noconv')
    x = predictor.read_images(['a.png', 'b.png'])          # float32 [M, 28, 28, 1]
    p = predictor.probabilities(support_x, support_labels, query_x)  # [Q, N]
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from typing import Sequence

import numpy as np
import tensorflow as tf

import data_generator
from experiments import Config, ConfigError
import image_datasets
from image_datasets import DataError
import methods
import trainer

OUT_FORMATS = ('.json', '.csv')


def step_size(cfg: Config, update_lr: float | None = None) -> float:
  """alpha for adapting: update_lr if given, else the row's test alpha (test_update_lr, else
  update_lr). A row that tunes alpha on validation tasks has none to offer: ConfigError."""
  if update_lr is not None:
    return update_lr
  if cfg.test_update_lr is not None:
    return cfg.test_update_lr
  if cfg.test_update_lr_grid and methods.get(cfg).tunes_step_size:
    raise ConfigError(f'{cfg.name} tunes alpha at meta-test on validation tasks (from '
                      f'{cfg.test_update_lr_grid}); pass --update_lr=ALPHA (its results files '
                      'give the tuned one as update_lr)')
  return cfg.update_lr


def read_image_input(cfg: Config, path: str | os.PathLike) -> np.ndarray:
  """One image file -> uint8 [H, W, C] as the row's data was prepared (module docstring)."""
  if cfg.datasource == 'omniglot':
    return image_datasets.read_image(path, 28, grey=True, binary=True)
  if cfg.datasource == 'miniimagenet':
    return image_datasets.read_image(path, 84, grey=False)
  if cfg.datasource == 'folder':
    return image_datasets.read_image(path, cfg.image_size, cfg.grey)
  raise ConfigError(f'{cfg.name} is a {cfg.datasource} row: --predict adapts image classifiers')


class Predictor:
  """A trained model of an image row, adapted to each support set it is given.

  Args:
    cfg: the trained run's config (Config.load of its run directory).
    run_dir: where its checkpoints are (a run directory, or results/<row>/ with model/).
    test_iter: which checkpoint (trainer.restore_for_eval: -1 the selected one).
    steps: adaptation steps (default cfg.report_step); update_lr: alpha (default step_size(cfg)).
  """

  def __init__(self, cfg: Config, run_dir: str, *, test_iter: int = -1, steps: int | None = None,
               update_lr: float | None = None):
    if cfg.metric != 'accuracy':
      raise ConfigError(f'{cfg.name} is a regression row: --predict adapts image classifiers')
    self.cfg = cfg
    self.steps = cfg.report_step if steps is None else steps
    if self.steps < 0:
      raise ConfigError(f'{self.steps} adaptation steps: must not be negative')
    if self.steps and not methods.get(cfg).inner_loop:
      raise ConfigError(f'{cfg.name} ({cfg.method}) adapts without steps: leave the step count '
                        'at its default (0)')
    self.update_lr = step_size(cfg, update_lr)
    self.setup, self.checkpoint = trainer.restore_for_eval(cfg, run_dir, test_iter)
    self.iteration = int(self.setup.iteration)
    self.input_shape = data_generator.image_shape(cfg)
    self._fn = self.setup.method.make_predict_fn(self.setup.learner, self.steps)

  @classmethod
  def from_run(cls, run_dir: str, *, transductive: bool = False, **kwargs) -> 'Predictor':
    """The Predictor of a trained run directory (or results/<row>/), from its config.json; the
    table's provenance fields are not needed. transductive: predict the queries in one batch, as
    the row's evaluation, instead of each with the support set only."""
    return cls(Config.load(run_dir).replace(transductive=transductive), run_dir, **kwargs)

  @property
  def num_classes(self) -> int:
    """N: the model's outputs, so a support set has N classes."""
    return self.cfg.num_classes

  def read_images(self, paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Image files -> float32 [M, H, W, C] in [0, 1], the row's inputs (module docstring)."""
    x = np.stack([read_image_input(self.cfg, p) for p in paths]).astype(np.float32) / 255.0
    return 1.0 - x if data_generator.inverts(self.cfg) else x

  def probabilities(self, support_x: np.ndarray, support_labels: np.ndarray,
                    query_x: np.ndarray) -> np.ndarray:
    """Adapts to the support set and returns the queries' class probabilities.

    support_x: float32 [N*K, H, W, C] (read_images); support_labels: int [N*K] in 0..N-1, each
    class K times; query_x: float32 [Q, H, W, C]. Returns float32 [Q, N] (rows sum to 1).
    """
    support_x, query_x = np.asarray(support_x, np.float32), np.asarray(query_x, np.float32)
    labels = np.asarray(support_labels)
    for name, x in (('support_x', support_x), ('query_x', query_x)):
      if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
        raise ValueError(f'{name} is {x.shape}; the model takes [M, {", ".join(map(str, self.input_shape))}]')
    counts = np.bincount(labels, minlength=self.num_classes) if labels.size else np.zeros(1)
    if (labels.shape != (len(support_x),) or labels.min(initial=0) < 0
        or len(counts) != self.num_classes or len(set(counts)) != 1 or not counts[0]):
      raise ValueError(f'support_labels {labels.tolist()} must label each of the {self.num_classes} '
                       'classes (0..N-1) of this N-way model the same number of times (K)')
    support_y = tf.one_hot(labels, self.num_classes, dtype=tf.float32)
    probabilities = self._fn(tf.constant(support_x[None]), support_y[None],
                             tf.constant(query_x[None]), tf.constant(self.update_lr, tf.float32))
    return np.asarray(probabilities)[0]


def support_folders(support_dir: str | os.PathLike,
                    num_classes: int) -> dict[str, list[pathlib.Path]]:
  """{class: its image files} of a support folder (one sub-folder of K images per class), or
  DataError unless it has N classes of K images each."""
  root = pathlib.Path(support_dir).expanduser()
  if not root.is_dir():
    raise DataError(f'no folder {root}: --support_dir must hold one sub-folder of K images per new '
                    'class')
  classes = image_datasets.class_folders(root, f'--support_dir {root}')
  if len(classes) != num_classes:
    raise DataError(f'{root} holds {len(classes)} class folders; the model is {num_classes}-way: '
                    f'give it {num_classes} classes (or meta-train a row with '
                    f'--num_classes={len(classes)})')
  counts = {name: len(files) for name, files in classes.items()}
  if len(set(counts.values())) != 1:
    raise DataError(f'the classes of {root} must have the same number of images (K): '
                    + ', '.join(f'{name} {count}' for name, count in counts.items()))
  return classes


def query_files(queries: Sequence[str]) -> list[pathlib.Path]:
  """The query images: each path a file, or a folder whose files (below it) are all images."""
  files = []
  for query in queries:
    path = pathlib.Path(query).expanduser()
    if path.is_dir():
      found = image_datasets.data_files(path)
      if not found:
        raise DataError(f'--query {path} is a folder with no images')
      files += found
    elif path.is_file():
      files.append(path)
    else:
      raise DataError(f'--query {path}: no such file or folder')
  return files


def check_out_path(path: str | None) -> None:
  """ConfigError unless --predict_out names a .json or .csv file (checked before any work)."""
  if path is not None and pathlib.Path(path).suffix.lower() not in OUT_FORMATS:
    raise ConfigError(f'--predict_out={path}: name a .json or .csv file')


def run(cfg: Config, model_dir: str, *, support_dir: str, queries: Sequence[str],
        test_iter: int = -1, steps: int | None = None, update_lr: float | None = None,
        out_path: str | None = None) -> list[dict]:
  """`--predict`: adapts the run's model to support_dir and prints each query's predicted class
  and probabilities (and writes them to out_path, .json or .csv). Returns the predictions."""
  check_out_path(out_path)
  if cfg.metric != 'accuracy':
    raise ConfigError(f'{cfg.name} is a regression row: --predict adapts image classifiers')
  classes = support_folders(support_dir, cfg.num_classes)
  files = query_files(queries)
  predictor = Predictor(cfg, model_dir, test_iter=test_iter, steps=steps, update_lr=update_lr)
  names = list(classes)
  support_x = predictor.read_images([p for paths in classes.values() for p in paths])
  labels = np.repeat(np.arange(len(names)), [len(p) for p in classes.values()])
  probabilities = predictor.probabilities(support_x, labels, predictor.read_images(files))
  shots = len(next(iter(classes.values())))
  predictions = [{'query': str(path), 'predicted': names[int(np.argmax(p))],
                  'probabilities': {n: round(float(v), 4) for n, v in zip(names, p)}}
                 for path, p in zip(files, probabilities)]
  alpha = ('learned' if methods.get(cfg).reported_step_size(predictor.update_lr) == 'learned'
           else f'{predictor.update_lr:g}')
  print(f'{cfg.name} (iteration {predictor.iteration}) adapted to {len(names)} classes x {shots} '
        f'image{"s" * (shots != 1)} of {support_dir}: {predictor.steps} step'
        f'{"s" * (predictor.steps != 1)}, alpha {alpha}')
  width = max(len('query'), *(len(p['query']) for p in predictions))
  cell = max(6, *(len(n) for n in names))
  print(f'{"query":<{width}}  {"predicted":<{cell}}  ' + '  '.join(f'{n:>{cell}}' for n in names))
  for p in predictions:
    print(f'{p["query"]:<{width}}  {p["predicted"]:<{cell}}  '
          + '  '.join(f'{p["probabilities"][n]:>{cell}.2f}' for n in names))
  # Queries kept in folders named after the classes carry their answer: say how many are right.
  known = [p for p in predictions if pathlib.Path(p['query']).parent.name in classes]
  if len(known) == len(predictions):
    right = sum(pathlib.Path(p['query']).parent.name == p['predicted'] for p in predictions)
    print(f'accuracy {100.0 * right / len(predictions):.1f}% ({right} of {len(predictions)}; the '
          'queries are in folders named after the classes)')
  if out_path:
    _write(out_path, cfg, predictor, classes, predictions)
    print(f'wrote {out_path}')
  return predictions


def _write(path: str, cfg: Config, predictor: Predictor, classes: dict, predictions: list) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if pathlib.Path(path).suffix.lower() == '.csv':
    with open(path, 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(['query', 'predicted', *classes])
      for p in predictions:
        writer.writerow([p['query'], p['predicted'], *(p['probabilities'][n] for n in classes)])
    return
  with open(path, 'w') as f:
    json.dump({'experiment': cfg.name, 'checkpoint': predictor.checkpoint,
               'iteration': predictor.iteration, 'steps': predictor.steps,
               'update_lr': predictor.update_lr, 'transductive': cfg.transductive,
               'classes': list(classes),
               'support': {n: [str(p) for p in files] for n, files in classes.items()},
               'predictions': predictions}, f, indent=2)
    f.write('\n')
