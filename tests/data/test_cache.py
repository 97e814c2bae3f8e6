"""Decoded-pair caches: the same levels as decoding per crop, reuse and rebuilds, the
default location, bad input."""

import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import cache, pipeline, transforms
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data.sources import folders
from helpers import make_pair_tree, smooth_image, train_batches


def train_config(root, mode='none', cache_dir=''):
  """config.data of the tiny config reading `root` (cache_dir '': the default location)."""
  config = mimo.get_config('tiny').data
  config.dir = str(root)
  config.cache = mode
  config.cache_dir = str(cache_dir)
  return config


def batches(data_config, n, *, start_step=0, seed=0):
  return train_batches(data_config, n, start_step=start_step, seed=seed)[0]


def assert_same_batches(got, expected):
  assert len(got) == len(expected)
  for x, y in zip(got, expected):
    for key in ('blur', 'sharp'):
      np.testing.assert_array_equal(x[key], y[key])


def cache_files(cache_dir):
  return sorted(p.name for p in pathlib.Path(cache_dir).iterdir())


def data_file(cache_dir):
  (path,) = pathlib.Path(cache_dir).glob('*.u8')
  return path


@pytest.mark.parametrize('augment', ['hflip', 'flips_rot90'])
@pytest.mark.parametrize('mode', ['memory', 'file'])
def test_cached_crops_equal_decoded_crops_level_for_level(pair_tree, tmp_path, mode, augment):
  """Cut a batch at a time from the cache, flipped and turned in numpy; decoded per
  crop and turned in TensorFlow: the same uint8 levels."""
  uncached, cached = train_config(pair_tree), train_config(pair_tree, mode, tmp_path / 'cache')
  uncached.augment = cached.augment = augment
  expected = batches(uncached, 6)
  assert expected[0]['blur'].dtype == expected[0]['sharp'].dtype == np.uint8
  assert_same_batches(batches(cached, 6), expected)


def device_floats(levels):
  """The train step's conversion of wire levels, in numpy: TensorFlow's PNG decode."""
  if levels.dtype == np.uint8:
    levels = levels.astype(np.uint16) * np.uint16(257)
  return levels.astype(np.float32) * np.float32(1 / 65535)


def ulps(a, b):
  return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32))


def test_every_format_gives_the_same_levels_cached_and_tensorflows_floats_on_device(tmp_path):
  levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
  rgb = np.dstack([levels, levels[::-1], levels.T])
  deep = np.random.default_rng(0).integers(0, 65536, (16, 16, 3)).astype(np.uint16)
  files = {
      'rgb.png': Image.fromarray(rgb), 'gray.png': Image.fromarray(levels),
      'palette.png': Image.fromarray(rgb).convert('P'),
      'bits.png': Image.fromarray(levels > 100).convert('1'),
      'rgba.png': Image.fromarray(np.dstack([rgb, levels])),
      'gray16.png': Image.fromarray(deep[..., 0]), 'photo.jpg': Image.fromarray(rgb),
      'photo.bmp': Image.fromarray(rgb)}
  for name, image in files.items():
    image.save(tmp_path / name)
  (tmp_path / 'rgb16.png').write_bytes(tf.io.encode_png(deep).numpy())
  paths = sorted(str(p) for p in tmp_path.iterdir())
  # Every pair mixes two formats; 16 x 16 crops are whole (flipped or not) images.
  pairs = [pairs_lib.ImagePair(str(k), paths[k], paths[(k + 1) % len(paths)], 16, 16)
           for k in range(len(paths))]
  indices = transforms.global_example_indices(0, 4, range(4))

  def crops(decoded):
    examples = folders.pair_examples(pairs, crop_size=16, hflip=True, decoded=decoded)
    return list(pipeline.batched_examples(examples, 0, indices, 4, flips_rot90=True)
                .take(len(pairs)).as_numpy_iterator())

  uncached = crops(None)
  # One 16-bit PNG makes the whole set uint16: 8-bit levels x 257.
  assert uncached[0]['blur'].dtype == np.uint16
  assert_same_batches(crops(cache.load(pairs, 'memory', '', 'formats')), uncached)

  # The device's floats of the levels are TensorFlow's float decode of each file: bit
  # for bit for PNG, within 1 ulp for JPEG and BMP (TensorFlow divides their 8-bit
  # levels by 255, the device their 16-bit widening by 65535).
  sixteen_bit, dtype = pairs_lib.level_format(pairs)
  for k, path in enumerate(paths):
    levels = transforms.decode_levels(path, sixteen_bit[k, 0], dtype).numpy()
    got, expected = device_floats(levels), transforms.decode_image(path).numpy()
    if path.endswith('.png'):
      np.testing.assert_array_equal(got, expected)
    else:
      assert ulps(got, expected).max() == 1, path


def test_same_seed_same_batches_and_resume_continues(pair_tree, tmp_path):
  config = train_config(pair_tree, 'file', tmp_path / 'cache')
  first, again = batches(config, 5), batches(config, 5)
  assert_same_batches(again, first)
  assert_same_batches(batches(config, 2, start_step=3), first[3:])
  assert not np.array_equal(batches(config, 1, seed=1)[0]['sharp'], first[0]['sharp'])


def test_file_cache_is_reused_while_the_images_are_unchanged(pair_tree, tmp_path):
  config = train_config(pair_tree, 'file', tmp_path / 'cache')
  first = batches(config, 2)
  files = cache_files(tmp_path / 'cache')
  assert [f.split('.', 1)[1] for f in files] == ['json', 'lock', 'u8']
  stamps = {f: os.stat(tmp_path / 'cache' / f).st_mtime_ns for f in files}
  assert_same_batches(batches(config, 2), first)
  assert {f: os.stat(tmp_path / 'cache' / f).st_mtime_ns for f in files} == stamps


def test_file_cache_is_rebuilt_when_an_image_changes(pair_tree, tmp_path):
  config = train_config(pair_tree, 'file', tmp_path / 'cache')
  batches(config, 1)
  built = data_file(tmp_path / 'cache').stat().st_mtime_ns
  sharp = sorted((pair_tree / 'train').glob('*/sharp/*.png'))[0]
  Image.fromarray(smooth_image(np.random.default_rng(9), 48, 64)).save(sharp)
  os.utime(sharp, ns=(built + 10**9, built + 10**9))
  assert_same_batches(batches(config, 4), batches(train_config(pair_tree), 4))
  assert data_file(tmp_path / 'cache').stat().st_mtime_ns != built


def test_leftovers_of_a_crash_are_never_read(pair_tree, tmp_path):
  config = train_config(pair_tree, 'file', tmp_path / 'cache')
  expected = batches(config, 3)
  data = data_file(tmp_path / 'cache')
  # A crash between the two renames of a rebuild: another data file under the old index.
  data.write_bytes(bytes(data.stat().st_size))
  pathlib.Path(f'{data}.tmp').write_bytes(b'half written')  # and a temporary file
  assert_same_batches(batches(config, 3), expected)
  assert cache_files(tmp_path / 'cache') == sorted(p.name for p in (
      data, data.with_suffix('.json'), data.with_suffix('.lock')))


def test_mixed_image_sizes(tmp_path):
  root = make_pair_tree(tmp_path / 'data', splits=('train',), per_sequence=2, size=(40, 36))
  make_pair_tree(root, splits=('train',), num_sequences=1, per_sequence=2, size=(33, 70), seed=4)
  sizes = {(p.height, p.width) for p in pairs_lib.find_pairs(str(root), 'train').pairs}
  assert sizes == {(40, 36), (33, 70)}
  expected = batches(train_config(root), 4)
  assert_same_batches(batches(train_config(root, 'file', tmp_path / 'cache'), 4), expected)


def test_undecodable_pairs_are_skipped_as_without_a_cache(pair_tree, tmp_path):
  blur = sorted((pair_tree / 'train').glob('*/blur/*.png'))[2]
  data = bytearray(blur.read_bytes())
  data[len(data) // 2:len(data) // 2 + 16] = bytes(16)  # inside the pixels; header intact
  blur.write_bytes(bytes(data))
  expected = batches(train_config(pair_tree), 3)
  assert_same_batches(batches(train_config(pair_tree, 'memory'), 3), expected)
  assert_same_batches(batches(train_config(pair_tree, 'file', tmp_path / 'c'), 3), expected)


def test_cache_dir_that_is_a_file_is_an_error_naming_it(pair_tree, tmp_path):
  path = tmp_path / 'not_a_folder'
  path.write_text('')
  with pytest.raises(InputError, match=f'cache_dir=.*{path}.* is a file'):
    batches(train_config(pair_tree, 'file', path), 1)


def test_unwritable_cache_dir_is_an_error_naming_it(pair_tree, tmp_path):
  (tmp_path / 'file').write_text('')
  unwritable = [tmp_path / 'file' / 'cache']  # under a file
  if os.geteuid() != 0:  # root writes anywhere
    (tmp_path / 'locked').mkdir(mode=0o555)
    unwritable.append(tmp_path / 'locked' / 'cache')
  for path in unwritable:
    with pytest.raises(InputError, match=f'Cannot write .*{path}'):
      batches(train_config(pair_tree, 'file', path), 1)


def test_bad_cache_settings_are_errors(pair_tree):
  with pytest.raises(InputError, match=r"Unknown config.data.cache 'ram'"):
    batches(train_config(pair_tree, 'ram'), 1)
  config = train_config(pair_tree, 'memory')
  config.source = 'tfds'
  with pytest.raises(InputError, match="applies to source='folders'"):
    batches(config, 1)


def test_by_default_the_folders_source_reads_a_file_cache_in_the_users_cache_folder(
    pair_tree, tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  config = mimo.get_config().data
  config.dir, config.crop_size = str(pair_tree), 32
  assert config.cache == 'auto' and config.cache_dir == ''
  assert_same_batches(batches(config, 2), batches(train_config(pair_tree), 2))
  assert data_file(tmp_path / 'xdg' / 'deblur_jax').name.startswith('train-')
  monkeypatch.setenv('XDG_CACHE_HOME', 'relative/path')  # invalid: ~/.cache instead
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert cache.default_cache_dir() == str(tmp_path / 'home' / '.cache' / 'deblur_jax')


def test_a_cache_of_other_level_dtype_is_rebuilt(tmp_path):
  """A set that loses its only 16-bit PNG goes from uint16 levels to uint8: its cache too."""
  root = make_pair_tree(tmp_path / 'data', splits=('train',), num_sequences=1)
  deep = root / 'train' / 'GOPR0000_00_00' / 'sharp' / '000002.png'
  deep.write_bytes(tf.io.encode_png(np.asarray(Image.open(deep), np.uint16) * 257).numpy())
  config = train_config(root, 'file', tmp_path / 'cache')
  assert batches(config, 1)[0]['sharp'].dtype == np.uint16
  for folder in ('blur', 'sharp'):
    (deep.parent.parent / folder / deep.name).unlink()
  cached = batches(config, 2)
  assert cached[0]['sharp'].dtype == np.uint8
  assert_same_batches(cached, batches(train_config(root), 2))


def test_batch_memory_is_reused_only_once_its_array_is_gone():
  buffers = cache._Buffers()  # pylint: disable=protected-access
  first = buffers.take((2, 3), np.uint8)
  assert first.ctypes.data % 64 == 0  # where TensorFlow takes arrays without a copy
  second = buffers.take((2, 3), np.uint8)
  assert not np.shares_memory(first, second)
  address = first.ctypes.data
  del first
  assert buffers.take((2, 3), np.uint8).ctypes.data == address
  assert not np.shares_memory(buffers.take((2, 3), np.uint8), second)
