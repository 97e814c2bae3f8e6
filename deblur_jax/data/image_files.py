"""Reading and writing image files for inference, without TensorFlow.

Any PNG (8 or 16 bit; gray, palette, RGB, with or without alpha), JPEG or BMP
is read as float32 RGB in [0, 1] plus what is needed to write the result back
in kind: the bit depth, whether it was gray, and its alpha channel. Results
are written as lossless PNG, rounded to the nearest level.
"""

import dataclasses
import os
import struct
import zlib
from typing import Optional

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

from deblur_jax.errors import InputError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_warned_16_bit = []


@dataclasses.dataclass
class LoadedImage:
  rgb: np.ndarray  # float32 (H, W, 3) in [0, 1].
  bit_depth: int  # 8 or 16, of the file.
  gray: bool  # The file had one colour channel.
  alpha: Optional[np.ndarray] = None  # float32 (H, W) in [0, 1], or None.


def _png_bit_depth_and_colour(path: str) -> tuple[int, int]:
  with open(path, 'rb') as f:
    header = f.read(26)
  if header[:8] != _PNG_SIGNATURE or header[12:16] != b'IHDR':
    return 8, 2
  return header[24], header[25]


def _read_16_bit_colour(path: str) -> Optional[np.ndarray]:
  """A 16-bit colour PNG at full depth through TensorFlow, or None without it
  (Pillow reads such files at 8 bits)."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    if not _warned_16_bit:
      logging.warning('16-bit colour PNGs are read at 8 bits without TensorFlow (%s).', path)
      _warned_16_bit.append(path)
    return None
  tf.config.set_visible_devices([], 'GPU')
  return tf.io.decode_png(tf.io.read_file(path), dtype=tf.uint16).numpy()


def read_image(path: str) -> LoadedImage:
  """Reads an image file; an unreadable file is an InputError naming it."""
  try:
    bit_depth, colour_type = _png_bit_depth_and_colour(path)
    array = None
    if bit_depth == 16 and colour_type in (2, 6):
      array = _read_16_bit_colour(path)
    if array is None:
      with Image.open(path) as image:
        image.load()
        if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
          array = np.asarray(image, np.uint16 if bit_depth == 16 else np.int32)
          array = array[..., None]
        else:
          if image.mode not in ('L', 'LA', 'RGB', 'RGBA'):
            image = image.convert('RGBA' if 'A' in image.mode or 'transparency' in image.info
                                  else 'RGB')
          array = np.asarray(image)
          bit_depth = 8
          if array.ndim == 2:
            array = array[..., None]
  except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
    raise InputError(f'Cannot read image {path}: {e}') from None
  scale = 65535.0 if bit_depth == 16 else 255.0
  values = array.astype(np.float32) / scale
  channels = values.shape[-1]
  alpha = values[..., -1] if channels in (2, 4) else None
  colour = values[..., :1] if channels <= 2 else values[..., :3]
  rgb = np.repeat(colour, 3, axis=-1) if colour.shape[-1] == 1 else colour
  return LoadedImage(np.ascontiguousarray(rgb), bit_depth, gray=channels <= 2, alpha=alpha)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return (struct.pack('>I', len(data)) + kind + data
          + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png_16(array: np.ndarray) -> bytes:
  """A 16-bit PNG of uint16 (H, W, C), C in 1-4 (Pillow writes 16-bit gray only)."""
  height, width, channels = array.shape
  header = struct.pack('>IIBBBBB', width, height, 16, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
  rows = np.ascontiguousarray(array, '>u2').reshape(height, width * channels).view(np.uint8)
  raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter 0 per row
  return (_PNG_SIGNATURE + _png_chunk(b'IHDR', header)
          + _png_chunk(b'IDAT', zlib.compress(raw.tobytes(), 6)) + _png_chunk(b'IEND', b''))


def to_levels(values: np.ndarray, bit_depth: int) -> np.ndarray:
  """[0, 1] floats to the nearest of the 2**bit_depth levels."""
  top = 65535.0 if bit_depth == 16 else 255.0
  dtype = np.uint16 if bit_depth == 16 else np.uint8
  return np.floor(np.clip(values, 0.0, 1.0) * top + 0.5).astype(dtype)  # halves round up


def write_image(path: str, rgb: np.ndarray, like: LoadedImage) -> None:
  """Writes `rgb` (H, W, 3) in [0, 1] as a PNG with the depth, colour and alpha
  of `like`; the file appears complete or not at all."""
  channels = [rgb.mean(axis=-1, keepdims=True)] if like.gray else [rgb]
  if like.alpha is not None:
    channels.append(like.alpha[..., None])
  levels = to_levels(np.concatenate(channels, axis=-1), like.bit_depth)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}'
  try:
    if like.bit_depth == 16:
      with open(tmp, 'wb') as f:
        f.write(encode_png_16(levels))
    else:
      Image.fromarray(levels[..., 0] if levels.shape[-1] == 1 else levels).save(tmp, format='PNG')
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def list_images(path: str, field: str = '--input') -> list[tuple[str, str]]:
  """(file, name relative to `path`) of an image file or of every image under a folder.

  `field` names the flag or config field `path` came from, in errors.
  """
  if os.path.isfile(path):
    return [(path, os.path.basename(path))]
  if not os.path.isdir(path):
    raise InputError(f'{field}={path!r} is neither an image file nor a folder.')
  found = []
  for folder, _, files in sorted(os.walk(path)):
    for name in sorted(files):
      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.'):
        full = os.path.join(folder, name)
        found.append((full, os.path.relpath(full, path)))
  if not found:
    raise InputError(f'{field}={path!r} holds no {IMAGE_EXTENSIONS} files.')
  return found
