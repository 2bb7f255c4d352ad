"""Episodes for meta-learning: a batch of tasks, each with a support set and a query set.

The original code calls these inputa/labela (support, used by the inner loop) and inputb/labelb
(query, used by the meta-objective). Every sampler takes an explicit seed and never touches the global
RNG, and exposes `trackable()`, an object a tf.train.Checkpoint saves, so a resumed run draws exactly
the episodes an uninterrupted one would have.

Samplers: `SinusoidTasks` (numpy) and `ImageTasks` (N-way K-shot classification on Omniglot,
MiniImagenet or a user's folder of classes, a tf.data pipeline over images held in memory; see
image_datasets.py for the data). The training loop reads a sampler through `episode_stream`, which
hands out the episodes of one compiled call at a time (and draws a numpy sampler's next ones ahead).
"""

from __future__ import annotations

import concurrent.futures
import json
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np
import tensorflow as tf

import image_datasets
from image_datasets import DataError


class Episode(NamedTuple):
  """A meta-batch of T tasks (numpy arrays from SinusoidTasks, tf.Tensors from ImageTasks).

  support_x: [T, N*K, d_in]; support_y: [T, N*K, d_out] (float32).
  query_x:   [T, N*Q, d_in]; query_y:   [T, N*Q, d_out].
  task:      sinusoid: [T, 2] float32 (amplitude A, phase phi), for plots and the oracle.
  Images: d_in is H, W, C (float32 in [0, 1]), d_out = N (one-hot float32), and task is [T, N]
  int32, the global class ids of the task in label order.
  """
  support_x: np.ndarray
  support_y: np.ndarray
  query_x: np.ndarray
  query_y: np.ndarray
  task: np.ndarray


class SinusoidTasks:
  """Regression tasks y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5] (paper §5.1).

  Each task draws K support and Q query points independently from the same sine. With `oracle=True`
  every input row is (x, A, phi) instead of (x), the paper's oracle baseline.
  """
  AMP_RANGE = (0.1, 5.0)
  PHASE_RANGE = (0.0, np.pi)
  INPUT_RANGE = (-5.0, 5.0)

  def __init__(self, seed, oracle: bool = False):
    """seed: anything np.random.default_rng accepts (an int, or a tuple such as (eval_seed, split))."""
    self._rng = np.random.default_rng(seed)
    self.oracle = oracle

  def sample(self, meta_batch_size: int, k_support: int, k_query: int) -> Episode:
    """Draws T = meta_batch_size tasks with K = k_support and Q = k_query points each."""
    rng = self._rng
    amp = rng.uniform(*self.AMP_RANGE, size=(meta_batch_size, 1, 1))
    phase = rng.uniform(*self.PHASE_RANGE, size=(meta_batch_size, 1, 1))
    x = rng.uniform(*self.INPUT_RANGE, size=(meta_batch_size, k_support + k_query, 1))
    y = amp * np.sin(x - phase)
    x = self.inputs(x, amp, phase)
    task = np.concatenate([amp, phase], axis=-1)[:, 0].astype(np.float32)
    return Episode(x[:, :k_support], y[:, :k_support].astype(np.float32),
                   x[:, k_support:], y[:, k_support:].astype(np.float32), task)

  def inputs(self, x: np.ndarray, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """x [T, M, 1] -> model inputs [T, M, d_in] float32 (appends A and phi for the oracle)."""
    if self.oracle:
      x = np.concatenate([x, np.broadcast_to(amp, x.shape), np.broadcast_to(phase, x.shape)], -1)
    return x.astype(np.float32)

  def grid(self, task: np.ndarray, num_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """An evenly spaced grid over the input range for plotting.

    task: [T, 2] (A, phi). Returns inputs [T, num_points, d_in] and targets [T, num_points, 1].
    """
    x = np.linspace(*self.INPUT_RANGE, num_points)[None, :, None].repeat(len(task), 0)
    amp, phase = task[:, None, :1], task[:, None, 1:]
    return self.inputs(x, amp, phase), (amp * np.sin(x - phase)).astype(np.float32)

  def get_state(self) -> str:
    return json.dumps(self._rng.bit_generator.state)

  def set_state(self, state: str) -> None:
    self._rng.bit_generator.state = json.loads(state)

  def trackable(self) -> tf.train.experimental.PythonState:
    """What a tf.train.Checkpoint saves so a resumed run draws the same episodes."""
    return NumpyRngState(self)


class Rng:
  """A numpy Generator `rng` with the sampler's get_state/set_state, so that NumpyRngState can keep
  it in a tf.train.Checkpoint (the RL and learned-optimizer trainers' task streams)."""

  def __init__(self, seed):
    self.rng = np.random.default_rng(seed)

  def get_state(self) -> str:
    return json.dumps(self.rng.bit_generator.state)

  def set_state(self, state: str) -> None:
    self.rng.bit_generator.state = json.loads(state)


class NumpyRngState(tf.train.experimental.PythonState):
  """A sampler's numpy RNG state inside a tf.train.Checkpoint."""

  def __init__(self, sampler):
    self._sampler = sampler

  def serialize(self) -> str:
    return self._sampler.get_state()

  def deserialize(self, string_value) -> None:
    value = string_value.decode() if isinstance(string_value, bytes) else string_value
    self._sampler.set_state(value)


SPLIT_IDS = {'train': 0, 'val': 1, 'test': 2, 'plot': 3}


class ImageTasks:
  """N-way classification tasks drawn from the images of one split (paper §5.2; original pipeline).

  A task takes N distinct classes in random order (label j is the j-th) and K + Q distinct images of
  each; K per class form the support set and Q the query set. As the original, the N*(K+Q) images
  are laid out slot by slot (slot s holds image s of every class, classes in a fresh random order),
  so the support set is the first N*K. Omniglot (`rotate=True`): each class of each task is rotated
  by k * 90 degrees (tf.image.rot90, counter-clockwise), k ~ U{0, 1, 2, 3}, in train and evaluation
  tasks alike, as the original. Images become float32 / 255 here, inverted for Omniglot (strokes 1).

  Task i is a pure function of (seed, i) through stateless Philox ops, so it is the same whatever the
  batching or the prefetching. `sample` reads a tf.data pipeline
  range -> map(task, parallel, deterministic) -> batch(T) -> prefetch; `tasks(start, count)` gives
  tasks by index (evaluation: the first `count` tasks of the stream).

  Args:
    data: the split's images (image_datasets.load_split); they are copied into one tensor.
    num_classes: N. shots: K. queries: Q (per class).
    meta_batch_size: T, the tasks per `sample` call.
    seed: a tuple of ints; the task stream is a function of it only.
    rotate: Omniglot's 90-degree rotations. invert: 1 - x (Omniglot).

  Raises:
    DataError: the split has fewer than N classes, or a class has fewer than K + Q images.
  """

  def __init__(self, data: image_datasets.ClassImages, *, num_classes: int, shots: int,
               queries: int, meta_batch_size: int, seed: tuple[int, ...], rotate: bool,
               invert: bool):
    where = f'the {data.datasource} {data.split} split'
    if num_classes > data.num_classes:
      raise DataError(f'{where} has {data.num_classes} classes; {num_classes}-way tasks need '
                      f'{num_classes}: lower --num_classes')
    need = shots + queries
    small = np.flatnonzero(data.counts < need)
    if small.size:
      c = small[0]
      raise DataError(f'class {data.class_names[c]} (id {data.class_ids[c]}) of {where} has '
                      f'{data.counts[c]} images; a task needs K + Q = {shots} + {queries} = {need} '
                      f'distinct images of each class ({small.size} classes have fewer): lower '
                      '--update_batch_size or the query size, or add images')
    self.datasource, self.split = data.datasource, data.split
    self.num_classes, self.shots, self.queries = num_classes, shots, queries
    self.meta_batch_size = meta_batch_size
    self.image_shape = tuple(data.images.shape[1:])
    self.class_names = data.class_names
    self.rotate, self.invert = rotate, invert
    self.seed = tuple(int(p) for p in seed)
    self._images = tf.constant(data.images)        # uint8 [M, H, W, C]
    self._offsets = tf.constant(data.offsets, tf.int32)  # [C]
    self._counts = tf.constant(data.counts, tf.int32)    # [C]
    self._class_ids = tf.constant(data.class_ids, tf.int32)
    self._max_count = int(data.counts.max())
    key = tf.zeros([2], tf.int64)
    for part in self.seed:
      key = tf.random.experimental.stateless_fold_in(key, tf.constant(part, tf.int64), alg='philox')
    self._key = key
    self._iterator = None

  def plan(self, index) -> dict[str, tf.Tensor]:
    """Which images task `index` takes, in order (tests check episodes against it).

    Returns classes [N] int32 (split-local class of label j), images [N*(K+Q)] int32 (rows of the
    split's images; support first), labels [N*(K+Q)] int32, turns [N] int32 (rot90 count per label,
    zeros without rotation).
    """
    n, slots = self.num_classes, self.shots + self.queries
    # int64 always: fold_in's result depends on the dtype of what it folds in.
    index = tf.cast(index, tf.int64)
    seed = tf.random.experimental.stateless_fold_in(self._key, index, alg='philox')
    seeds = tf.random.experimental.stateless_split(seed, 4, alg='philox')
    uniform = lambda shape, i: tf.random.stateless_uniform(shape, seeds[i], alg='philox')
    # N distinct classes in random order: top_k of uniform keys is a uniform random N-permutation.
    classes = tf.math.top_k(uniform([len(self.class_names)], 0), n).indices
    # K + Q distinct images per class; keys past a class's count never win (-1 < every key).
    counts = tf.gather(self._counts, classes)
    keys = tf.where(tf.range(self._max_count)[None] < counts[:, None],
                    uniform([n, self._max_count], 1), -1.0)
    picks = tf.math.top_k(keys, slots).indices  # [N, K+Q], within each class
    picks += tf.gather(self._offsets, classes)[:, None]  # rows of the split's images
    labels = tf.argsort(uniform([slots, n], 2), axis=1)  # [K+Q, N]: slot s, position j -> label
    images = tf.gather(tf.transpose(picks), labels, batch_dims=1)  # [K+Q, N]
    turns = (tf.random.stateless_uniform([n], seeds[3], 0, 4, tf.int32, alg='philox')
             if self.rotate else tf.zeros([n], tf.int32))
    return {'classes': classes, 'images': tf.reshape(images, [-1]),
            'labels': tf.reshape(labels, [-1]), 'turns': turns}

  def _task(self, index: tf.Tensor):
    """Task `index` -> (support_x [N*K, H, W, C], support_y [N*K, N], query_x [N*Q, H, W, C],
    query_y [N*Q, N], task [N] int32)."""
    n, k = self.num_classes, self.shots
    plan = self.plan(index)
    images = tf.gather(self._images, plan['images'])  # uint8 [N*(K+Q), H, W, C]
    if self.rotate:
      rotated = tf.stack([tf.image.rot90(images, r) for r in range(4)], axis=1)  # [M, 4, H, W, C]
      images = tf.gather(rotated, tf.gather(plan['turns'], plan['labels']), batch_dims=1)
    x = tf.cast(images, tf.float32) / 255.0
    if self.invert:
      x = 1.0 - x
    y = tf.one_hot(plan['labels'], n, dtype=tf.float32)
    return (x[:n * k], y[:n * k], x[n * k:], y[n * k:], tf.gather(self._class_ids, plan['classes']))

  def dataset(self, start: int = 0, count: int | None = None,
              batch_size: int | None = None) -> tf.data.Dataset:
    """Tasks start, start+1, ... (count of them, or endless), batched by batch_size (default T)."""
    stop = start + count if count is not None else np.iinfo(np.int64).max
    ds = tf.data.Dataset.range(start, stop)
    ds = ds.map(self._task, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size or self.meta_batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # The iterator checkpoint then holds the position only, not the prefetched episodes (36 MB for
    # MiniImagenet); restoring recomputes them, which gives the same tasks (deterministic map).
    options.experimental_symbolic_checkpoint = True
    return ds.with_options(options)

  def check_sizes(self, meta_batch_size: int | None, n_support: int, n_query: int) -> None:
    """ValueError unless (T, N*K, N*Q) are the sizes the sampler was built for (T None: any)."""
    n = self.num_classes
    want = (self.meta_batch_size, n * self.shots, n * self.queries)
    got = (meta_batch_size if meta_batch_size is not None else want[0], n_support, n_query)
    if got != want:
      raise ValueError(f'this {self.datasource} {self.split} sampler was built for meta-batch '
                       f'{want[0]}, N*K = {want[1]}, N*Q = {want[2]} ({n}-way, K={self.shots}, '
                       f'Q={self.queries}); asked for {got[0]}, {got[1]}, {got[2]}')

  def _stream(self):
    if self._iterator is None:
      self._iterator = iter(self.dataset())
    return self._iterator

  def sample(self, meta_batch_size: int, n_support: int, n_query: int) -> Episode:
    """The next T tasks of the stream, as an Episode of tf.Tensors (see `Episode`).

    The sizes must be the ones the sampler was built with (T, N*K, N*Q); else ValueError.
    """
    self.check_sizes(meta_batch_size, n_support, n_query)
    return Episode(*next(self._stream()))

  def tasks(self, start: int, count: int) -> Episode:
    """Tasks start .. start+count-1 of the stream as one Episode [count, ...]."""
    return Episode(*self.dataset(start, count, batch_size=count).get_single_element())

  def trackable(self) -> tf.data.Iterator:
    """The tf.data iterator of `sample`: a tf.train.Checkpoint saves and restores its position."""
    return self._stream()


# --- the training loop's episodes -----------------------------------------------------------------

def stack(episodes: list[tuple]) -> tuple:
  """Episodes' fields stacked field by field, [S, ...] (the input of a looped training call).

  numpy fields are stacked by numpy: tf.stack first hands the whole list to tf.convert_to_tensor,
  which walks a list of arrays as a nested Python sequence, number by number: 0.9 ms per sinusoid
  episode against 4 us, and 60% of the sinusoid row's training loop (docs/performance.md).
  """
  if isinstance(episodes[0][0], np.ndarray):
    return tuple(np.stack(field) for field in zip(*episodes))
  return tuple(tf.stack(field) for field in zip(*episodes))


class Episodes:
  """A training sampler's episodes, one compiled call at a time: `next(count, then)` gives the next
  `count` episodes (their first four fields; stacked [count, ...] if count > 1).

  `then`, the size of the call after this one (0: none), is what `Prefetched` draws ahead; here it
  is not needed: the tf.data samplers (images, the classifier baselines' batches) prefetch on
  tf.data's own threads, and their iterator checkpoint keeps the position of the episodes handed
  out.
  """

  def __init__(self, sampler, sizes: tuple[int, int, int]):
    self._sampler, self._sizes = sampler, sizes

  def _draw(self, count: int) -> tuple:
    if count == 1:
      return tuple(self._sampler.sample(*self._sizes)[:4])
    return stack([self._sampler.sample(*self._sizes)[:4] for _ in range(count)])

  def next(self, count: int, then: int) -> tuple:
    del then
    return self._draw(count)

  def trackable(self):
    """What a tf.train.Checkpoint saves: the position after the episodes handed out."""
    return self._sampler.trackable()

  def close(self) -> None:
    """Nothing runs in the background here."""


class Prefetched(Episodes):
  """The episodes of a numpy sampler (`get_state`/`set_state`: SinusoidTasks), the next call's drawn
  on a worker thread while the current call trains.

  The compiled step releases the GIL, so drawing and stacking the next 100 sinusoid episodes (~3 ms)
  no longer waits for it. They are the same episodes in the same order as without prefetching: one
  worker draws from the sampler's own RNG, in the order the calls ask, and only while the caller
  does not. The checkpoint keeps the RNG state from before the episodes drawn ahead (recorded before
  the worker starts), so a resumed run draws those again, as an uninterrupted one would use them.
  """

  def __init__(self, sampler, sizes: tuple[int, int, int]):
    super().__init__(sampler, sizes)
    self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='episodes')
    self._ahead = None  # (count, the sampler's state before them, future), or None

  def next(self, count: int, then: int) -> tuple:
    if self._ahead is None:
      fields = self._draw(count)
    else:
      ahead, state, future = self._ahead
      if ahead != count:  # the loop announced another call size: a bug, not a case to recover from
        raise ValueError(f'asked for {count} episodes; {ahead} were announced and drawn ahead')
      error = future.exception()  # waits for the worker
      self._ahead = None
      if error is not None:  # the position goes back before the failed draw, none of it handed out
        self._sampler.set_state(state)
        raise error
      fields = future.result()
    if then:
      self._ahead = (then, self._sampler.get_state(), self._worker.submit(self._draw, then))
    return fields

  def get_state(self) -> str:
    """The position after the episodes handed out (those drawn ahead are drawn again on resume)."""
    return self._ahead[1] if self._ahead is not None else self._sampler.get_state()

  def set_state(self, state: str) -> None:
    if self._ahead is not None:
      raise RuntimeError('the data position is restored before the first episodes are drawn')
    self._sampler.set_state(state)

  def trackable(self) -> NumpyRngState:
    return NumpyRngState(self)  # the sampler's own checkpoint object: resumes older checkpoints

  def close(self) -> None:
    """Waits for the worker and puts the sampler back after the episodes handed out (a checkpoint
    written after a stop then resumes with the episodes drawn ahead); raises the worker's error."""
    self._worker.shutdown(wait=True)
    if self._ahead is not None:
      _, state, future = self._ahead
      self._ahead = None
      self._sampler.set_state(state)
      future.result()


def episode_stream(sampler, sizes: tuple[int, int, int]) -> Episodes:
  """The training loop's view of `sampler` (sizes: T, N*K, N*Q): a numpy sampler draws the next
  call's episodes ahead on a thread (`Prefetched`); a tf.data one prefetches already (`Episodes`).
  """
  if hasattr(sampler, 'get_state') and hasattr(sampler, 'set_state'):
    return Prefetched(sampler, sizes)
  return Episodes(sampler, sizes)


def folder_spec(cfg) -> image_datasets.FolderSpec:
  """The folder datasource's resizing and split of a row (its config.FolderData fields)."""
  return image_datasets.FolderSpec(cfg.image_size, cfg.grey, cfg.train_fraction, cfg.val_fraction,
                                   cfg.split_seed)


def image_shape(cfg) -> tuple[int, int, int]:
  """[H, W, C] of an image row's inputs: Omniglot 28x28 grey, MiniImagenet 84x84 RGB, a folder's
  image_size and grey."""
  if cfg.datasource == 'folder':
    return folder_spec(cfg).shape
  return image_datasets.IMAGE_SHAPES[cfg.datasource]


def inverts(cfg) -> bool:
  """Whether the row feeds 1 - x: Omniglot (strokes 1, as the original) and folders asked to."""
  return cfg.datasource == 'omniglot' or (cfg.datasource == 'folder' and cfg.invert)


def load_images(cfg, split: str) -> image_datasets.ClassImages:
  """The images of one split of an image row (prepared from cfg.data_dir the first time)."""
  return image_datasets.load_split(
      cfg.datasource, split, data_dir=cfg.data_dir,
      folder=folder_spec(cfg) if cfg.datasource == 'folder' else None)


def make_sampler(cfg, split: str, shots: int | None = None):
  """The episode sampler of an experiment row for one split.

  Training tasks follow cfg.seed; validation, test and plotting tasks follow cfg.eval_seed and K only,
  so every model (MAML, baselines, any training seed) is evaluated on the very same tasks.

  Images (cfg.datasource 'omniglot' | 'miniimagenet' | 'folder'): N = cfg.num_classes; at training
  K = cfg.update_batch_size and Q = cfg.train_query_size, else K = shots (default
  cfg.update_batch_size) and Q = cfg.test_query_size or K; T = cfg.meta_batch_size. The raw files
  are read from cfg.data_dir (None: download Omniglot) into the tfds dir
  image_datasets.default_tfds_dir() ($MAML_TFDS_DIR) the first time only. 'plot' tasks come from
  the test classes. Only Omniglot rotates its classes (the original's augmentation).
  """
  if split not in SPLIT_IDS:
    raise ValueError(f'unknown split {split!r}; choose one of {sorted(SPLIT_IDS)}')
  if cfg.datasource == 'sinusoid':
    seed = (cfg.seed, 0) if split == 'train' else (cfg.eval_seed, SPLIT_IDS[split], shots or 0)
    return SinusoidTasks(seed, oracle=cfg.baseline == 'oracle')
  if cfg.datasource in image_datasets.DATASOURCES:
    if split == 'train':
      k, q, seed = cfg.update_batch_size, cfg.train_query_size, (cfg.seed, 0)
    else:
      k = shots or cfg.update_batch_size
      q, seed = cfg.test_query_size or k, (cfg.eval_seed, SPLIT_IDS[split], k)
    data = load_images(cfg, 'test' if split == 'plot' else split)
    return ImageTasks(data, num_classes=cfg.num_classes, shots=k, queries=q,
                      meta_batch_size=cfg.meta_batch_size, seed=seed,
                      rotate=cfg.datasource == 'omniglot', invert=inverts(cfg))
  raise ValueError(f'no episode sampler for datasource {cfg.datasource!r}')


def sample_tasks(sampler, num_tasks: int, k_support: int, k_query: int) -> Episode:
  """num_tasks tasks as one Episode, so task i is the same whatever batch it is later put in.

  SinusoidTasks: the sampler's next tasks, drawn one at a time. ImageTasks: tasks 0..num_tasks-1
  of its stream in one tf.data pass, whatever `sample` has drawn; k_support = N*K and
  k_query = N*Q must be the sampler's.
  """
  if isinstance(sampler, ImageTasks):
    sampler.check_sizes(None, k_support, k_query)
    return sampler.tasks(0, num_tasks)
  tasks = [sampler.sample(1, k_support, k_query) for _ in range(num_tasks)]
  return Episode(*(np.concatenate(parts) for parts in zip(*tasks)))


def task_chunks(sampler, num_tasks: int, k_support: int, k_query: int,
                chunk: int) -> Iterator[Episode]:
  """The tasks of `sample_tasks`, as Episodes of at most `chunk` tasks each, made one at a time so
  600 image tasks never sit in memory together (MiniImagenet 5-shot: ~2.5 GB)."""
  if isinstance(sampler, ImageTasks):
    sampler.check_sizes(None, k_support, k_query)
    for start in range(0, num_tasks, chunk):
      yield sampler.tasks(start, min(chunk, num_tasks - start))
    return
  episode = sample_tasks(sampler, num_tasks, k_support, k_query)
  for start in range(0, num_tasks, chunk):
    yield Episode(*(a[start:start + chunk] for a in episode))


def fixed_task_chunks(sampler, num_tasks: int, k_support: int, k_query: int,
                      chunk: int) -> Callable[[], Iterable[Episode]]:
  """A function that gives the same tasks as `task_chunks` at every call (meta-validation).

  Image tasks are rebuilt from their indices at each call, so the 600 validation tasks of a
  MiniImagenet row never sit in memory for the whole run; the other samplers draw theirs once.
  """
  if isinstance(sampler, ImageTasks):
    return lambda: task_chunks(sampler, num_tasks, k_support, k_query, chunk)
  chunks = list(task_chunks(sampler, num_tasks, k_support, k_query, chunk))
  return lambda: chunks
