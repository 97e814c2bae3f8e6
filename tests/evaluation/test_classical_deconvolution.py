"""Wiener and Richardson-Lucy deconvolution with the known kernel."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data

from deblur_jax.data.degrade import degradations, degrade_folder, kernels
from deblur_jax.evaluation import classical_deconvolution
from helpers import REPO, smooth_image, write_png, xla_flags


def _psnr(a, b):
  return 10 * np.log10(1 / np.mean((a - b) ** 2))


@pytest.fixture(scope='module')
def photo():
  """scikit-image's astronaut, 64 x 64 by 8 x 8 block means, in [0, 1]."""
  return skimage.data.astronaut().astype(np.float32).reshape(64, 8, 64, 8, 3).mean((1, 3)) / 255


KERNELS = {
    'gauss7': kernels.random_kernel(np.random.default_rng(0), 'gauss7'),
    'shake': kernels.random_kernel(np.random.default_rng(0), 'shake', 15),
}


def _blur_8bit(image, kernel):
  return np.round(degradations.blur_image(image, kernel) * 255) / 255


@pytest.mark.parametrize('family, method, min_gain', [
    ('gauss7', 'wiener', 6.0), ('shake', 'wiener', 8.0),
    ('gauss7', 'richardson_lucy', 4.0), ('shake', 'richardson_lucy', 6.0),
])
def test_deconvolution_with_the_known_kernel_raises_psnr(photo, family, method, min_gain):
  blurred = _blur_8bit(photo, KERNELS[family])
  restored = classical_deconvolution.deconvolve(blurred, KERNELS[family], method, nsr=1e-3,
                                                 num_iter=30)
  assert restored.shape == photo.shape and restored.dtype == np.float32
  assert 0 <= restored.min() and restored.max() <= 1
  assert _psnr(restored, photo) > _psnr(blurred, photo) + min_gain


@pytest.mark.parametrize('method', classical_deconvolution.METHODS)
def test_a_delta_kernel_leaves_the_image_unchanged(photo, method):
  delta = kernels.defocus_kernel(0, 5)
  restored = classical_deconvolution.deconvolve(photo, delta, method, nsr=1e-6, num_iter=5)
  np.testing.assert_allclose(restored, photo, atol=1e-3)


def test_unknown_method_is_an_input_error(photo):
  with pytest.raises(ValueError, match="Unknown --method='tv'"):
    classical_deconvolution.deconvolve(photo, KERNELS['gauss7'], 'tv')


def test_command_line_scores_a_synthesized_folder(tmp_path):
  rng = np.random.default_rng(0)
  for name in ('a', 'b'):
    write_png(tmp_path / 'photos' / f'{name}.png', smooth_image(rng, 32, 40))
  data = tmp_path / 'synth'
  degrade_folder.synthesize(str(tmp_path / 'photos'), str(data),
                        degradations.SyntheticBlur(kernels=('gauss7',)), seed=0)
  csv_path = tmp_path / 'scores.csv'
  env = dict(os.environ, PYTHONPATH=str(REPO), XLA_FLAGS=xla_flags(1))
  done = subprocess.run([sys.executable, '-m', 'deblur_jax.baselines', f'--data={data}',
                         '--method=richardson_lucy', '--num_iter=10', f'--output={csv_path}'],
                        capture_output=True, text=True, env=env, timeout=120)
  assert done.returncode == 0, done.stderr
  assert 'richardson_lucy PSNR' in done.stdout
  with open(csv_path) as f:
    rows = list(csv.DictReader(f))
  assert [r['name'] for r in rows] == ['a.png', 'b.png', 'mean']
  assert rows[0]['kernel'] == 'gauss7'
  for row in rows:
    assert float(row['psnr']) > float(row['input_psnr'])
  done = subprocess.run([sys.executable, '-m', 'deblur_jax.baselines',
                         f'--data={tmp_path / "photos"}'],
                        capture_output=True, text=True, env=env, timeout=120)
  assert done.returncode == 2 and 'has no' in done.stderr.splitlines()[-1]
