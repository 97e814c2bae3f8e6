"""Decoded-pair caches: the same crops as decoding per crop, reuse and rebuilds, bad input."""

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
from deblur_jax.profiling import benchmarks
from helpers import make_pair_tree, smooth_image, train_batches


def train_config(root, mode='none', cache_dir=''):
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


@pytest.mark.parametrize('mode', ['memory', 'file'])
def test_cached_crops_equal_decoded_crops_bit_for_bit(pair_tree, tmp_path, mode):
  expected = batches(train_config(pair_tree), 4)
  assert_same_batches(batches(train_config(pair_tree, mode, tmp_path / 'cache'), 4), expected)


def test_cached_levels_give_the_decoders_floats_for_every_format(tmp_path):
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
  n = 2 * len(pairs)
  indices = transforms.global_example_indices(0, 4, range(4))

  def crops(decoded):
    examples = folders.pair_examples(pairs, crop_size=16, hflip=True, decoded=decoded)
    return list(pipeline.example_dataset(examples, 0, indices).take(n).as_numpy_iterator())

  assert_same_batches(crops(cache.load(pairs, 'memory', '', 'formats')), crops(None))


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
  with pytest.raises(InputError, match='needs config.data.cache_dir'):
    batches(train_config(pair_tree, 'file'), 1)
  config = train_config(pair_tree, 'memory')
  config.source = 'tfds'
  with pytest.raises(InputError, match="applies to source='folders'"):
    batches(config, 1)


def test_input_bench_reports_the_cache_and_crops_per_core(tiny_config, pair_tree, tmp_path):
  tiny_config.data.dir = str(pair_tree)
  tiny_config.data.cache = 'file'
  tiny_config.data.cache_dir = str(tmp_path / 'cache')
  record = benchmarks.run_benchmark(tiny_config, 'input', batch=4, height=32, width=32,
                                    dtype='float32', steps=3, warmup=1)
  assert record['cache'] == 'file' and record['train_images'] == 6
  assert record['cores'] == len(os.sched_getaffinity(0))
  assert record['items_per_s'] > 0
  assert record['crops_per_s_per_core'] == pytest.approx(record['items_per_s'] / record['cores'],
                                                         rel=1e-2)
