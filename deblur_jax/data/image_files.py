"""Reading and writing image files for inference, without TensorFlow.

`read_image` reads the files cameras, phones and editors write, with Pillow:
JPEG (CMYK and YCCK ones converted to RGB), PNG (8 or 16 bit; gray, palette,
RGB, with or without alpha), TIFF (8 or 16 bit), WebP and BMP. Pixels come
upright, turned by the file's EXIF orientation, as float32 RGB in [0, 1], with
what is needed to write a result back in kind: the format, the bit depth,
whether it was gray, its alpha channel, its ICC colour profile and its EXIF
data (less the orientation, the pixels being upright). `write_image` writes
PNG, JPEG, TIFF, WebP or BMP, rounded to the nearest level, with them.
"""

import dataclasses
import io
import os
import struct
import sys
import warnings
import zlib
from typing import Optional

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from deblur_jax.core import files
from deblur_jax.core.errors import InputError

# The files of datasets, which the training pipeline decodes with TensorFlow.
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
# The files deblurred photos are looked for in: also TIFF and WebP, and HEIC/HEIF,
# which Pillow cannot read, so that those are reported as skipped, not passed over.
PHOTO_EXTENSIONS = IMAGE_EXTENSIONS + ('.tif', '.tiff', '.webp', '.heic', '.heif')
WRITE_FORMATS = ('PNG', 'JPEG', 'TIFF', 'WEBP', 'BMP')  # As Pillow names them.
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_EXIF_HEADER = b'Exif\x00\x00'  # Before the TIFF-structured EXIF data, as Pillow keeps it.
_MAX_JPEG_EXIF = 65533  # Bytes: one APP1 marker.
# The rawmodes of 16-bit RGB(A) PNG and TIFF files, whose samples Pillow cuts to 8 bits.
_16_BIT_COLOUR_RAWMODES = tuple(f'{mode};16{order}' for mode in ('RGB', 'RGBA', 'RGBX')
                                for order in 'BLN')
_16_BIT_GRAY_ALPHA_RAWMODE = 'LA;16B'  # PNG's; Pillow has no 16-bit gray+alpha mode.


@dataclasses.dataclass
class LoadedImage:
  rgb: np.ndarray  # float32 (H, W, 3) in [0, 1], upright (as viewers show the file).
  bit_depth: int  # 8 or 16, of the file.
  gray: bool  # The file had one colour channel.
  alpha: Optional[np.ndarray] = None  # float32 (H, W) in [0, 1], or None.
  file_format: str = 'PNG'  # As Pillow names it: 'JPEG', 'PNG', 'TIFF', 'WEBP', 'BMP', ...
  icc_profile: Optional[bytes] = None  # The colour space of `rgb`; None: sRGB.
  exif: Optional[bytes] = None  # b'Exif\0\0' + the file's EXIF, without an orientation.


class UnreadableImageError(InputError):
  """A file that is not an image, is truncated, or is in a format Pillow cannot read."""

  def __init__(self, path: str, reason: str):
    super().__init__(f'Cannot read image {path}: {reason}')
    self.path, self.reason = path, reason


def _rawmode(image: Image.Image) -> Optional[str]:
  """How Pillow would unpack the samples of `image`'s first tile."""
  if not image.tile:
    return None
  args = image.tile[0][3]  # (decoder, box, offset, args), a named tuple since Pillow 11
  rawmode = args[0] if isinstance(args, tuple) and args else args
  return rawmode if isinstance(rawmode, str) else None


def _with_rawmode(tile, rawmode: str):
  """`tile` unpacked as `rawmode`."""
  args = (rawmode, *tile[3][1:]) if isinstance(tile[3], tuple) else rawmode
  return tile._replace(args=args) if hasattr(tile, '_replace') else (*tile[:3], args)


def _other_byte_order(rawmode: str) -> str:
  """'RGB;16B' <-> 'RGB;16L'; 'RGB;16N' (native, libtiff's) -> the non-native one."""
  order = rawmode[-1]
  if order == 'N':
    order = 'L' if sys.byteorder == 'little' else 'B'
  return rawmode[:-1] + ('B' if order == 'L' else 'L')


def _open_upright(path: str, rawmode: Optional[str] = None) -> Image.Image:
  """The file's image decoded (unpacked as `rawmode` if given) and turned by its
  EXIF orientation, which the copy no longer has."""
  with Image.open(path) as image:
    if rawmode is not None:
      image.tile = [_with_rawmode(tile, rawmode) for tile in image.tile]
    return ImageOps.exif_transpose(image)


def _cmyk_to_rgb(image: Image.Image, icc_profile):
  """(RGB image, its profile) of a CMYK one (CMYK and YCCK JPEGs): through the file's
  profile to sRGB where it has one, else Pillow's plain conversion (no profile)."""
  if icc_profile:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB'))
    try:
      rgb = ImageCms.profileToProfile(image, io.BytesIO(icc_profile), srgb, outputMode='RGB')
      return rgb, srgb.tobytes()
    except (ImageCms.PyCMSError, OSError, ValueError):
      pass  # Not a CMYK profile: as if there were none.
  return image.convert('RGB'), None


def _decode(path: str, rawmode: Optional[str]
            ) -> tuple[np.ndarray, int, Image.Image, Optional[bytes]]:
  """(upright levels, uint8 or uint16 (H, W, C) with C in 1-4; their bit depth; the
  upright image, for its metadata; the colour profile of the levels) of the file
  whose samples Pillow unpacks as `rawmode`."""
  if rawmode in _16_BIT_COLOUR_RAWMODES:
    # Pillow decompresses and un-filters these in C but keeps the high byte of each
    # sample; unpacked as if in the other byte order, the low bytes. Two decodes give both.
    upright = _open_upright(path, rawmode)
    low = np.asarray(_open_upright(path, _other_byte_order(rawmode)))
    levels = (np.asarray(upright).astype(np.uint16) << 8) | low
    return levels, 16, upright, upright.info.get('icc_profile')
  if rawmode == _16_BIT_GRAY_ALPHA_RAWMODE:
    upright = _open_upright(path, 'RGBA')  # The four bytes of a pixel, as they are.
    b = np.asarray(upright).astype(np.uint16)
    levels = np.stack([(b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]], axis=-1)
    return levels, 16, upright, upright.info.get('icc_profile')
  upright = image = _open_upright(path)
  icc_profile = image.info.get('icc_profile')
  if image.mode.startswith('I;16'):
    return np.asarray(image).astype(np.uint16)[..., None], 16, upright, icc_profile
  if image.mode == 'I':  # 32-bit integers (signed 16-bit TIFFs): clipped to 16 bits.
    levels = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)[..., None]
    return levels, 16, upright, icc_profile
  if image.mode == 'CMYK':
    image, icc_profile = _cmyk_to_rgb(image, icc_profile)
  elif image.mode == '1':
    image = image.convert('L')
  elif image.mode not in ('L', 'LA', 'RGB', 'RGBA'):  # Palette, YCbCr, LAB, ...
    image = image.convert('RGBA' if 'A' in image.mode or 'transparency' in image.info else 'RGB')
  levels = np.asarray(image)
  return (levels[..., None] if levels.ndim == 2 else levels), 8, upright, icc_profile


def _reason(path: str, error: Exception) -> str:
  """Why `path` could not be read, in one line."""
  if os.path.isfile(path) and os.path.getsize(path) == 0:
    return 'empty file'
  if isinstance(error, UnidentifiedImageError):
    if path.lower().endswith(('.heic', '.heif')):
      return 'HEIC/HEIF, a format Pillow cannot read: convert it to JPEG first'
    return 'not an image, or in a format Pillow cannot read'
  return 'cannot decode it: ' + (' '.join(str(error).split()) or type(error).__name__)


def read_image(path: str) -> LoadedImage:
  """Reads an image file, upright; one that cannot be read is an UnreadableImageError
  naming it."""
  try:
    with warnings.catch_warnings():  # Photos of 90-180 megapixels are no attack.
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      with Image.open(path) as image:
        file_format, rawmode = image.format, _rawmode(image)
      levels, bit_depth, upright, icc_profile = _decode(path, rawmode)
  except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error,
          Image.DecompressionBombError) as e:
    raise UnreadableImageError(path, _reason(path, e)) from None
  if file_format == 'MPO':  # Phones' JPEGs with a second picture (depth, ...).
    file_format = 'JPEG'
  exif = upright.info.get('exif') or None  # exif_transpose dropped its orientation.
  if exif is not None and not exif.startswith(_EXIF_HEADER):
    exif = _EXIF_HEADER + exif
  scale = 65535.0 if bit_depth == 16 else 255.0
  values = levels.astype(np.float32) / scale
  channels = values.shape[-1]
  alpha = values[..., -1] if channels in (2, 4) else None
  colour = values[..., :1] if channels <= 2 else values[..., :3]
  rgb = np.repeat(colour, 3, axis=-1) if colour.shape[-1] == 1 else colour
  return LoadedImage(np.ascontiguousarray(rgb), bit_depth, gray=channels <= 2, alpha=alpha,
                     file_format=file_format, icc_profile=icc_profile or None, exif=exif)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return (struct.pack('>I', len(data)) + kind + data
          + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png_16(array: np.ndarray, icc_profile: Optional[bytes] = None,
                  exif: Optional[bytes] = None) -> bytes:
  """A 16-bit PNG of uint16 (H, W, C), C in 1-4 (Pillow writes 16-bit gray only),
  with a colour profile and EXIF data (b'Exif\\0\\0' + TIFF data) if given."""
  height, width, channels = array.shape
  header = struct.pack('>IIBBBBB', width, height, 16, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
  rows = np.ascontiguousarray(array, '>u2').reshape(height, width * channels).view(np.uint8)
  raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter 0 per row
  chunks = [_png_chunk(b'IHDR', header)]
  if icc_profile:
    chunks.append(_png_chunk(b'iCCP', b'ICC profile\x00\x00' + zlib.compress(icc_profile)))
  if exif:
    chunks.append(_png_chunk(b'eXIf', exif.removeprefix(_EXIF_HEADER)))
  chunks += [_png_chunk(b'IDAT', zlib.compress(raw.tobytes(), 6)), _png_chunk(b'IEND', b'')]
  return _PNG_SIGNATURE + b''.join(chunks)


def encode_tiff_16(array: np.ndarray, icc_profile: Optional[bytes] = None) -> bytes:
  """A deflate-compressed 16-bit TIFF of uint16 (H, W, C), C in 1-4 (the last one
  alpha for 2 and 4), with a colour profile if given (Pillow writes 16-bit gray only)."""
  height, width, channels = array.shape
  strip = zlib.compress(np.ascontiguousarray(array, '<u2').tobytes(), 6)
  short, long, undefined = 3, 4, 7  # TIFF field types
  fields = [(256, long, [width]), (257, long, [height]), (258, short, [16] * channels),
            (259, short, [8]),  # Adobe deflate
            (262, short, [2 if channels >= 3 else 1]),  # RGB, or gray with 0 black
            (273, long, [8]),  # The one strip follows the header.
            (277, short, [channels]), (278, long, [height]), (279, long, [len(strip)]),
            (284, short, [1])]  # Samples interleaved.
  if channels in (2, 4):
    fields.append((338, short, [2]))  # Unassociated alpha.
  if icc_profile:
    fields.append((34675, undefined, icc_profile))
  data = bytearray(b'II*\x00\x00\x00\x00\x00' + strip + b'\x00' * (len(strip) % 2))
  entries = b''
  for tag, kind, values in fields:
    packed = (bytes(values) if kind == undefined
              else struct.pack(f'<{len(values)}{"H" if kind == short else "I"}', *values))
    if len(packed) > 4:  # Stored apart, at an even offset.
      offset = len(data)
      data += packed + b'\x00' * (len(packed) % 2)
      packed = struct.pack('<I', offset)
    entries += struct.pack('<HHI', tag, kind, len(values)) + packed.ljust(4, b'\x00')
  data[4:8] = struct.pack('<I', len(data))
  return bytes(data + struct.pack('<H', len(fields)) + entries + b'\x00' * 4)


def to_levels(values: np.ndarray, bit_depth: int) -> np.ndarray:
  """[0, 1] floats to the nearest of the 2**bit_depth levels."""
  top = 65535.0 if bit_depth == 16 else 255.0
  dtype = np.uint16 if bit_depth == 16 else np.uint8
  return np.floor(np.clip(values, 0.0, 1.0) * top + 0.5).astype(dtype)  # halves round up


def _save_options(file_format: str, like: LoadedImage, jpeg_quality: int) -> dict:
  """Pillow's options to write `file_format` losslessly (JPEG: at `jpeg_quality`)."""
  metadata = {'icc_profile': like.icc_profile} if like.icc_profile else {}
  if like.exif and file_format in ('PNG', 'WEBP', 'JPEG'):
    if file_format != 'JPEG' or len(like.exif) <= _MAX_JPEG_EXIF:
      metadata['exif'] = like.exif
  if file_format == 'JPEG':
    return dict(metadata, quality=jpeg_quality, subsampling=0)  # 4:4:4: full-size colour
  if file_format == 'TIFF':
    return dict(metadata, compression='tiff_adobe_deflate')
  if file_format == 'WEBP':
    return dict(metadata, lossless=True, exact=True)  # exact: colour under alpha 0 kept
  if file_format == 'BMP':
    return {}  # Pillow writes neither profile nor EXIF in BMP.
  return metadata


def write_image(path: str, rgb: np.ndarray, like: LoadedImage, file_format: str = 'PNG', *,
                jpeg_quality: int = 95) -> None:
  """Writes `rgb` (H, W, 3) in [0, 1] as `file_format` (one of WRITE_FORMATS) with the
  depth, colour, alpha, colour profile and EXIF of `like`; the file appears complete
  or not at all.

  PNG, TIFF (deflate), WebP (lossless) and BMP keep every level; PNG and TIFF keep 16
  bits, the others hold 8. JPEG is written at `jpeg_quality` (1-100) with
  full-resolution colour (4:4:4), and holds no alpha. BMP keeps no profile or EXIF.
  """
  if file_format not in WRITE_FORMATS:
    raise ValueError(f'Cannot write {file_format!r}; one of {WRITE_FORMATS}.')
  if file_format == 'JPEG' and like.alpha is not None:
    raise ValueError('JPEG holds no alpha channel; write PNG, TIFF or WebP.')
  bit_depth = like.bit_depth if file_format in ('PNG', 'TIFF') else 8
  channels = [rgb.mean(axis=-1, keepdims=True)] if like.gray else [rgb]
  if like.alpha is not None:
    channels.append(like.alpha[..., None])
  levels = to_levels(np.concatenate(channels, axis=-1), bit_depth)
  with files.atomic_write(path) as f:
    if bit_depth == 16 and file_format == 'PNG':
      f.write(encode_png_16(levels, like.icc_profile, like.exif))
    elif bit_depth == 16:
      f.write(encode_tiff_16(levels, like.icc_profile))
    else:
      image = Image.fromarray(levels[..., 0] if levels.shape[-1] == 1 else levels)
      if file_format == 'BMP' and image.mode == 'LA':
        image = image.convert('RGBA')
      image.save(f, format=file_format, **_save_options(file_format, like, jpeg_quality))


def list_images(path: str, field: str = '--input',
                extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[tuple[str, str]]:
  """(file, name relative to `path`) of an image file or of every image under a folder.

  `field` names the flag or config field `path` came from, in errors; `extensions`
  are the file names looked for in a folder (PHOTO_EXTENSIONS for photos).
  """
  if os.path.isfile(path):
    return [(path, os.path.basename(path))]
  if not os.path.isdir(path):
    raise InputError(f'{field}={path!r} is neither an image file nor a folder.')
  found = []
  for folder, _, names in sorted(os.walk(path)):
    for name in image_names(names, extensions):
      full = os.path.join(folder, name)
      found.append((full, os.path.relpath(full, path)))
  if not found:
    raise InputError(f'{field}={path!r} holds no {extensions} files.')
  return found


def image_names(names, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
  """The image file names (by `extensions`, any case; not hidden) among `names`, sorted."""
  return sorted(n for n in names if n.lower().endswith(extensions) and not n.startswith('.'))


def images_in_folder(folder: str) -> dict[str, str]:
  """{file name: path} of the image files directly in `folder`, by name."""
  return {name: os.path.join(folder, name) for name in image_names(os.listdir(folder))}
