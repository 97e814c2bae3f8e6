"""Finding and checking blurred/sharp image pairs on disk (no TensorFlow).

Two layouts are recognised under `root/split`:
  native GOPRO_Large:  SEQ/{blur,sharp}/NAME.png  (pair name 'SEQ/NAME.png')
  flattened:           {blur,sharp}/NAME.png      (pair name 'NAME.png')
Folder names are configurable ('blur_gamma', 'input'/'target', ...). Pairs
match by file name. Or a pairs file lists them (`read_pairs_file`: RealBlur's
and HIDE's lists, any layout). Each file's header is read (not its pixels) so that bad
files are reported by name before training starts: a single bad pair among
many is skipped with a warning and counted; no usable pair at all is an error.
"""

import collections
import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.data import image_files

_PNG_TRAILER = b'IEND\xaeB`\x82'
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_MAX_LOGGED_SKIPS = 10


@dataclasses.dataclass(frozen=True)
class ImagePair:
  name: str  # 'SEQ/NAME.png' (native layout) or 'NAME.png' (flattened).
  blur: str  # Path of the blurred image.
  sharp: str  # Path of the sharp image.
  height: int
  width: int

  @property
  def group(self) -> str:
    """The sequence for the native layout, '' for the flattened one."""
    return os.path.dirname(self.name)


@dataclasses.dataclass
class PairList:
  pairs: list[ImagePair]
  skipped: list[tuple[str, str]]  # (path, reason) of each pair left out.
  colour_notes: collections.Counter  # Image modes converted to RGB, by mode.


def _sequences(split_dir: str, blur_folder: str) -> list[tuple[str, str]]:
  """(name prefix, folder holding blur/ and sharp/) for either layout."""
  if os.path.isdir(os.path.join(split_dir, blur_folder)):
    return [('', split_dir)]
  return [(seq, os.path.join(split_dir, seq)) for seq in sorted(os.listdir(split_dir))
          if os.path.isdir(os.path.join(split_dir, seq, blur_folder))]


def read_image_header(path: str) -> tuple[int, int, str]:
  """(height, width, PIL mode) of an image file, reading its header only.

  Raises ValueError with the reason for empty, unreadable or truncated files.
  """
  if os.path.getsize(path) == 0:
    raise ValueError('empty file')
  try:
    with Image.open(path) as image:
      width, height = image.size
      mode = image.mode
      image_format = image.format
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise ValueError(f'not a readable image ({e})') from None
  if image_format == 'PNG':
    with open(path, 'rb') as f:
      f.seek(-len(_PNG_TRAILER), os.SEEK_END)
      if f.read() != _PNG_TRAILER:
        raise ValueError('truncated PNG (no IEND chunk at the end)')
  return height, width, mode


def is_16bit_png(path: str) -> bool:
  """Whether the image file at `path` is a PNG of 16 bits per sample (its IHDR's bit depth)."""
  with open(path, 'rb') as f:
    header = f.read(25)
  return header[:8] == _PNG_SIGNATURE and len(header) == 25 and header[24] == 16


def level_format(pairs: Sequence[ImagePair]) -> tuple[np.ndarray, type]:
  """(which files of `pairs` are 16-bit PNGs: bool (len(pairs), 2), blur then sharp;
  the dtype of the set's training levels: np.uint16 if any is, else np.uint8).

  One dtype for the whole set, so that every batch has the same."""
  sixteen_bit = np.array([[is_16bit_png(p.blur), is_16bit_png(p.sharp)] for p in pairs],
                         bool).reshape(len(pairs), 2)
  return sixteen_bit, np.uint16 if sixteen_bit.any() else np.uint8


class _BadPair(Exception):

  def __init__(self, path: str, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path, self.reason = path, reason


def _check_pair(name: str, blur_path: str, sharp_path: str, min_size: int):
  """The checked ImagePair and the two images' modes; raises _BadPair."""
  headers = []
  for path in (blur_path, sharp_path):
    try:
      headers.append(read_image_header(path))
    except ValueError as e:
      raise _BadPair(path, str(e)) from None
  (bh, bw, blur_mode), (sh, sw, sharp_mode) = headers
  if (bh, bw) != (sh, sw):
    raise _BadPair(blur_path, f'it is {bw}x{bh} but its sharp partner {sharp_path} is {sw}x{sh}')
  if min(bh, bw) < min_size:
    raise _BadPair(blur_path, f'it is {bw}x{bh}, smaller than {min_size}x{min_size}')
  return ImagePair(name, blur_path, sharp_path, bh, bw), (blur_mode, sharp_mode)


def find_pairs(root: str, split: str, blur_folder: str = 'blur', sharp_folder: str = 'sharp',
               min_size: int = 0, max_pairs: Optional[int] = None) -> PairList:
  """Lists and checks the pairs of `root/split`, sorted by name.

  Pairs whose blurred or sharp image is missing, unreadable, truncated, of
  different sizes, or smaller than `min_size` on either side are skipped and
  logged. Grayscale, palette, 16-bit and RGBA images are accepted (decoded to
  RGB in [0, 1]). `max_pairs` keeps only the first pairs by name.
  """
  field = 'config.data.dir'
  if not root:
    raise InputError(f'{field} is empty.')
  if not os.path.isdir(root):
    raise InputError(f'{field}={root!r} is not a directory.')
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise InputError(f'{field}={root!r} has no {split!r} folder (it has '
                     f'{sorted(os.listdir(root))}); expected {split}/SEQ/{blur_folder}/ '
                     f'(GOPRO_Large) or {split}/{blur_folder}/ (flattened).')
  sequences = _sequences(split_dir, blur_folder)
  if not sequences:
    raise InputError(f'No {blur_folder!r} folder in {split_dir} or in its sub-folders: '
                     f'expected {split}/SEQ/{blur_folder}/*.png (GOPRO_Large) or '
                     f'{split}/{blur_folder}/*.png (flattened).')

  candidates = []
  skipped = []
  for prefix, folder in sequences:
    blurs = image_files.images_in_folder(os.path.join(folder, blur_folder))
    sharp_dir = os.path.join(folder, sharp_folder)
    sharps = image_files.images_in_folder(sharp_dir) if os.path.isdir(sharp_dir) else {}
    for file_name, blur_path in blurs.items():
      if file_name not in sharps:
        skipped.append((blur_path, f'no sharp partner in {sharp_dir}'))
        continue
      candidates.append((os.path.join(prefix, file_name), blur_path, sharps[file_name]))
  return _checked_pairs(candidates, skipped, split_dir, f'its {blur_folder!r} folders hold no '
                        f'{image_files.IMAGE_EXTENSIONS} files', min_size, max_pairs)


PAIR_ORDERS = ('blur_sharp', 'sharp_blur')


def read_pairs_file(root: str, pairs_file: str, order: str = 'blur_sharp', min_size: int = 0,
                    max_pairs: Optional[int] = None, field: str = 'config.data.pairs_file'
                    ) -> PairList:
  """The pairs listed in `pairs_file`, checked like `find_pairs`, in the file's order.

  One pair per line: two paths separated by white space, relative to `root`
  (or absolute), blurred first for `order` 'blur_sharp' and sharp first for
  'sharp_blur' (RealBlur's lists). Blank lines and text after '#' are
  ignored. A pair's name is its blurred image's path relative to `root`.
  """
  lookup(PAIR_ORDERS, order, 'config.data.pairs_file_order')
  if not os.path.isfile(pairs_file):
    raise InputError(f'{field}={pairs_file!r} is not a file.')
  candidates, skipped, names = [], [], set()
  with open(pairs_file) as f:
    for number, line in enumerate(f, 1):
      fields = line.split('#', 1)[0].split()
      if not fields:
        continue
      if len(fields) != 2:
        raise InputError(f'{pairs_file}, line {number}: expected two paths (blurred and sharp '
                         f'image, order {order!r}), found {len(fields)} fields: {line.strip()!r}.')
      blur, sharp = fields if order == 'blur_sharp' else fields[::-1]
      blur, sharp = (os.path.join(root, path) for path in (blur, sharp))
      name = os.path.relpath(blur, root)
      if name in names:
        raise InputError(f'{pairs_file}, line {number}: {name} is listed twice.')
      names.add(name)
      missing = [path for path in (blur, sharp) if not os.path.isfile(path)]
      if missing:
        skipped.append((missing[0], f'listed in {pairs_file} line {number} but missing'))
        continue
      candidates.append((name, blur, sharp))
  return _checked_pairs(candidates, skipped, pairs_file, 'it lists no pairs', min_size,
                        max_pairs)


def _checked_pairs(candidates, skipped, source: str, why_empty: str, min_size: int,
                   max_pairs: Optional[int]) -> PairList:
  """Checks (name, blur path, sharp path) candidates; skips and logs bad ones."""
  if max_pairs:
    candidates = candidates[:max_pairs]
  pairs = []
  colour_notes = collections.Counter()
  for name, blur_path, sharp_path in candidates:
    try:
      pair, modes = _check_pair(name, blur_path, sharp_path, min_size)
    except _BadPair as e:
      skipped.append((e.path, e.reason))
      continue
    colour_notes.update(m for m in modes if m != 'RGB')
    pairs.append(pair)

  if colour_notes:
    logging.info('Images converted to RGB, by mode: %s.', dict(colour_notes))
  report_found(len(pairs), skipped, 'image pairs', source, why_empty)
  return PairList(pairs, skipped, colour_notes)


def report_found(num_found: int, skipped: list[tuple[str, str]], what: str, source: str,
                 why_empty: str) -> None:
  """Logs the first skipped (path, reason)s and the count of `what` found in
  `source`; none found is an InputError giving a few reasons, or `why_empty`."""
  log_skipped(skipped)
  if not num_found:
    reasons = '; '.join(f'{p}: {r}' for p, r in skipped[:3])
    raise InputError(f'No usable {what} in {source}'
                     + (f' ({len(skipped)} skipped, e.g. {reasons})' if skipped else
                        f': {why_empty}') + '.')
  logging.info('Found %d %s in %s (%d skipped).', num_found, what, source, len(skipped))


def log_skipped(skipped: list[tuple[str, str]]) -> None:
  """Logs the first skipped (path, reason)s as warnings, and how many more there are."""
  for path, reason in skipped[:_MAX_LOGGED_SKIPS]:
    logging.warning('Skipping %s: %s.', path, reason)
  if len(skipped) > _MAX_LOGGED_SKIPS:
    logging.warning('... and %d more skipped.', len(skipped) - _MAX_LOGGED_SKIPS)
