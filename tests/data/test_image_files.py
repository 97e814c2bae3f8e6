"""Image files read without TensorFlow: 16-bit colour PNGs at full depth, listing."""

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from deblur_jax.data import image_files

_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
          (1, 0, 2, 1))  # (first row, first column, row step, column step) of each pass


def interlaced_png_16(array):
  """A 16-bit Adam7-interlaced PNG of uint16 (H, W, C) (no encoder at hand writes one)."""
  height, width, channels = array.shape
  raw = b''
  for row0, col0, row_step, col_step in _ADAM7:
    sub = array[row0::row_step, col0::col_step]
    if sub.size:
      rows = np.ascontiguousarray(sub, '>u2').reshape(sub.shape[0], -1).view(np.uint8)
      raw += np.concatenate([np.zeros((len(rows), 1), np.uint8), rows], axis=1).tobytes()

  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

  colour_type = {3: 2, 4: 6}[channels]
  header = struct.pack('>IIBBBBB', width, height, 16, colour_type, 0, 0, 1)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw))
          + chunk(b'IEND', b''))


@pytest.mark.parametrize('channels', [3, 4])
@pytest.mark.parametrize('encoder', ['unfiltered', 'libpng_filters', 'interlaced'])
def test_16_bit_colour_pngs_are_read_at_full_depth(tmp_path, channels, encoder):
  rng = np.random.default_rng(channels)
  levels = rng.integers(0, 65536, (13, 21, channels), dtype=np.uint16)
  levels[:6] = np.cumsum(rng.integers(0, 900, (6, 21, channels)), axis=1)  # smooth: filtered
  data = {'unfiltered': image_files.encode_png_16,
          'libpng_filters': lambda a: tf.io.encode_png(a).numpy(),
          'interlaced': interlaced_png_16}[encoder](levels)
  path = tmp_path / 'deep.png'
  path.write_bytes(data)
  loaded = image_files.read_image(str(path))
  assert loaded.bit_depth == 16 and not loaded.gray
  np.testing.assert_array_equal(image_files.to_levels(loaded.rgb, 16), levels[..., :3])
  if channels == 4:
    np.testing.assert_array_equal(image_files.to_levels(loaded.alpha, 16), levels[..., 3])
  else:
    assert loaded.alpha is None
  # The values TensorFlow's decoder (which the training pipeline uses) gives.
  decoded = tf.io.decode_png(data, channels=channels, dtype=tf.uint16).numpy()
  np.testing.assert_array_equal(decoded, levels)


def test_image_names_keep_image_extensions_of_any_case_but_not_hidden_files(tmp_path):
  names = ['b.PNG', 'a.jpeg', '.hidden.png', 'notes.txt', 'c.bmp', 'd.JPG']
  assert image_files.image_names(names) == ['a.jpeg', 'b.PNG', 'c.bmp', 'd.JPG']
  for name in names:
    (tmp_path / name).write_bytes(b'')
  found = image_files.images_in_folder(str(tmp_path))
  assert found == {n: str(tmp_path / n) for n in ['a.jpeg', 'b.PNG', 'c.bmp', 'd.JPG']}
