"""Finding GoPro-style pairs on disk, and every kind of bad input."""

import os

import numpy as np
import pytest
from PIL import Image

from deblur_jax.data import pairs as pairs_lib
from deblur_jax.errors import InputError
from helpers import make_pair_tree, smooth_image, write_png


@pytest.mark.parametrize('layout', ['native', 'flat'])
def test_finds_pairs_in_both_layouts(tmp_path, layout):
  root = make_pair_tree(tmp_path, layout=layout, num_sequences=2, per_sequence=3)
  found = pairs_lib.find_pairs(str(root), 'train')
  assert len(found.pairs) == 6 and not found.skipped
  first = found.pairs[0]
  assert (first.height, first.width) == (48, 64)
  assert os.path.basename(first.blur) == os.path.basename(first.sharp)
  assert os.path.dirname(first.blur).endswith('blur')
  if layout == 'native':
    assert first.name == 'GOPR0000_00_00/000000.png' and first.group == 'GOPR0000_00_00'
  else:
    assert first.name == 'seq0_000000.png' and first.group == ''
  assert [p.name for p in found.pairs] == sorted(p.name for p in found.pairs)


def test_blur_gamma_and_max_pairs(tmp_path):
  root = make_pair_tree(tmp_path, blur_folder='blur_gamma')
  found = pairs_lib.find_pairs(str(root), 'test', blur_folder='blur_gamma', max_pairs=4)
  assert len(found.pairs) == 4
  assert 'blur_gamma' in found.pairs[0].blur


@pytest.mark.parametrize('make_root,message', [
    (lambda tmp: str(tmp / 'missing'), 'is not a directory'),
    (lambda tmp: str(tmp), "has no 'train' folder"),
    (lambda tmp: (tmp / 'train').mkdir() or str(tmp), "No 'blur' folder"),
    (lambda tmp: (tmp / 'train' / 'blur').mkdir(parents=True) or str(tmp), 'hold no'),
])
def test_missing_or_empty_directories_are_clear_errors(tmp_path, make_root, message):
  with pytest.raises(InputError, match=message):
    pairs_lib.find_pairs(make_root(tmp_path), 'train')


def test_empty_data_dir_field_is_an_error():
  with pytest.raises(InputError, match=r'config\.data\.dir is empty'):
    pairs_lib.find_pairs('', 'train')


def break_one(root, how):
  """Damages the blurred image of the first training pair; returns its path."""
  blur = root / 'train' / 'GOPR0000_00_00' / 'blur' / '000000.png'
  sharp = root / 'train' / 'GOPR0000_00_00' / 'sharp' / '000000.png'
  if how == 'missing_partner':
    sharp.unlink()
  elif how == 'zero_bytes':
    blur.write_bytes(b'')
  elif how == 'not_an_image':
    blur.write_bytes(b'this is not a png at all' * 10)
  elif how == 'truncated':
    data = blur.read_bytes()
    blur.write_bytes(data[:len(data) // 2])
  elif how == 'size_mismatch':
    write_png(blur, smooth_image(np.random.default_rng(0), 40, 64))
  elif how == 'too_small':
    for path in (blur, sharp):
      write_png(path, smooth_image(np.random.default_rng(0), 20, 20))
  return blur


@pytest.mark.parametrize('how,reason', [
    ('missing_partner', 'no sharp partner'),
    ('zero_bytes', 'empty file'),
    ('not_an_image', 'not a readable image'),
    ('truncated', 'truncated PNG'),
    ('size_mismatch', 'is 64x40 but its sharp partner'),
    ('too_small', 'smaller than 32x32'),
])
def test_one_bad_pair_is_skipped_counted_and_named(pair_tree, how, reason):
  bad = break_one(pair_tree, how)
  found = pairs_lib.find_pairs(str(pair_tree), 'train', min_size=32)
  assert len(found.pairs) == 5
  assert len(found.skipped) == 1
  path, why = found.skipped[0]
  assert reason in why
  assert os.path.basename(path) == bad.name


def test_no_usable_pair_at_all_is_an_error_naming_a_file(tmp_path):
  root = make_pair_tree(tmp_path, num_sequences=1, per_sequence=1)
  (root / 'train' / 'GOPR0000_00_00' / 'blur' / '000000.png').write_bytes(b'')
  with pytest.raises(InputError, match=r'No usable image pairs.*000000\.png: empty file'):
    pairs_lib.find_pairs(str(root), 'train')


def test_grayscale_rgba_and_16_bit_files_are_accepted(tmp_path):
  root = make_pair_tree(tmp_path, num_sequences=1, per_sequence=3)
  folder = root / 'train' / 'GOPR0000_00_00'
  rgb = np.asarray(Image.open(folder / 'blur' / '000000.png'))
  Image.fromarray(rgb[..., 0]).save(folder / 'blur' / '000000.png')  # L
  rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
  Image.fromarray(rgba).save(folder / 'blur' / '000001.png')  # RGBA
  Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / 'blur' / '000002.png')
  found = pairs_lib.find_pairs(str(root), 'train')
  assert len(found.pairs) == 3 and not found.skipped
  assert sum(found.colour_notes.values()) == 3
