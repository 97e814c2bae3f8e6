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
from PIL import Image, UnidentifiedImageError

from deblur_jax import files
from deblur_jax.errors import InputError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


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


def _read_16_bit_colour(path: str) -> np.ndarray:
  """A 16-bit RGB or RGBA PNG as uint16 (H, W, C), at full depth.

  Pillow un-filters such files in C but keeps 8 bits of each sample: with the
  big-endian unpacker ('RGB;16B', its default) the high bytes, with the
  little-endian one ('RGB;16L') on the same big-endian data the low bytes. Two
  decodes give both.
  """
  halves = []
  for order in ('B', 'L'):
    with Image.open(path) as image:
      rawmode = f'{image.mode};16{order}'  # 'RGB;16B' ... 'RGBA;16L'
      image.tile = [tile._replace(args=rawmode) for tile in image.tile]
      image.load()
      halves.append(np.asarray(image).astype(np.uint16))
  return (halves[0] << 8) | halves[1]


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
  with files.atomic_write(path) as f:
    if like.bit_depth == 16:
      f.write(encode_png_16(levels))
    else:
      Image.fromarray(levels[..., 0] if levels.shape[-1] == 1 else levels).save(f, format='PNG')


def list_images(path: str, field: str = '--input') -> list[tuple[str, str]]:
  """(file, name relative to `path`) of an image file or of every image under a folder.

  `field` names the flag or config field `path` came from, in errors.
  """
  if os.path.isfile(path):
    return [(path, os.path.basename(path))]
  if not os.path.isdir(path):
    raise InputError(f'{field}={path!r} is neither an image file nor a folder.')
  found = []
  for folder, _, names in sorted(os.walk(path)):
    for name in image_names(names):
      full = os.path.join(folder, name)
      found.append((full, os.path.relpath(full, path)))
  if not found:
    raise InputError(f'{field}={path!r} holds no {IMAGE_EXTENSIONS} files.')
  return found


def image_names(names) -> list[str]:
  """The image file names (by IMAGE_EXTENSIONS, any case; not hidden) among `names`, sorted."""
  return sorted(n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith('.'))


def images_in_folder(folder: str) -> dict[str, str]:
  """{file name: path} of the image files directly in `folder`, by name."""
  return {name: os.path.join(folder, name) for name in image_names(os.listdir(folder))}
