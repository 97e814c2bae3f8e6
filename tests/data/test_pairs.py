"""Finding GoPro-style pairs on disk, and every kind of bad input."""

import os

import numpy as np
import pytest
from PIL import Image

from deblur_jax.core.errors import InputError
from deblur_jax.data import pairs as pairs_lib
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


@pytest.fixture
def realblur_like(tmp_path):
  """RealBlur's layout (scene/{gt,blur}/{gt,blur}_N.png) and lists (sharp first)."""
  rng = np.random.default_rng(3)
  root = tmp_path / 'RealBlur_J'
  for scene in ('scene001', 'scene002'):
    for i in (1, 2):
      sharp = smooth_image(rng, 40, 48)
      write_png(root / scene / 'gt' / f'gt_{i}.png', sharp)
      write_png(root / scene / 'blur' / f'blur_{i}.png', sharp[::-1])
  return root


def test_a_pairs_file_lists_pairs_in_its_order_either_way_round(realblur_like, tmp_path):
  listed = tmp_path / 'train_list.txt'
  listed.write_text('# RealBlur-style: ground truth first\n'
                    'scene002/gt/gt_1.png scene002/blur/blur_1.png\n\n'
                    f'{realblur_like}/scene001/gt/gt_2.png   scene001/blur/blur_2.png  # absolute\n'
                    'scene001/gt/gt_9.png scene001/blur/blur_9.png\n')
  found = pairs_lib.read_pairs_file(str(realblur_like), str(listed), 'sharp_blur')
  assert [p.name for p in found.pairs] == ['scene002/blur/blur_1.png', 'scene001/blur/blur_2.png']
  assert found.pairs[0].sharp == os.path.join(realblur_like, 'scene002/gt/gt_1.png')
  assert (found.pairs[0].height, found.pairs[0].width) == (40, 48)
  assert len(found.skipped) == 1 and 'line 5 but missing' in found.skipped[0][1]
  # The same file read blurred-first swaps the roles: names follow the first column.
  swapped = pairs_lib.read_pairs_file(str(realblur_like), str(listed), 'blur_sharp')
  assert swapped.pairs[0].name == 'scene002/gt/gt_1.png'
  with pytest.raises(InputError, match='smaller than 64x64'):
    pairs_lib.read_pairs_file(str(realblur_like), str(listed), 'sharp_blur', min_size=64)


@pytest.mark.parametrize('text, message', [
    ('a.png\n', r'list\.txt, line 1: expected two paths'),
    ('a.png b.png c.png\n', r'line 1: expected two paths .* found 3 fields'),
    ('scene001/blur/blur_1.png scene001/gt/gt_1.png\n' * 2, 'line 2: .* is listed twice'),
    ('# nothing\n\n', 'it lists no pairs'),
])
def test_malformed_pairs_files_name_the_file_and_line(realblur_like, tmp_path, text, message):
  listed = tmp_path / 'list.txt'
  listed.write_text(text)
  with pytest.raises(InputError, match=message):
    pairs_lib.read_pairs_file(str(realblur_like), str(listed))


def test_the_pipeline_reads_pairs_files_for_training_and_evaluation(realblur_like, tmp_path):
  from deblur_jax.configs import mimo  # pylint: disable=g-import-not-at-top
  from deblur_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  (tmp_path / 'train.txt').write_text('scene001/blur/blur_1.png scene001/gt/gt_1.png\n'
                                      'scene001/blur/blur_2.png scene001/gt/gt_2.png\n')
  (tmp_path / 'test.txt').write_text('scene002/blur/blur_1.png scene002/gt/gt_1.png\n')
  config = mimo.get_config('tiny').data
  config.dir = str(realblur_like)  # has no train/ or test/ folder: the lists are used
  config.train_pairs_file = str(tmp_path / 'train.txt')
  config.eval_pairs_file = str(tmp_path / 'test.txt')
  dataset, num_images = pipeline.create_train_dataset(
      config, seed=0, global_batch=2, rows=range(2), start_step=0)
  batch = next(dataset.as_numpy_iterator())
  assert num_images == 2 and batch['blur'].shape == (2, 32, 32, 3)
  found, _ = pipeline.find_eval_pairs(config, str(tmp_path / 'work'), min_size=16)
  assert [p.name for p in found] == ['scene002/blur/blur_1.png']
  config.eval_pairs_file = str(tmp_path / 'missing.txt')
  with pytest.raises(InputError, match=r'config\.data\.eval_pairs_file=.*missing\.txt.* is not a '
                     'file'):
    pipeline.find_eval_pairs(config, str(tmp_path / 'work'), min_size=16)
  config.pairs_file_order = 'gt_first'
  with pytest.raises(InputError, match=r"pairs_file_order 'gt_first'"):
    pipeline.find_eval_pairs(config, str(tmp_path / 'work'), min_size=16)
