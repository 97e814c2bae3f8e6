"""Training pairs decoded once, so that a crop costs a slice instead of two image decodes.

Decoding one 1280x720 PNG takes about 23 ms on a core; a crop cut from decoded
pixels takes well under one. `config.data.cache` picks where the decoded pairs live:
  'none'    nowhere: the pipeline decodes both files of a pair for every crop.
  'memory'  in this process's RAM, decoded at start-up.
  'file'    in `cache_dir`/NAME.u8, memory-mapped: decoded on the first run and
            reused while the pair files are unchanged (NAME.json records their
            sizes and modification times), shared by the processes of a host.
Pixels are stored as the levels the file holds (uint8, or uint16 for 16-bit PNGs)
with the factor that maps them to the float32 values `transforms.decode_image`
gives, so cached crops are bit-identical to uncached ones. A pair that does not
decode is recorded as such and skipped like the uncached pipeline skips it.
"""

import dataclasses
import fcntl
import glob
import hashlib
import json
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from deblur_jax.core import files
from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import transforms

MODES = ('none', 'memory', 'file')
_FORMAT = 'deblur_jax decoded pairs 1'
_ALIGN = 64  # Bytes; every image starts on a cache-line boundary of the file.
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@dataclasses.dataclass(frozen=True)
class Layout:
  """How one decoded image is stored and turned back into decode_image's floats.

  float32 pixel = float32(level) * multiplier * (1 / denominator), in that order:
  TensorFlow decodes every PNG through 16-bit levels (an 8-bit level v becomes
  v * 257, then * (1 / 65535) in float32) and other formats through 8-bit levels.
  """
  offset: int  # Bytes from the start of the cache file; -1 in memory.
  height: int
  width: int
  dtype: str  # 'uint8' or 'uint16' (little-endian in files).
  multiplier: int  # 257 for 8-bit PNG levels, else 1.
  denominator: int  # 65535 for PNG, 255 for JPEG and BMP.

  @property
  def num_bytes(self) -> int:
    return self.height * self.width * 3 * np.dtype(self.dtype).itemsize


def image_layout(path: str, height: int, width: int) -> Layout:
  """The Layout of the image file at `path` (`height` x `width`), from its header."""
  with open(path, 'rb') as f:
    header = f.read(26)
  if header[:8] != _PNG_SIGNATURE:
    return Layout(-1, height, width, 'uint8', 1, 255)
  if len(header) > 24 and header[24] == 16:  # IHDR bit depth
    return Layout(-1, height, width, 'uint16', 1, 65535)
  return Layout(-1, height, width, 'uint8', 257, 65535)


class DecodedPairs:
  """Decoded blurred/sharp images of a list of pairs, and crops of them."""

  def __init__(self, images: Sequence[Optional[tuple[np.ndarray, np.ndarray]]],
               layouts: Sequence[tuple[Layout, Layout]]):
    """images[i]: (blur, sharp) levels of pair i, HxWx3, or None if it did not decode."""
    self._images = list(images)
    deep = any(layout.dtype == 'uint16' for pair in layouts for layout in pair)
    self._level_dtype = np.uint16 if deep else np.uint8
    self._shapes = np.array([[b.height, b.width, 6] for b, _ in layouts], np.int32)
    self._ok = np.array([x is not None for x in self._images])
    # Per pair, of its blur and sharp images: the factors of Layout's formula.
    self._multipliers = np.array([[b.multiplier, s.multiplier] for b, s in layouts], np.float32)
    self._scales = np.array([[1 / b.denominator, 1 / s.denominator] for b, s in layouts],
                            np.float32)

  def __len__(self):
    return len(self._images)

  def crop_levels(self, i: int, top: int, left: int, size: int,
                  flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Stored levels of the size x size crops of pair i's (blur, sharp) at (top, left),
    flipped left-right if `flip`: two (size, size, 3) arrays."""
    pair = self._images[i]
    if pair is None:
      raise ValueError(f'Training pair {i} could not be decoded.')
    crops = []
    for image in pair:
      window = image[top:top + size, left:left + size]
      crops.append(np.ascontiguousarray(window[:, ::-1] if flip else window,
                                        self._level_dtype))
    return crops[0], crops[1]

  def random_crop_pair(self, i, size: int, hflip: bool, crop_seed, flip_seed):
    """TensorFlow: the (blur, sharp) crops of pair `i` (a scalar tensor) that
    `transforms.random_crop_flip` cuts from them stacked on channels: float32
    (size, size, 3) in [0, 1] each."""
    ok = tf.constant(self._ok)[i]
    top, left, flip = transforms.crop_window(tf.constant(self._shapes)[i], size, hflip,
                                             crop_seed, flip_seed)
    with tf.control_dependencies([tf.debugging.Assert(ok, ['Undecodable training pair', i])]):
      levels = tf.numpy_function(
          lambda *a: self.crop_levels(int(a[0]), int(a[1]), int(a[2]), size, bool(a[3])),
          [i, top, left, flip], [tf.as_dtype(self._level_dtype)] * 2, stateful=False)
    multipliers, scales = tf.constant(self._multipliers)[i], tf.constant(self._scales)[i]
    return tuple(tf.cast(tf.ensure_shape(x, [size, size, 3]), tf.float32) * multipliers[k]
                 * scales[k] for k, x in enumerate(levels))


def check_mode(mode: str) -> str:
  """`mode` if it is one of MODES; otherwise an InputError."""
  return lookup(MODES, mode, 'config.data.cache')


def load(pairs: Sequence[pairs_lib.ImagePair], mode: str, cache_dir: str,
         name: str) -> Optional[DecodedPairs]:
  """The decoded `pairs` for cache `mode` (see MODES); None for 'none'.

  'file' reuses `cache_dir`/`name`.u8 if its index matches the pair files,
  otherwise decodes them into it.
  """
  if check_mode(mode) == 'none':
    return None
  layouts = [(image_layout(p.blur, p.height, p.width), image_layout(p.sharp, p.height, p.width))
             for p in pairs]
  if mode == 'memory':
    return _decode_in_memory(pairs, layouts)
  if not cache_dir:
    raise InputError("config.data.cache='file' needs config.data.cache_dir, a folder with room "
                     f'for the decoded images ({_gigabytes(_total_bytes(layouts))}).')
  return _FileCache(cache_dir, name).load(pairs, layouts)


def _total_bytes(layouts) -> int:
  return sum(layout.num_bytes for pair in layouts for layout in pair)


def _gigabytes(num_bytes: int) -> str:
  return f'{num_bytes / 1e9:.2f} GB'


def decode_levels(pairs: Sequence[pairs_lib.ImagePair], layouts):
  """Yields (index, blur levels, sharp levels) of each pair in order, decoded in
  parallel by TensorFlow; a pair that does not decode is left out."""
  paths = tf.data.Dataset.from_tensor_slices((
      tf.range(len(pairs), dtype=tf.int64), [p.blur for p in pairs], [p.sharp for p in pairs],
      [[b.dtype == 'uint16', s.dtype == 'uint16'] for b, s in layouts]))

  def decode(path, deep):
    # Both branches give (8-bit levels, 16-bit levels), one of them empty.
    empty8, empty16 = tf.zeros([0, 0, 3], tf.uint8), tf.zeros([0, 0, 3], tf.uint16)
    return tf.cond(deep, lambda: (empty8, transforms.decode_image(path, tf.uint16)),
                   lambda: (transforms.decode_image(path, tf.uint8), empty16))

  def decode_pair(index, blur, sharp, deep):
    return index, decode(blur, deep[0]), decode(sharp, deep[1])

  decoded = paths.map(decode_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  for index, blur, sharp in decoded.ignore_errors().as_numpy_iterator():
    yield int(index), _nonempty(*blur), _nonempty(*sharp)


def _nonempty(levels8: np.ndarray, levels16: np.ndarray) -> np.ndarray:
  return levels8 if levels8.size else levels16


def _decoded(pairs, layouts):
  """Yields (index, blur, sharp) for every pair, with None images for those that do not
  decode (logged), in order."""
  expected = 0
  for index, blur, sharp in decode_levels(pairs, layouts):
    for missing in range(expected, index):
      yield missing, None, None
    expected = index + 1
    yield index, blur, sharp
  for missing in range(expected, len(pairs)):
    yield missing, None, None


def _log_undecodable(pairs, bad: Sequence[int]):
  pairs_lib.log_skipped([(f'{pairs[i].blur} (or its partner {pairs[i].sharp})',
                          'the training pair does not decode') for i in bad])


def _decode_in_memory(pairs, layouts) -> DecodedPairs:
  total = _total_bytes(layouts)
  physical = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  if total > physical:
    raise InputError(f"config.data.cache='memory': the decoded training images take "
                     f'{_gigabytes(total)}, more than the {_gigabytes(physical)} of memory of '
                     "this machine; use cache='file'.")
  logging.info('Decoding %d training pairs into memory (%s).', len(pairs), _gigabytes(total))
  images = [None if blur is None else (blur, sharp) for _, blur, sharp in _decoded(pairs, layouts)]
  _log_undecodable(pairs, [i for i, x in enumerate(images) if x is None])
  return DecodedPairs(images, layouts)


def _source_stat(path: str) -> dict:
  stat = os.stat(path)
  return {'path': os.path.abspath(path), 'file_bytes': stat.st_size,
          'file_mtime_ns': stat.st_mtime_ns}


class _FileCache:
  """`cache_dir`/NAME.u8 (the levels of every image, each at its offset) and NAME.json
  (its index: the source files' stats and each image's Layout).

  Both are written atomically (files.atomic_write), the data first.
  The data file starts with a random token that its index repeats, so that a
  crash between the renames leaves an index that does not match and the cache is
  rebuilt. Builders hold NAME.lock, so that the processes of a host decode once.
  """

  def __init__(self, cache_dir: str, name: str):
    self.cache_dir = cache_dir
    self.data_path = os.path.join(cache_dir, name + '.u8')
    self.index_path = os.path.join(cache_dir, name + '.json')
    self.lock_path = os.path.join(cache_dir, name + '.lock')

  def load(self, pairs, layouts) -> DecodedPairs:
    if os.path.exists(self.cache_dir) and not os.path.isdir(self.cache_dir):
      raise InputError(f'config.data.cache_dir={self.cache_dir!r} is a file, not a folder.')
    opened, reason = self._open(pairs)
    if opened:
      return opened
    try:
      os.makedirs(self.cache_dir, exist_ok=True)
      lock = open(self.lock_path, 'a')  # pylint: disable=consider-using-with
    except OSError as e:
      raise InputError(f'Cannot write the decoded training images to config.data.cache_dir='
                       f'{self.cache_dir!r}: {e.strerror or e}.') from None
    with lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      opened, reason = self._open(pairs)  # Another process may have built it meanwhile.
      if opened:
        return opened
      logging.info('Decoding %d training pairs into %s (%s).', len(pairs), self.data_path, reason)
      self._build(pairs, layouts)
      opened, reason = self._open(pairs)
    if not opened:
      raise InputError(f'The decoded training images just written to {self.data_path} do not '
                       f'read back: {reason}.')
    return opened

  def _open(self, pairs) -> tuple[Optional[DecodedPairs], str]:
    """(the cache if it holds `pairs`' current files, else None; why not)."""
    try:
      with open(self.index_path) as f:
        index = json.load(f)
    except FileNotFoundError:
      return None, 'no cache yet'
    except (OSError, ValueError) as e:
      return None, f'unreadable index {self.index_path} ({e})'
    if index.get('format') != _FORMAT:
      return None, f'{self.index_path} is not an index of format {_FORMAT!r}'
    entries = index.get('pairs', {})
    for pair in pairs:
      entry = entries.get(pair.name)
      if entry is None:
        return None, f'pair {pair.name} is not in the cache'
      if [entry['blur']['source'], entry['sharp']['source']] != [_source_stat(pair.blur),
                                                                 _source_stat(pair.sharp)]:
        return None, f'{pair.blur} or {pair.sharp} changed since the cache was written'
    try:
      fd = os.open(self.data_path, os.O_RDONLY)
    except OSError as e:
      return None, f'{self.data_path}: {e.strerror}'
    with os.fdopen(fd, 'rb') as f:
      size = os.fstat(f.fileno()).st_size
      if size != index.get('data_bytes') or f.read(_ALIGN).hex() != index.get('token'):
        return None, f'{self.data_path} is not the file its index describes'
      data = np.memmap(f, np.uint8, 'r', shape=(size,))
    images, layouts = [], []
    for pair in pairs:
      entry = entries[pair.name]
      blur, sharp = (Layout(**entry[k]['layout']) for k in ('blur', 'sharp'))
      layouts.append((blur, sharp))
      images.append((_view(data, blur), _view(data, sharp)) if entry['ok'] else None)
    return DecodedPairs(images, layouts), ''

  def _build(self, pairs, layouts):
    """Decodes `pairs` into the data file and writes its index, each renamed into place."""
    for path in (self.data_path, self.index_path):  # temporary files left by a crash
      for stale in glob.glob(glob.escape(path) + '.tmp*'):
        os.remove(stale)
    total = _total_bytes(layouts) + _ALIGN * (2 * len(pairs) + 1)
    free = _free_bytes(self.cache_dir)
    if free is not None and total > free:
      raise InputError(f'The decoded training images need {_gigabytes(total)} in '
                       f'config.data.cache_dir={self.cache_dir!r}, which has '
                       f'{_gigabytes(free)} free.')
    # Taken before decoding: a file changed meanwhile makes the next run rebuild.
    sources = [(_source_stat(p.blur), _source_stat(p.sharp)) for p in pairs]
    token = os.urandom(_ALIGN)
    entries, bad = {}, []
    try:
      with files.atomic_write(self.data_path, sync=True) as f:
        f.write(token)
        for i, blur, sharp in _decoded(pairs, layouts):
          entry = {'ok': blur is not None}
          for k, (key, levels) in enumerate((('blur', blur), ('sharp', sharp))):
            layout = layouts[i][k]
            if levels is not None:
              f.write(b'\0' * (-f.tell() % _ALIGN))
              layout = dataclasses.replace(layout, offset=f.tell())
              f.write(np.ascontiguousarray(levels, np.dtype(layout.dtype).newbyteorder('<')))
            entry[key] = {'source': sources[i][k], 'layout': dataclasses.asdict(layout)}
          if blur is None:
            bad.append(i)
          entries[pairs[i].name] = entry
        data_bytes = f.tell()
      index = {'format': _FORMAT, 'data_bytes': data_bytes, 'token': token.hex(),
               'pairs': entries}
      with files.atomic_write(self.index_path, 'w', sync=True) as f:
        json.dump(index, f)
    except OSError as e:
      raise InputError(f'Cannot write the decoded training images to {self.data_path}: '
                       f'{e.strerror or e}.') from None
    _log_undecodable(pairs, bad)


def _view(data: np.ndarray, layout: Layout) -> np.ndarray:
  dtype = np.dtype(layout.dtype).newbyteorder('<')
  flat = data[layout.offset:layout.offset + layout.num_bytes].view(dtype)
  return flat.reshape(layout.height, layout.width, 3)


def _free_bytes(folder: str) -> Optional[int]:
  try:
    stat = os.statvfs(folder)
  except OSError:
    return None
  return stat.f_bavail * stat.f_frsize


def cache_name(root: str, split: str, blur_folder: str, sharp_folder: str) -> str:
  """NAME of the cache files of a split of a dataset folder: the split and a digest."""
  key = json.dumps([os.path.abspath(root), split, blur_folder, sharp_folder])
  safe_split = ''.join(c if c.isalnum() or c in '-_' else '_' for c in split)
  return f'{safe_split}-{hashlib.sha256(key.encode()).hexdigest()[:12]}'
