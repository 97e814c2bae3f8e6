"""The resizes reproduce PyTorch's F.interpolate exactly (formulas written out in numpy)."""

import numpy as np
import pytest

from deblur_jax.models import image_ops


def torch_nearest(x, scale):
  """F.interpolate(mode='nearest', scale_factor=scale) on NHWC: src = floor(dst / scale)."""
  h, w = x.shape[1], x.shape[2]
  rows = np.floor(np.arange(int(h * scale)) / scale).astype(int)
  cols = np.floor(np.arange(int(w * scale)) / scale).astype(int)
  return x[:, rows][:, :, cols]


def torch_bilinear_axis(n_in, scale):
  """Interpolation matrix (n_out, n_in) of align_corners=False, no antialiasing."""
  n_out = int(n_in * scale)
  src = np.maximum((np.arange(n_out) + 0.5) / scale - 0.5, 0.0)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = src - lo
  m = np.zeros((n_out, n_in))
  m[np.arange(n_out), lo] += 1 - frac
  m[np.arange(n_out), hi] += frac
  return m


def torch_bilinear(x, scale):
  mh = torch_bilinear_axis(x.shape[1], scale)
  mw = torch_bilinear_axis(x.shape[2], scale)
  return np.einsum('ih,jw,nhwc->nijc', mh, mw, x)


@pytest.fixture
def image():
  return np.random.default_rng(0).uniform(size=(2, 12, 20, 3)).astype(np.float32)


def test_nearest_halving_keeps_even_pixels(image):
  out = np.asarray(image_ops.nearest_downsample_2x(image))
  np.testing.assert_array_equal(out, torch_nearest(image, 0.5))
  np.testing.assert_array_equal(out, image[:, ::2, ::2])


def test_nearest_doubling_copies_pixel_i_over_2(image):
  out = np.asarray(image_ops.nearest_upsample_2x(image))
  np.testing.assert_array_equal(out, torch_nearest(image, 2.0))
  assert out[0, 5, 7, 1] == image[0, 2, 3, 1]


def test_nearest_upsampling_by_4_copies_pixel_i_over_4(image):
  out = np.asarray(image_ops.nearest_upsample(image, 4))
  np.testing.assert_array_equal(out, torch_nearest(image, 4.0))
  np.testing.assert_array_equal(out, image_ops.nearest_upsample_2x(
      image_ops.nearest_upsample_2x(image)))


def test_bilinear_halving_is_torch_bilinear(image):
  np.testing.assert_allclose(image_ops.bilinear_downsample_2x(image),
                             torch_bilinear(image, 0.5), atol=1e-6)


def test_bilinear_quartering_averages_pixels_4i_plus_1_and_2(image):
  out = np.asarray(image_ops.bilinear_downsample_4x(image))
  np.testing.assert_allclose(out, torch_bilinear(image, 0.25), atol=1e-6)
  expected = image[:, 1:3, 5:7].mean(axis=(1, 2))
  np.testing.assert_allclose(out[:, 0, 1], expected, atol=1e-6)


def test_bilinear_needs_divisible_sizes():
  with pytest.raises(ValueError, match='divisible by 4'):
    image_ops.bilinear_downsample_4x(np.zeros((1, 10, 8, 3), np.float32))


@pytest.mark.parametrize('height,width', [(9, 13), (12, 16), (2, 3)])
def test_pad_to_multiple_then_crop_is_identity(height, width):
  x = np.random.default_rng(1).uniform(size=(1, height, width, 3)).astype(np.float32)
  padded, size = image_ops.pad_to_multiple(x, 4)
  assert padded.shape[1] % 4 == 0 and padded.shape[2] % 4 == 0
  assert padded.shape[1] - height < 4 and padded.shape[2] - width < 4
  np.testing.assert_array_equal(image_ops.crop_to(padded, size), x)


def test_pad_to_multiple_reflects():
  x = np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1)
  x = np.repeat(x, 4, axis=1)
  padded, _ = image_ops.pad_to_multiple(x, 4)
  np.testing.assert_array_equal(padded[0, 0, :, 0], [0, 1, 2, 3, 4, 3, 2, 1])
