"""Training pairs decoded once, so that a crop costs a copy instead of two image decodes.

Decoding one 1280x720 PNG takes about 20 ms on a core; cutting a crop pair from
decoded pixels, a batch at a time, well under a tenth of one. `config.data.cache`
picks where the decoded pairs live (the 'folders' source only):
  'auto'    'file' (the default).
  'none'    nowhere: the pipeline decodes both files of a pair for every crop.
  'memory'  in this process's RAM, decoded at start-up.
  'file'    in `cache_dir`/NAME.u8 (`cache_dir` '': default_cache_dir()),
            memory-mapped: decoded on the first run and reused while the pair
            files are unchanged (NAME.json records their sizes and modification
            times), shared by the processes of a node through the page cache.
Pixels are stored as the levels the pipeline sends to the device
(transforms.decode_levels: uint8, or uint16 for a set with a 16-bit PNG), so
cached crops equal uncached ones level for level. A pair that does not decode
is recorded as such and skipped like the uncached pipeline skips it.
"""

import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import threading
import weakref
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from deblur_jax.core import files
from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import transforms

# config.data.cache -> the mode the 'folders' source uses ('auto': the file cache,
# shared by the processes of a node; the other sources decode as they go).
MODES = {'auto': 'file', 'none': 'none', 'memory': 'memory', 'file': 'file'}
_FORMAT = 'deblur_jax decoded pairs 2'  # 2: levels stored in the set's wire dtype
_ALIGN = 64  # Bytes; every image starts on a cache-line boundary of the file.


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where one decoded image is stored and its shape."""
  offset: int  # Bytes from the start of the cache file; -1 in memory.
  height: int
  width: int
  dtype: str  # The set's level dtype, 'uint8' or 'uint16' (little-endian in files).

  @property
  def num_bytes(self) -> int:
    return self.height * self.width * 3 * np.dtype(self.dtype).itemsize


class DecodedPairs:
  """Decoded blurred/sharp levels of a list of pairs, and batches of crops of them.

  A training example is first drawn as a window (`window`, per example in
  TensorFlow), then a batch of windows is cut at once (`cut_batch`, one Python
  call per batch, into reused memory). Cutting each example in its own
  tf.numpy_function call and converting it to float32 there gave 800-900 crops per
  CPU-second on a 2-core EPYC, this 3,300-3,800 (256x256 crops of 1280x720 images).
  """

  def __init__(self, images: Sequence[Optional[tuple[np.ndarray, np.ndarray]]],
               shapes: Sequence[tuple[int, int]], dtype):
    """images[i]: (blur, sharp) levels of pair i, HxWx3 of `dtype`, or None if it did
    not decode; shapes[i]: (height, width) of pair i."""
    self._images = list(images)
    self.dtype = np.dtype(dtype)
    self._shapes = np.array([[height, width, 6] for height, width in shapes], np.int32)
    self._ok = np.array([x is not None for x in self._images])
    self._buffers = _Buffers()

  def __len__(self):
    return len(self._images)

  def window(self, i, size: int, hflip: bool, crop_seed, flip_seed) -> dict:
    """TensorFlow: where `transforms.random_crop_flip` cuts pair `i` (a scalar tensor)
    with these seeds, {'pair', 'top', 'left', 'hflip'} (scalar tensors); an error
    (the example is skipped) if the pair did not decode."""
    ok = tf.constant(self._ok)[i]
    top, left, flip = transforms.crop_window(tf.constant(self._shapes)[i], size, hflip,
                                             crop_seed, flip_seed)
    with tf.control_dependencies([tf.debugging.Assert(ok, ['Undecodable training pair', i])]):
      pair = tf.identity(tf.cast(i, tf.int32))
    return {'pair': pair, 'top': top, 'left': left, 'hflip': flip}

  def cut(self, windows: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The (blur, sharp) crops of a batch of `windows` (`window`'s keys, and
    optionally 'vflip' and 'transpose' as transforms.turn applies them, each a numpy
    array of N): two (N, size, size, 3) arrays of self.dtype."""
    n = len(windows['pair'])
    no = np.zeros(n, bool)
    vflips, transposes = windows.get('vflip', no), windows.get('transpose', no)
    crops = (self._buffers.take((n, size, size, 3), self.dtype),
             self._buffers.take((n, size, size, 3), self.dtype))
    scratch = np.empty((size, size, 3), self.dtype)
    for k in range(n):
      top, left, hflip = windows['top'][k], windows['left'][k], windows['hflip'][k]
      for image, out in zip(self._images[windows['pair'][k]], crops):
        window = image[top:top + size, left:left + size]
        if hflip and not transposes[k]:
          # Flipped from a copy in the CPU's cache: reading the image once is
          # cheaper than once per channel (see _copy_pixels).
          np.copyto(scratch, window)
          window = scratch
        _copy_pixels(out[k], _turned(window, hflip, vflips[k], transposes[k]))
    return crops

  def cut_batch(self, windows: dict, size: int) -> dict:
    """TensorFlow: {'blur', 'sharp'} of a batch of `windows` (tensors of N), `cut`
    in one call: (N, size, size, 3) levels of self.dtype each."""
    keys = sorted(windows)
    blur, sharp = tf.numpy_function(
        lambda *values: self.cut(dict(zip(keys, values)), size), [windows[k] for k in keys],
        [tf.as_dtype(self.dtype)] * 2, stateful=False)
    shape = [windows['pair'].shape[0], size, size, 3]
    return {'blur': tf.ensure_shape(blur, shape), 'sharp': tf.ensure_shape(sharp, shape)}


class _Buffers:
  """Arrays for `DecodedPairs.cut` to write batches into, each reused once the array
  handed out over its memory is gone. Fresh memory costs the kernel a page fault
  per 4 KiB and zeroing: half the CPU time of cutting a batch. The arrays start on
  64-byte boundaries, where TensorFlow takes a tf.numpy_function's result without
  copying it (it copies others); it then holds the array until the batch is used."""

  def __init__(self):
    self._free = []  # ((shape, dtype), memory) ready for reuse
    # Reentrant: a garbage collection inside `take` may give an array back.
    self._lock = threading.RLock()

  def take(self, shape: tuple, dtype) -> np.ndarray:
    key = (tuple(shape), np.dtype(dtype))
    memory = None
    with self._lock:
      index = next((n for n, (k, _) in enumerate(self._free) if k == key), None)
      if index is not None:
        memory = self._free.pop(index)[1]
    if memory is None:
      num_bytes = int(np.prod(shape)) * key[1].itemsize
      raw = np.empty(num_bytes + _ALIGN, np.uint8)
      start = -raw.ctypes.data % _ALIGN
      memory = raw[start:start + num_bytes].view(key[1]).reshape(shape)
    array = memory.view()  # handed out; `memory` is reused when it is collected
    weakref.finalize(array, self._give_back, key, memory)
    return array

  def _give_back(self, key, memory):
    with self._lock:
      self._free.append((key, memory))


def _turned(image: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
  """A view of HxWxC `image` flipped and transposed in the order of
  transforms.random_crop_flip and transforms.turn."""
  if hflip:
    image = image[:, ::-1]
  if vflip:
    image = image[::-1]
  return image.transpose(1, 0, 2) if transpose else image


def _copy_pixels(out: np.ndarray, view: np.ndarray):
  """out[...] = view (HxWxC). A view whose pixels are not side by side in memory
  (flipped left-right or transposed) is copied a channel at a time: numpy then
  moves single elements at a fixed stride, several times faster than 3-element
  pixels. On a 2-core EPYC (Zen 4), per 256x256 RGB uint8 crop of a 1280x720 image
  not in the CPU's cache: 50 us plain; flipped, 340 us as one copy (even from the
  CPU's cache), 140-180 us a channel at a time, 105 us a channel at a time from a
  copy in the cache (`cut`); transposed, 145 us a channel at a time, 175 us from a
  copy."""
  if view.strides[1] == view.shape[2] * view.itemsize:
    np.copyto(out, view)
  else:
    for channel in range(view.shape[2]):
      np.copyto(out[..., channel], view[..., channel])


def check_mode(mode: str) -> str:
  """The mode the 'folders' source uses for config.data.cache=`mode` (see MODES);
  an InputError naming the field for an unknown one."""
  return lookup(MODES, mode, 'config.data.cache')


def default_cache_dir() -> str:
  """$XDG_CACHE_HOME/deblur_jax, or ~/.cache/deblur_jax: kept across runs and
  reboots, one per user. On a cluster, config.data.cache_dir should name a
  node-local disk instead ($SLURM_TMPDIR): home folders are often network file
  systems with quotas."""
  base = os.environ.get('XDG_CACHE_HOME', '')
  if not os.path.isabs(base):  # the XDG spec: a relative path is invalid, ignored
    base = os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'deblur_jax')


def load(pairs: Sequence[pairs_lib.ImagePair], mode: str, cache_dir: str,
         name: str) -> Optional[DecodedPairs]:
  """The decoded `pairs` for config.data.cache=`mode` (see MODES); None for 'none'.

  'file' reuses `cache_dir`/`name`.u8 (`cache_dir` '': default_cache_dir()) if its
  index matches the pair files, otherwise decodes them into it.
  """
  mode = check_mode(mode)
  if mode == 'none':
    return None
  sixteen_bit, dtype = pairs_lib.level_format(pairs)
  layouts = [(Layout(-1, p.height, p.width, np.dtype(dtype).name),) * 2 for p in pairs]
  if mode == 'memory':
    return _decode_in_memory(pairs, sixteen_bit, layouts)
  return _FileCache(cache_dir or default_cache_dir(), name).load(pairs, sixteen_bit, layouts)


def _total_bytes(layouts) -> int:
  return sum(layout.num_bytes for pair in layouts for layout in pair)


def _gigabytes(num_bytes: int) -> str:
  return f'{num_bytes / 1e9:.2f} GB'


def decode_pairs(pairs: Sequence[pairs_lib.ImagePair], sixteen_bit: np.ndarray, dtype):
  """Yields (index, blur levels, sharp levels) of each pair in order, decoded in
  parallel by TensorFlow as transforms.decode_levels (`sixteen_bit` and `dtype`:
  pairs.level_format); a pair that does not decode is left out."""
  paths = tf.data.Dataset.from_tensor_slices((
      tf.range(len(pairs), dtype=tf.int64), [p.blur for p in pairs], [p.sharp for p in pairs],
      sixteen_bit))

  def decode_pair(index, blur, sharp, deep):
    return (index, transforms.decode_levels(blur, deep[0], dtype),
            transforms.decode_levels(sharp, deep[1], dtype))

  decoded = paths.map(decode_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  for index, blur, sharp in decoded.ignore_errors().as_numpy_iterator():
    yield int(index), blur, sharp


def _decoded(pairs, sixteen_bit, layouts):
  """Yields (index, blur, sharp) for every pair, with None images for those that do not
  decode (logged), in order."""
  expected = 0
  for index, blur, sharp in decode_pairs(pairs, sixteen_bit, layouts[0][0].dtype):
    for missing in range(expected, index):
      yield missing, None, None
    expected = index + 1
    yield index, blur, sharp
  for missing in range(expected, len(pairs)):
    yield missing, None, None


def _log_undecodable(pairs, bad: Sequence[int]):
  pairs_lib.log_skipped([(f'{pairs[i].blur} (or its partner {pairs[i].sharp})',
                          'the training pair does not decode') for i in bad])


def _decode_in_memory(pairs, sixteen_bit, layouts) -> DecodedPairs:
  total = _total_bytes(layouts)
  physical = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  if total > physical:
    raise InputError(f"config.data.cache='memory': the decoded training images take "
                     f'{_gigabytes(total)}, more than the {_gigabytes(physical)} of memory of '
                     "this machine; use cache='file'.")
  logging.info('Decoding %d training pairs into memory (%s).', len(pairs), _gigabytes(total))
  images = [None if blur is None else (blur, sharp)
            for _, blur, sharp in _decoded(pairs, sixteen_bit, layouts)]
  _log_undecodable(pairs, [i for i, x in enumerate(images) if x is None])
  return DecodedPairs(images, [(p.height, p.width) for p in pairs], layouts[0][0].dtype)


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
  rebuilt. Builders hold NAME.lock, so that the processes of a node decode once.
  """

  def __init__(self, cache_dir: str, name: str):
    self.cache_dir = cache_dir
    self.data_path = os.path.join(cache_dir, name + '.u8')
    self.index_path = os.path.join(cache_dir, name + '.json')
    self.lock_path = os.path.join(cache_dir, name + '.lock')

  def load(self, pairs, sixteen_bit, layouts) -> DecodedPairs:
    if os.path.exists(self.cache_dir) and not os.path.isdir(self.cache_dir):
      raise InputError(f'config.data.cache_dir={self.cache_dir!r} is a file, not a folder.')
    dtype = layouts[0][0].dtype
    opened, reason = self._open(pairs, dtype)
    if opened:
      logging.info('Reading the decoded training pairs from %s.', self.data_path)
      return opened
    try:
      os.makedirs(self.cache_dir, exist_ok=True)
      lock = open(self.lock_path, 'a')  # pylint: disable=consider-using-with
    except OSError as e:
      raise InputError(f'Cannot write the decoded training images to config.data.cache_dir='
                       f'{self.cache_dir!r}: {e.strerror or e}.') from None
    with lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      opened, reason = self._open(pairs, dtype)  # Another process may have built it meanwhile.
      if opened:
        return opened
      logging.info('Decoding %d training pairs into %s (%s).', len(pairs), self.data_path, reason)
      self._build(pairs, sixteen_bit, layouts)
      opened, reason = self._open(pairs, dtype)
    if not opened:
      raise InputError(f'The decoded training images just written to {self.data_path} do not '
                       f'read back: {reason}.')
    return opened

  def _open(self, pairs, dtype: str) -> tuple[Optional[DecodedPairs], str]:
    """(the cache if it holds `pairs`' current files as levels of `dtype`, else None;
    why not)."""
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
    images = []
    for pair in pairs:
      entry = entries[pair.name]
      blur, sharp = (Layout(**entry[k]['layout']) for k in ('blur', 'sharp'))
      if {blur.dtype, sharp.dtype} != {dtype}:  # the set lost or gained its 16-bit images
        return None, f'{pair.name} is stored as {blur.dtype}, the set needs {dtype}'
      images.append((_view(data, blur), _view(data, sharp)) if entry['ok'] else None)
    return DecodedPairs(images, [(p.height, p.width) for p in pairs], dtype), ''

  def _build(self, pairs, sixteen_bit, layouts):
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
        for i, blur, sharp in _decoded(pairs, sixteen_bit, layouts):
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
