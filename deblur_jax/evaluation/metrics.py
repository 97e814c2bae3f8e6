"""Image quality metrics, jittable, per image: NHWC float images in [0, 1] -> (N,).

The evaluation protocol of MIMO-UNet: clamp the restored image to [0, 1], keep
it in float (no uint8 rounding), no border crop, all three channels, data
range 1. Clamping is the caller's job; `protocols` builds the papers' other
protocols from these pieces.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def psnr(pred, target, max_value: float = 1.0):
  """Peak signal-to-noise ratio in dB of each image: 10 log10(MAX^2 / MSE)."""
  err = jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)),
                 axis=(1, 2, 3))
  return 10.0 * jnp.log10(max_value ** 2 / err)


SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5


def ssim_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> int:
  """Side of the SSIM window (11 for the defaults): the smallest image SSIM can score.

  scipy.ndimage's Gaussian radius, int(truncate * sigma + 0.5), on each side.
  """
  return 2 * int(truncate * sigma + 0.5) + 1


def gaussian_taps(sigma: float, truncate: float) -> np.ndarray:
  """scipy.ndimage's normalised Gaussian filter taps, float32 (for sigma 1.5: OpenCV's
  getGaussianKernel(11, 1.5), which BasicSR's SSIM uses)."""
  radius = ssim_window(sigma, truncate) // 2
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  taps = np.exp(-0.5 * (x / sigma) ** 2)
  return (taps / taps.sum()).astype(np.float32)


def filter_valid(x, taps):
  """Separable Gaussian filter of each channel of (N, H, W, C) `x`, keeping only fully
  covered pixels: (N, H - k + 1, W - k + 1, C) for k taps."""
  channels = x.shape[-1]
  k = taps.shape[0]
  dn = ('NHWC', 'HWIO', 'NHWC')
  column = jnp.broadcast_to(jnp.asarray(taps)[:, None, None, None], (k, 1, 1, channels))
  row = column.reshape(1, k, 1, channels)
  # Full float32 even where the default is TF32 (GPUs): the variances below cancel.
  conv = functools.partial(jax.lax.conv_general_dilated, window_strides=(1, 1),
                           padding='VALID', dimension_numbers=dn,
                           feature_group_count=channels, precision=jax.lax.Precision.HIGHEST)
  return conv(conv(x, column), row)


def ssim_map(pred, target, filter_fn: Callable, max_value=1.0, k1: float = 0.01,
             k2: float = 0.03):
  """The SSIM of each window position (Wang et al. 2004), population statistics.

  Args:
    pred, target: (N, H, W, C) images in [0, max_value].
    filter_fn: a normalised Gaussian filter of an (N, H, W, 5C) stack of C-channel
      images; it decides the window and which positions are kept.
    max_value: the data range: a number, or an array broadcasting against the map
      (one range per image).

  Returns:
    The SSIM at every position `filter_fn` keeps, (N, H', W', C).
  """
  x = pred.astype(jnp.float32)
  y = target.astype(jnp.float32)
  # Second moments of the images shifted to mid-grey: the same variances, but
  # E[x^2] - E[x]^2 cancels far less in float32.
  xs = x - 0.5 * max_value
  ys = y - 0.5 * max_value
  stats = filter_fn(jnp.concatenate([x, y, xs * xs, ys * ys, xs * ys], axis=-1))
  mu_x, mu_y, e_xx, e_yy, e_xy = jnp.split(stats, 5, axis=-1)
  mu_xs = mu_x - 0.5 * max_value
  mu_ys = mu_y - 0.5 * max_value
  var_x = e_xx - mu_xs * mu_xs
  var_y = e_yy - mu_ys * mu_ys
  cov = e_xy - mu_xs * mu_ys
  c1 = (k1 * max_value) ** 2
  c2 = (k2 * max_value) ** 2
  return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
          / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)))


def ssim(pred, target, max_value: float = 1.0, sigma: float = SSIM_SIGMA,
         truncate: float = SSIM_TRUNCATE, k1: float = 0.01, k2: float = 0.03):
  """Mean structural similarity of each image (Wang et al. 2004).

  Equal to scikit-image's `structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=-1)`:
  an 11x11 Gaussian window, population statistics, SSIM averaged over the
  channels and over the positions where the window fits inside the image.
  """
  taps = gaussian_taps(sigma, truncate)
  if min(pred.shape[1], pred.shape[2]) < taps.shape[0]:
    raise ValueError(f'SSIM needs images of at least {taps.shape[0]}x{taps.shape[0]} pixels, '
                     f'got {pred.shape[1]}x{pred.shape[2]}.')
  filter_fn = functools.partial(filter_valid, taps=taps)
  return jnp.mean(ssim_map(pred, target, filter_fn, max_value, k1, k2), axis=(1, 2, 3))
