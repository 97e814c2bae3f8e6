"""Losses on inputs with known answers."""

import ml_collections
import numpy as np
import pytest

from deblur_jax import losses


def rand(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def loss_config(name, fft_weight=0.1):
  return ml_collections.ConfigDict({'name': name, 'fft_weight': fft_weight})


@pytest.mark.parametrize('fn', [losses.l1, losses.mse, losses.fft_l1, losses.mimo_loss])
def test_zero_on_identical_images(fn):
  x = rand((2, 8, 8, 3))
  assert float(fn(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_l1_and_mse_of_a_constant_offset():
  x = rand((2, 8, 8, 3))
  assert float(losses.l1(x + 0.25, x)) == pytest.approx(0.25, rel=1e-5)
  assert float(losses.mse(x + 0.25, x)) == pytest.approx(0.0625, rel=1e-5)


def test_fft_l1_of_a_constant_offset_is_all_in_the_dc_term():
  """A constant difference c has FFT c*H*W at frequency 0 and 0 elsewhere; the mean
  over H*W real and H*W imaginary values is c / 2."""
  x = rand((1, 8, 16, 3))
  assert float(losses.fft_l1(x + 0.5, x)) == pytest.approx(0.25, rel=1e-5)


def test_fft_l1_of_a_cosine_pattern():
  """d = cos(2 pi k x / W) has two real FFT peaks of H*W/2, so the mean over
  2*H*W numbers is (2 * H*W/2) / (2*H*W) = 1/2."""
  height, width = 8, 16
  pattern = np.cos(2 * np.pi * 3 * np.arange(width) / width)
  diff = np.broadcast_to(pattern[None, None, :, None], (1, height, width, 1)).astype(np.float32)
  assert float(losses.fft_l1(diff, np.zeros_like(diff))) == pytest.approx(0.5, rel=1e-4)


def test_fft_l1_matches_a_direct_numpy_computation():
  a, b = rand((2, 8, 12, 3), 1), rand((2, 8, 12, 3), 2)
  fa, fb = np.fft.fft2(a, axes=(1, 2)), np.fft.fft2(b, axes=(1, 2))
  expected = np.mean(np.abs(np.stack([fa.real - fb.real, fa.imag - fb.imag])))
  assert float(losses.fft_l1(a, b)) == pytest.approx(expected, rel=1e-4)


def test_mimo_loss_sums_scales_against_bilinear_targets():
  sharp = rand((1, 16, 16, 3))
  target2 = sharp.reshape(1, 8, 2, 8, 2, 3).mean(axis=(2, 4))
  target4 = sharp.reshape(1, 4, 4, 4, 4, 3)[:, :, 1:3, :, 1:3].mean(axis=(2, 4))
  predictions = (target4 + 0.1, target2 - 0.2, sharp + 0.3)
  loss_fn = losses.build_loss_fn(loss_config('mimo', fft_weight=0.0))
  assert float(loss_fn(predictions, sharp)) == pytest.approx(0.6, rel=1e-5)
  perfect = (target4, target2, sharp)
  assert float(losses.build_loss_fn(loss_config('mimo'))(perfect, sharp)) < 1e-5


def test_fft_weight_scales_the_frequency_term():
  sharp = rand((1, 8, 8, 3))
  predictions = (sharp + 0.5,)
  with_fft = losses.build_loss_fn(loss_config('mimo', 0.1))(predictions, sharp)
  assert float(with_fft) == pytest.approx(0.5 + 0.1 * 0.25, rel=1e-5)


@pytest.mark.parametrize('name,expected', [('l1', 0.5), ('mse', 0.25)])
def test_plain_losses_selectable_by_name(name, expected):
  sharp = rand((1, 8, 8, 3))
  assert float(losses.build_loss_fn(loss_config(name))((sharp + 0.5,), sharp)) == pytest.approx(
      expected, rel=1e-5)


def test_unknown_loss_name_is_an_error_naming_the_field():
  with pytest.raises(ValueError, match=r"config\.loss\.name.*'l1', 'mimo', 'mse'"):
    losses.build_loss_fn(loss_config('perceptual'))


def test_output_sizes_must_be_the_target_over_1_2_or_4():
  with pytest.raises(ValueError, match='divided by 1, 2 or 4'):
    losses.downsample_target(rand((1, 16, 16, 3)), 5, 5)
