"""Losses on inputs with known answers."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import metrics
from deblur_jax.training import losses


def rand(shape, seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def loss_config(name, fft_weight=0.1, **fields):
  return ml_collections.ConfigDict({'name': name, 'fft_weight': fft_weight, **fields})


def constant_feature_fn(images):
  """A stand-in for VGG features: a fixed 1x1 conv and a ReLU."""
  mixing = jnp.asarray([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.25]])
  return jax.nn.relu(images @ mixing)


# Every content loss at one scale, with its value on identical images.
CONTENT_LOSSES = {
    'l1': (losses.l1, 0.0),
    'mse': (losses.mse, 0.0),
    'charbonnier': (losses.charbonnier, 1e-3),  # eps at equality
    'psnr': (losses.psnr_loss, -80.0),  # 10 log10(1e-8): its minimum
    'ssim': (losses.ssim_loss, 0.0),
    'sobel': (losses.sobel_l1, 0.0),
    'fft': (losses.fft_l1, 0.0),
    'fft_amplitude': (losses.fft_amplitude_l1, 0.0),
    'mimo': (losses.mimo_loss, 0.0),
    'perceptual': (functools.partial(losses.perceptual_loss, features_fn=constant_feature_fn),
                   0.0),
}


@pytest.mark.parametrize('name', sorted(CONTENT_LOSSES))
def test_value_on_identical_images_and_finite_gradients(name):
  """Flat crops (a saturated sky) give exact zeros in spectra and gradients,
  where a loss may not turn its gradient into NaN."""
  fn, expected = CONTENT_LOSSES[name]
  x = rand((1, 16, 16, 3))
  assert float(jax.jit(fn)(x, x)) == pytest.approx(expected, abs=1e-5)
  grad_fn = jax.jit(jax.grad(fn))
  grad = grad_fn(rand((1, 16, 16, 3), 2), x)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  flat = np.full((1, 16, 16, 3), 0.5, np.float32)
  assert np.all(np.isfinite(grad_fn(flat, flat)))


def test_l1_mse_and_charbonnier_of_a_constant_offset():
  x = rand((2, 8, 8, 3))
  assert float(losses.l1(x + 0.25, x)) == pytest.approx(0.25, rel=1e-5)
  assert float(losses.mse(x + 0.25, x)) == pytest.approx(0.0625, rel=1e-5)
  assert float(losses.mse(x - 0.1, x)) == pytest.approx(0.01, rel=1e-4)
  assert float(losses.charbonnier(x + 0.1, x)) == pytest.approx(np.sqrt(0.01 + 1e-6), rel=1e-4)
  assert float(losses.charbonnier(x + 0.1, x, eps=0.1)) == pytest.approx(np.sqrt(0.02), rel=1e-4)


def test_psnr_loss_is_minus_the_mean_psnr():
  target = rand((3, 8, 8, 3), 1)
  pred = np.clip(target + rand((3, 8, 8, 3), 2) * 0.2 - 0.1, 0, 1)
  expected = -float(np.mean(metrics.psnr(pred, target)))
  assert float(losses.psnr_loss(pred, target)) == pytest.approx(expected, rel=1e-5)
  assert float(losses.psnr_loss(target + 0.1, target)) == pytest.approx(-20.0, rel=1e-4)


def test_ssim_loss_is_one_minus_the_mean_ssim():
  target = rand((2, 16, 16, 3), 1)
  pred = rand((2, 16, 16, 3), 2)
  expected = 1 - float(np.mean(metrics.ssim(pred, target)))
  assert float(losses.ssim_loss(pred, target)) == pytest.approx(expected, rel=1e-5)
  assert float(losses.ssim_loss(pred, target)) > 0.5


def test_sobel_of_a_ramp_is_its_slope():
  ramp = np.broadcast_to(0.05 * np.arange(10, dtype=np.float32)[None, None, :, None],
                         (1, 6, 10, 2))
  gx, gy = losses.sobel_gradients(ramp)
  assert gx.shape == gy.shape == (1, 4, 8, 2)
  np.testing.assert_allclose(gx, 0.05, rtol=1e-5)
  np.testing.assert_allclose(gy, 0.0, atol=1e-7)


def test_sobel_loss_ignores_brightness_and_sees_edges():
  flat = np.full((1, 8, 10, 3), 0.2, np.float32)
  assert float(losses.sobel_l1(flat + 0.5, flat)) == 0.0  # no border edges either
  edge = flat.copy()
  edge[:, :, 5:] = 1.2
  # A step of 1 gives gx = 1/2 on the two valid columns beside it out of W - 2 = 8.
  assert float(losses.sobel_l1(edge, flat)) == pytest.approx(2 * 0.5 / 8, rel=1e-5)
  assert float(losses.sobel_l1(edge.transpose(0, 2, 1, 3), flat.transpose(0, 2, 1, 3))) == \
      pytest.approx(2 * 0.5 / 8, rel=1e-5)


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


def test_fft_amplitude_of_a_constant_offset_is_the_offset():
  """Images >= 0 have a real positive DC term; adding c raises only it, by c*H*W,
  and the mean over H*W frequencies is c."""
  x = rand((1, 8, 16, 3))
  assert float(losses.fft_amplitude_l1(x + 0.5, x)) == pytest.approx(0.5, rel=1e-4)


def test_fft_amplitude_is_blind_to_circular_shifts_and_not_to_patterns():
  x = rand((1, 8, 8, 3))
  shifted = np.roll(x, (3, 5), axis=(1, 2))
  assert float(losses.fft_amplitude_l1(shifted, x)) == pytest.approx(0.0, abs=1e-4)
  assert float(losses.fft_l1(shifted, x)) > 1.0
  assert float(losses.fft_amplitude_l1(rand((1, 8, 8, 3), 1), x)) > 1.0


def test_perceptual_loss_compares_features_with_the_distance():
  x = rand((1, 4, 4, 3))
  y = x + 0.1
  fx, fy = constant_feature_fn(x), constant_feature_fn(y)
  assert float(losses.perceptual_loss(y, x, constant_feature_fn)) == pytest.approx(
      float(jnp.mean((fy - fx) ** 2)), rel=1e-5)
  assert float(losses.perceptual_loss(y, x, constant_feature_fn, losses.l1)) == pytest.approx(
      float(jnp.mean(jnp.abs(fy - fx))), rel=1e-5)


# ----------------------------------------------------------------------------
# The config.


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


@pytest.mark.parametrize('name,expected', [
    ('l1', 0.5), ('mse', 0.25), ('charbonnier', np.sqrt(0.25 + 1e-6)), ('fft', 0.25),
    ('fft_amplitude', 0.5), ('psnr', 10 * np.log10(0.25)), ('sobel', 0.0)])
def test_losses_selectable_by_name(name, expected):
  sharp = rand((1, 8, 8, 3))
  assert float(losses.build_loss_fn(loss_config(name))((sharp + 0.5,), sharp)) == pytest.approx(
      expected, rel=1e-5, abs=1e-6)


def test_old_configs_without_the_new_fields_still_work():
  sharp = rand((1, 8, 8, 3))
  loss_fn = losses.build_loss_fn(ml_collections.ConfigDict({'name': 'mimo'}))
  assert float(loss_fn((sharp + 0.5,), sharp)) == pytest.approx(0.5 + 0.1 * 0.25, rel=1e-5)


def test_charbonnier_eps_comes_from_the_config():
  sharp = rand((1, 8, 8, 3))
  loss_fn = losses.build_loss_fn(loss_config('charbonnier', charbonnier_eps=0.5))
  assert float(loss_fn((sharp + 0.5,), sharp)) == pytest.approx(np.sqrt(0.5), rel=1e-5)


def test_extra_weights_add_weighted_losses_at_every_scale():
  sharp = rand((1, 16, 16, 3))
  predictions = (rand((1, 8, 8, 3), 1), rand((1, 16, 16, 3), 2))
  config = loss_config('l1', extra_weights=ml_collections.ConfigDict(
      {'mse': 0.5, 'sobel': 2.0, 'fft_amplitude': 0.01, 'ssim': 0.0}))
  expected = sum(
      losses.l1(p, t) + 0.5 * losses.mse(p, t) + 2.0 * losses.sobel_l1(p, t)
      + 0.01 * losses.fft_amplitude_l1(p, t)
      for p, t in zip(predictions, (losses.downsample_target(sharp, 8, 8), sharp)))
  loss_fn = losses.build_loss_fn(config)
  assert float(loss_fn(predictions, sharp)) == pytest.approx(float(expected), rel=1e-5)
  # The zero-weighted SSIM is left out: it would fail on the 8x8 scale.
  assert losses.loss_weights(config) == {'l1': 1.0, 'fft_amplitude': 0.01, 'mse': 0.5,
                                         'sobel': 2.0}


def test_unknown_loss_name_is_an_error_naming_the_field():
  with pytest.raises(InputError, match=r"config\.loss\.name.*'charbonnier', 'fft'"):
    losses.build_loss_fn(loss_config('perceptuel'))


def test_unknown_extra_weight_is_an_error_naming_it():
  config = loss_config('mimo', extra_weights={'sobell': 0.1, 'mse': 1.0})
  with pytest.raises(InputError, match=r"extra_weights has loss weights that do not match any "
                                       r"loss: \['sobell'\]"):
    losses.build_loss_fn(config)


def test_perceptual_without_weights_says_how_to_get_them():
  config = loss_config('l1', extra_weights={'perceptual': 0.01}, perceptual_network='vgg16')
  with pytest.raises(InputError, match=r'perceptual_weights.*vgg16-397923af\.pth.*'
                                       r'python -m deblur_jax\.convert_vgg'):
    losses.build_loss_fn(config)
  # A zero weight needs no weights file.
  losses.build_loss_fn(loss_config('l1', extra_weights={'perceptual': 0.0}))


@pytest.mark.parametrize('field,value,allowed', [
    ('perceptual_layer', 'conv3_4', "'conv3_3', 'relu3_3', 'pool3'"),
    ('perceptual_network', 'vgg11', "'vgg16', 'vgg19'"),
    ('perceptual_distance', 'l2', "'l1', 'mse'"),
])
def test_bad_perceptual_options_name_the_field_and_the_choices(field, value, allowed):
  config = loss_config('perceptual', perceptual_network='vgg16', perceptual_weights='x.npz')
  config[field] = value
  with pytest.raises(InputError, match=rf'config\.loss\.{field}') as error:
    losses.build_loss_fn(config)
  assert repr(value) in str(error.value) and allowed in str(error.value)


def test_output_sizes_must_be_the_target_over_1_2_or_4():
  with pytest.raises(ValueError, match='divided by 1, 2 or 4'):
    losses.downsample_target(rand((1, 16, 16, 3)), 5, 5)


# ----------------------------------------------------------------------------
# Adversarial losses.


@pytest.mark.parametrize('name,discriminator,generator', [
    ('vanilla', np.log(2), np.log(2)),
    ('lsgan', 0.5, 1.0),
    ('wgan_gp', 0.0, 0.0),
    ('ragan_ls', 1.0, 1.0),
])
def test_adversarial_losses_at_zero_logits(name, discriminator, generator):
  discriminator_loss, generator_loss = losses.get_adversarial_losses(name)
  zeros = jnp.zeros((2, 4, 4, 1))
  assert float(discriminator_loss(zeros, zeros)) == pytest.approx(discriminator, abs=1e-6)
  assert float(generator_loss(zeros, zeros)) == pytest.approx(generator, abs=1e-6)


@pytest.mark.parametrize('name', sorted(losses.ADVERSARIAL))
def test_each_player_gains_when_its_logits_move_its_way(name):
  adversarial = losses.get_adversarial_losses(name)
  zeros, halves = jnp.zeros((2, 1)), jnp.full((2, 1), 0.5)
  assert adversarial.discriminator(halves, zeros) < adversarial.discriminator(zeros, zeros)
  assert adversarial.generator(zeros, halves) < adversarial.generator(zeros, zeros)


def test_vanilla_loss_is_stable_for_large_logits():
  adversarial = losses.get_adversarial_losses('vanilla')
  big = jnp.full((2,), 1e4)
  assert float(adversarial.discriminator(big, -big)) == pytest.approx(0.0, abs=1e-6)
  assert float(adversarial.generator(big, -big)) == pytest.approx(1e4, rel=1e-6)
  assert np.isfinite(jax.grad(adversarial.generator, argnums=1)(big, -big)).all()


def test_relativistic_generator_loss_uses_the_real_logits():
  adversarial = losses.get_adversarial_losses('ragan_ls')
  fake = jnp.zeros((2,))
  assert adversarial.generator(jnp.zeros((2,)), fake) != adversarial.generator(
      jnp.ones((2,)), fake)


@pytest.mark.parametrize('norm', [3.0, 1.0])
def test_gradient_penalty_of_a_linear_critic(norm):
  """critic(x) = <w, x> has gradient w everywhere: lambda * penalty = 10 (|w| - 1)^2."""
  w = rand((4, 4, 3), 1)
  w = jnp.asarray(w * norm / np.linalg.norm(w))
  critic = lambda images: jnp.einsum('nhwc,hwc->n', images, w)
  penalty = 10 * losses.gradient_penalty(critic, rand((2, 4, 4, 3), 2), rand((2, 4, 4, 3), 3),
                                         jax.random.key(0))
  assert float(penalty) == pytest.approx(10 * (norm - 1) ** 2, rel=1e-4, abs=1e-6)


def test_gradient_penalty_trains_the_critic_through_its_parameters():
  def penalty(scale):
    critic = lambda images: scale * jnp.sum(images, axis=(1, 2, 3))
    return losses.gradient_penalty(critic, jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1)),
                                   jax.random.key(0))
  # |grad| = 2 * scale (four pixels): d/dscale (2 scale - 1)^2 = 4 (2 scale - 1).
  assert float(jax.grad(penalty)(1.0)) == pytest.approx(4.0, rel=1e-5)


def test_unknown_adversarial_loss_is_an_error_naming_the_field():
  with pytest.raises(InputError, match=r"config\.gan\.loss.*'lsgan', 'ragan_ls', 'vanilla'"):
    losses.get_adversarial_losses('hinge')
