"""PSNR and SSIM against scikit-image."""

import jax
import numpy as np
import pytest
import skimage.data
from skimage import metrics as skm

from deblur_jax.evaluation import metrics


def photo_pair(kind, seed=0):
  rng = np.random.default_rng(seed)
  sharp = skimage.data.astronaut()[100:164, 200:290].astype(np.float64) / 255
  if kind == 'noise':
    other = np.clip(sharp + rng.normal(0, 0.05, sharp.shape), 0, 1)
  elif kind == 'contrast':
    other = np.clip(0.6 * sharp + 0.3, 0, 1)
  else:  # 'blur'
    other = sharp.copy()
    other[1:-1, 1:-1] = (sharp[:-2, 1:-1] + sharp[2:, 1:-1]
                         + sharp[1:-1, :-2] + sharp[1:-1, 2:]) / 4
  return sharp, other


@pytest.mark.parametrize('kind', ['noise', 'contrast', 'blur'])
def test_ssim_equals_scikit_image_gaussian_ssim(kind):
  sharp, other = photo_pair(kind)
  expected = skm.structural_similarity(sharp, other, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1,
                                       channel_axis=-1)
  got = metrics.ssim(other[None].astype(np.float32), sharp[None].astype(np.float32))
  assert got.shape == (1,)
  assert abs(float(got[0]) - expected) < 1e-4


@pytest.mark.parametrize('kind', ['noise', 'contrast', 'blur'])
def test_psnr_equals_scikit_image(kind):
  sharp, other = photo_pair(kind)
  expected = skm.peak_signal_noise_ratio(sharp, other, data_range=1)
  got = metrics.psnr(other[None].astype(np.float32), sharp[None].astype(np.float32))
  assert float(got[0]) == pytest.approx(expected, abs=1e-3)


def test_metrics_are_per_image_and_jittable():
  pairs = [photo_pair(k) for k in ('noise', 'contrast')]
  a = np.stack([p[1] for p in pairs]).astype(np.float32)
  b = np.stack([p[0] for p in pairs]).astype(np.float32)
  psnr, ssim = jax.jit(lambda a, b: (metrics.psnr(a, b), metrics.ssim(a, b)))(a, b)
  assert psnr.shape == ssim.shape == (2,)
  assert float(ssim[0]) == pytest.approx(float(metrics.ssim(a[:1], b[:1])[0]), abs=1e-6)
  assert float(psnr[1]) < float(psnr[0])  # the contrast change costs more than the noise


def test_identical_images_score_ssim_one():
  sharp, _ = photo_pair('noise')
  x = sharp[None].astype(np.float32)
  assert float(metrics.ssim(x, x)[0]) == pytest.approx(1.0, abs=1e-6)


def test_ssim_rejects_images_smaller_than_its_window():
  x = np.zeros((1, 10, 40, 3), np.float32)
  with pytest.raises(ValueError, match='at least 11x11'):
    metrics.ssim(x, x)
