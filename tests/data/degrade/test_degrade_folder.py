"""Synthetic degradations (blur, noise, JPEG) and the paired datasets written with them."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from deblur_jax.core.errors import InputError
from deblur_jax.data.degrade import degradations, degrade_folder, kernels
from helpers import smooth_image, write_png


def _image(height=24, width=32, seed=0):
  return smooth_image(np.random.default_rng(seed), height, width).astype(np.float32) / 255


def test_blur_with_a_delta_kernel_is_the_identity():
  image = _image()
  np.testing.assert_allclose(degradations.blur_image(image, kernels.defocus_kernel(0, 9)), image,
                             atol=1e-6)


def test_the_identity_family_degrades_by_noise_alone():
  image = _image()
  spec = degradations.SyntheticBlur(kernels=('identity',), noise_sigma=0.0)
  clean = degradations.degrade(image, np.random.default_rng(0), spec)
  assert clean.family == 'identity'
  np.testing.assert_array_equal(clean.image, image)
  noisy = degradations.degrade(image, np.random.default_rng(0),
                               degradations.SyntheticBlur(kernels=('identity',),
                                                          noise_sigma=(0.1, 0.2)))
  assert 0.1 <= noisy.noise_sigma <= 0.2
  assert 0.05 < np.std(noisy.image - image) < 0.2


def test_blur_is_a_convolution_with_mirrored_borders():
  rng = np.random.default_rng(0)
  image = rng.uniform(size=(9, 11, 2)).astype(np.float32)
  kernel = rng.uniform(size=(5, 3)).astype(np.float32)
  padded = np.pad(image, ((2, 2), (1, 1), (0, 0)), mode='symmetric')
  expected = np.zeros_like(image)
  for dy in range(5):
    for dx in range(3):  # convolution: the kernel is flipped
      expected += kernel[4 - dy, 2 - dx] * padded[dy:dy + 9, dx:dx + 11]
  np.testing.assert_allclose(degradations.blur_image(image, kernel), expected, atol=1e-5)


def test_degrade_is_deterministic_per_seed_and_index():
  image = _image()
  spec = degradations.SyntheticBlur(kernels=('motion', 'shake', 'defocus'), kernel_size=9,
                               noise_sigma=(0.0, 0.02), jpeg_quality=(60, 90))
  first = degradations.degrade(image, degradations.example_rng(7, 3), spec)
  again = degradations.degrade(image, degradations.example_rng(7, 3), spec)
  np.testing.assert_array_equal(first.image, again.image)
  np.testing.assert_array_equal(first.kernel, again.kernel)
  assert (first.family, first.noise_sigma, first.jpeg_quality) == (
      again.family, again.noise_sigma, again.jpeg_quality)
  others = [degradations.degrade_example(image, seed, index, spec)
            for seed, index in ((7, 4), (8, 3))]
  assert all(not np.array_equal(first.image, other) for other in others)
  assert first.image.dtype == np.float32 and first.image.shape == image.shape
  assert 0 <= first.image.min() and first.image.max() <= 1
  assert 60 <= first.jpeg_quality <= 90 and 0 <= first.noise_sigma <= 0.02


def test_noise_and_jpeg_leave_the_kernel_draw_unchanged():
  image = _image()
  plain = degradations.SyntheticBlur(kernels=('gauss7', 'shake', 'motion'), kernel_size=11)
  noisy = degradations.SyntheticBlur(kernels=plain.kernels, kernel_size=11, noise_sigma=0.05,
                                jpeg_quality=50)
  a = degradations.degrade(image, degradations.example_rng(0, 1), plain)
  b = degradations.degrade(image, degradations.example_rng(0, 1), noisy)
  np.testing.assert_array_equal(a.kernel, b.kernel)
  np.testing.assert_allclose(a.image, degradations.blur_image(image, a.kernel), atol=1e-6)
  assert (a.noise_sigma, a.jpeg_quality, b.noise_sigma, b.jpeg_quality) == (0, 0, 0.05, 50)
  assert 0.02 < np.std(b.image - a.image) < 0.08


def test_jpeg_round_trip_loses_more_at_lower_quality():
  image = np.repeat(_image(32, 32)[..., :1], 3, axis=-1)  # gray: no chroma subsampling loss
  errors = {}
  for quality in (30, 95):
    out = degradations.jpeg_compress(image, quality)
    assert out.shape == image.shape and out.dtype == np.float32
    errors[quality] = np.abs(out - image).mean()
  assert errors[30] > errors[95] > 0
  assert errors[95] < 2 / 255


@pytest.mark.parametrize('fields, message', [
    ({'kernels': ('gauss7', 'box')}, 'unknown families'),
    ({'kernel_size': 8}, 'must be odd'),
    ({'kernels': ('gauss11',), 'kernel_size': 9}, 'at least 11'),
    ({'noise_sigma': -0.1}, 'must not be negative'),
    ({'noise_sigma': (0.02, 0.01)}, 'low to high'),
    ({'jpeg_quality': 101}, '1-100'),
])
def test_bad_specs_are_input_errors(fields, message):
  with pytest.raises(InputError, match=message):
    degradations.SyntheticBlur(**fields)


@pytest.fixture
def sharp_dir(tmp_path):
  folder = tmp_path / 'sharp_photos'
  rng = np.random.default_rng(0)
  write_png(folder / 'a.png', smooth_image(rng, 24, 32))
  write_png(folder / 'sub' / 'b.png', smooth_image(rng, 20, 28))
  return folder


def test_synthesize_writes_pairs_kernels_and_a_manifest(sharp_dir, tmp_path):
  (sharp_dir / 'broken.png').write_bytes(b'not an image')
  spec = degradations.SyntheticBlur(kernels=('gauss7', 'shake'), kernel_size=9)
  out = tmp_path / 'synth' / 'test'
  summary = degrade_folder.synthesize(str(sharp_dir), str(out), spec, seed=3)

  assert [e['name'] for e in summary.written] == ['a.png', 'sub_b.png']
  assert summary.skipped[0][0].endswith('broken.png')
  for name, shape in (('a', (24, 32, 3)), ('sub_b', (20, 28, 3))):
    blur = np.asarray(Image.open(out / 'blur' / f'{name}.png'))
    sharp = np.asarray(Image.open(out / 'sharp' / f'{name}.png'))
    kernel = np.load(out / 'kernels' / f'{name}.npy')
    assert blur.shape == sharp.shape == shape and blur.dtype == np.uint8
    assert kernel.shape == (9, 9) and abs(kernel.sum() - 1) < 1e-5
    assert not np.array_equal(blur, sharp)
  manifest = json.loads((out / 'manifest.json').read_text())
  assert manifest['seed'] == 3 and manifest['spec']['kernels'] == ['gauss7', 'shake']
  entry = manifest['images'][1]
  assert entry['source'] == os.path.join('sub', 'b.png')
  assert entry['kernel'] in ('gauss7', 'shake') and entry['kernel_size'] == 9
  assert entry['key'] == degrade_folder.name_key('sub_b.png')
  assert manifest['skipped'][0]['path'].endswith('broken.png')

  # The manifest's seed and key reproduce the blur (before 8-bit rounding).
  sharp = np.asarray(Image.open(out / 'sharp' / 'sub_b.png'), np.float32) / 255
  redone = degradations.degrade(sharp, degradations.example_rng(3, entry['key']), spec).image
  blur = np.asarray(Image.open(out / 'blur' / 'sub_b.png'), np.float32) / 255
  assert np.abs(redone - blur).max() <= 0.5 / 255 + 1e-6


def test_an_images_blur_depends_on_the_seed_and_its_name_only(sharp_dir, tmp_path):
  spec = degradations.SyntheticBlur(kernels=('shake',), kernel_size=9, noise_sigma=0.01)
  degrade_folder.synthesize(str(sharp_dir), str(tmp_path / 'one'), spec, seed=0)
  os.remove(sharp_dir / 'sub' / 'b.png')
  degrade_folder.synthesize(str(sharp_dir), str(tmp_path / 'two'), spec, seed=0)
  degrade_folder.synthesize(str(sharp_dir), str(tmp_path / 'three'), spec, seed=1)
  blur = {d: (tmp_path / d / 'blur' / 'a.png').read_bytes() for d in ('one', 'two', 'three')}
  assert blur['one'] == blur['two'] != blur['three']


def test_bad_folders_are_input_errors(sharp_dir, tmp_path):
  spec = degradations.SyntheticBlur()
  (tmp_path / 'file.txt').write_text('x')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(InputError, match='is a file'):
    degrade_folder.synthesize(str(sharp_dir), str(tmp_path / 'file.txt'), spec)
  with pytest.raises(InputError, match='neither an image file nor a folder'):
    degrade_folder.synthesize(str(tmp_path / 'missing'), str(tmp_path / 'out'), spec)
  with pytest.raises(InputError, match='holds no'):
    degrade_folder.synthesize(str(tmp_path / 'empty'), str(tmp_path / 'out'), spec)
  with pytest.raises(InputError, match='inside --input'):
    degrade_folder.synthesize(str(sharp_dir), str(sharp_dir / 'out'), spec)
