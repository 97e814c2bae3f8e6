"""Training losses: pure functions of NHWC float arrays in [0, 1], and of discriminator logits.

Content losses compare one output scale with the sharp image downsampled to
that scale: `fn(pred, target) -> scalar`. `build_loss_fn` sums
`config.loss.name` (weight 1) and the losses weighted in
`config.loss.extra_weights` over every scale the model returns (MIMO-UNet
returns 1/4, 1/2 and full resolution; single-scale models return one).

Adversarial losses are pairs of functions of the discriminator's logits on real
(sharp) and fake (restored) images; see `get_adversarial_losses`.
"""

import functools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.evaluation import metrics
from deblur_jax.models import image_ops, vgg
from deblur_jax.weights import vgg19_pytorch as vgg_weights

# ----------------------------------------------------------------------------
# Content losses at one scale.


def l1(pred, target):
  """Mean absolute error over all pixels and channels."""
  return jnp.mean(jnp.abs(pred - target))


def mse(pred, target):
  """Mean squared error over all pixels and channels."""
  return jnp.mean(jnp.square(pred - target))


def charbonnier(pred, target, eps: float = 1e-3):
  """Mean of sqrt((pred - target)^2 + eps^2): a smooth L1 (as MPRNet); eps at equality."""
  return jnp.mean(jnp.sqrt(jnp.square(pred - target) + eps * eps))


def psnr_loss(pred, target, eps: float = 1e-8):
  """Minus the PSNR in dB (data range 1), averaged over images, as NAFNet's PSNRLoss.

  10 log10(MSE + eps) of each image: equal to -metrics.psnr where the MSE is
  well above eps, and bounded (-80 dB at equality) with a finite gradient.
  """
  err = jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)),
                 axis=(1, 2, 3))
  return jnp.mean(10.0 * jnp.log10(err + eps))


def ssim_loss(pred, target):
  """1 - SSIM (metrics.ssim: 11x11 Gaussian window), averaged over images.

  Scales smaller than 11x11 pixels are an error.
  """
  return 1.0 - jnp.mean(metrics.ssim(pred, target))


def sobel_gradients(x):
  """Sobel derivatives of each channel, divided by 8 so a ramp of slope s gives s.

  (N, H, W, C) -> gx, gy of shape (N, H-2, W-2, C): only positions where the
  3x3 window fits (no padding, so flat images have no border edges).
  """
  dx = x[:, :, 2:] - x[:, :, :-2]
  gx = (dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]) / 8
  dy = x[:, 2:] - x[:, :-2]
  gy = (dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]) / 8
  return gx, gy


def sobel_l1(pred, target):
  """Edge loss: mean |gx(pred) - gx(target)| + mean |gy(pred) - gy(target)|, per channel.

  Needs scales of at least 3x3 pixels.
  """
  (pgx, pgy), (tgx, tgy) = sobel_gradients(pred), sobel_gradients(target)
  return l1(pgx, tgx) + l1(pgy, tgy)


def fft_l1(pred, target):
  """L1 between the unnormalised 2-D FFTs of `pred` and `target`, per channel.

  As the official MIMO-UNet code (`torch.rfft(..., onesided=False)` then
  L1Loss): the mean over real and imaginary parts taken as separate numbers.
  Computed in float32 (the FFT needs it).
  """
  diff = (pred.astype(jnp.float32) - target.astype(jnp.float32))
  spectrum = jnp.fft.fft2(diff, axes=(1, 2))
  return 0.5 * (jnp.mean(jnp.abs(spectrum.real)) + jnp.mean(jnp.abs(spectrum.imag)))


def _amplitude(x):
  """|FFT2| of each channel in float32, with a zero (not NaN) gradient where it is 0."""
  spectrum = jnp.fft.fft2(x.astype(jnp.float32), axes=(1, 2))
  power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
  nonzero = power > 0
  # Flat image regions have exact zeros, where sqrt's derivative is infinite.
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, power, 1.0)), 0.0)


def fft_amplitude_l1(pred, target):
  """L1 between the amplitude spectra |FFT2| (unnormalised) of `pred` and `target`,
  averaged over frequencies and channels. Blind to phase, so to circular shifts."""
  return jnp.mean(jnp.abs(_amplitude(pred) - _amplitude(target)))


def mimo_loss(pred, target, fft_weight: float = 0.1):
  """The official MIMO-UNet loss at one scale: L1 + fft_weight * FFT L1."""
  return l1(pred, target) + fft_weight * fft_l1(pred, target)


# Feature distances of the perceptual loss.
DISTANCES = {'mse': mse, 'l1': l1}


def perceptual_loss(pred, target, features_fn: Callable, distance: Callable = mse):
  """`distance` between `features_fn` of pred and of target (e.g. VGG19 conv3_3).

  `features_fn` maps (N, H, W, 3) images in [0, 1] to features; no gradient
  flows into the target's features.
  """
  return distance(features_fn(pred), jax.lax.stop_gradient(features_fn(target)))


def vgg_features_fn(params, network: str = 'vgg19', layer: str = 'conv3_3') -> Callable:
  """images -> `vgg.VGGFeatures(network, layer)` features with fixed `params`."""
  model = vgg.VGGFeatures(network=network, layer=layer)
  return lambda images: model.apply({'params': params}, images)


# ----------------------------------------------------------------------------
# The config: `config.loss` -> loss_fn(predictions, sharp).


def _perceptual_from_config(cfg) -> Callable:
  network = cfg.get('perceptual_network', 'vgg19')
  lookup(vgg.BLOCKS, network, 'config.loss.perceptual_network')
  layer = cfg.get('perceptual_layer', 'conv3_3')
  if layer not in vgg.layer_names(network):
    raise InputError(f'{network} has no layer {layer!r} (config.loss.perceptual_layer); '
                     f'choose one of {vgg.layer_names(network)}.')
  distance = cfg.get('perceptual_distance', 'mse')
  lookup(DISTANCES, distance, 'config.loss.perceptual_distance')
  path = cfg.get('perceptual_weights', '')
  if not path:
    raise InputError(f'The perceptual loss needs ImageNet {network} weights: set '
                     'config.loss.perceptual_weights to a converted .npz file. To make one, '
                     f'{vgg_weights.how_to_convert(network)}.')
  params = vgg_weights.load_vgg_params(path, network, layer)
  return functools.partial(perceptual_loss, features_fn=vgg_features_fn(params, network, layer),
                           distance=DISTANCES[distance])


# name -> builder of the per-scale loss from `config.loss` (optional fields are
# read with defaults, so configs written before a loss existed still work).
LOSSES = {
    'mimo': lambda cfg: functools.partial(mimo_loss, fft_weight=cfg.get('fft_weight', 0.1)),
    'l1': lambda cfg: l1,
    'mse': lambda cfg: mse,
    'charbonnier': lambda cfg: functools.partial(charbonnier,
                                                 eps=cfg.get('charbonnier_eps', 1e-3)),
    'psnr': lambda cfg: psnr_loss,
    'ssim': lambda cfg: ssim_loss,
    'sobel': lambda cfg: sobel_l1,
    'fft': lambda cfg: fft_l1,
    'fft_amplitude': lambda cfg: fft_amplitude_l1,
    'perceptual': _perceptual_from_config,
}


def loss_weights(loss_config) -> dict[str, float]:
  """Loss name -> weight: `config.loss.name` at 1 plus the nonzero `extra_weights`."""
  lookup(LOSSES, loss_config.name, 'config.loss.name')
  extra = loss_config.get('extra_weights', None) or {}
  extra = dict(extra.items())
  unknown = sorted(set(extra) - set(LOSSES))
  if unknown:
    raise InputError(f'config.loss.extra_weights has loss weights that do not match any loss: '
                     f'{unknown}; the losses are {sorted(LOSSES)}.')
  weights = {loss_config.name: 1.0}
  for name, weight in sorted(extra.items()):
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
      raise InputError(f'config.loss.extra_weights.{name} is {weight!r}; give a number.')
    if weight:
      weights[name] = weights.get(name, 0.0) + float(weight)
  return weights


def weighted_sum(pred, target, terms: Sequence[tuple[float, Callable]]):
  """sum(weight * loss(pred, target)) over `terms`."""
  return sum(weight * loss(pred, target) for weight, loss in terms)


def build_scale_loss(loss_config) -> Callable:
  """The per-scale loss `fn(pred, target) -> scalar` of `config.loss`."""
  weights = loss_weights(loss_config)
  if len(weights) == 1:
    return LOSSES[loss_config.name](loss_config)
  return functools.partial(weighted_sum, terms=tuple(
      (weight, LOSSES[name](loss_config)) for name, weight in weights.items()))


def downsample_target(target, height: int, width: int):
  """The sharp image at an output's size, resized as the official training code does."""
  factor = target.shape[1] // height
  if factor * height != target.shape[1] or factor * width != target.shape[2]:
    raise ValueError(f'Output size {height}x{width} is not the target size '
                     f'{target.shape[1]}x{target.shape[2]} divided by 1, 2 or 4.')
  resizes = {1: lambda x: x,
             2: image_ops.bilinear_downsample_2x,
             4: image_ops.bilinear_downsample_4x}
  if factor not in resizes:
    raise ValueError(f'No target resize for an output {factor}x smaller than the input.')
  return resizes[factor](target)


def multiscale(loss: Callable, predictions: Sequence[jax.Array], target):
  """Sums `loss(prediction, target at its scale)` over the model's outputs."""
  return sum(loss(p, downsample_target(target, p.shape[1], p.shape[2])) for p in predictions)


def build_loss_fn(loss_config) -> Callable:
  """Returns `loss_fn(predictions, sharp) -> scalar` for `config.loss`.

  Reads any weights files (the perceptual loss's VGG) now, so a bad config
  fails before training starts.
  """
  return functools.partial(multiscale, build_scale_loss(loss_config))


# ----------------------------------------------------------------------------
# Adversarial losses on discriminator logits (any shape: one per image or per patch).


def _mean_f32(x):
  return jnp.mean(x.astype(jnp.float32))


def vanilla_discriminator_loss(real_logits, fake_logits):
  """Binary cross-entropy with real -> 1 and fake -> 0, the two terms averaged."""
  real = optax.sigmoid_binary_cross_entropy(real_logits.astype(jnp.float32), 1.0)
  fake = optax.sigmoid_binary_cross_entropy(fake_logits.astype(jnp.float32), 0.0)
  return 0.5 * (jnp.mean(real) + jnp.mean(fake))


def vanilla_generator_loss(real_logits, fake_logits):
  """The non-saturating generator loss: cross-entropy of fake -> 1."""
  del real_logits
  return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits.astype(jnp.float32), 1.0))


def lsgan_discriminator_loss(real_logits, fake_logits):
  """Least squares (Mao et al. 2017): (mean (real - 1)^2 + mean fake^2) / 2."""
  return 0.5 * (_mean_f32(jnp.square(real_logits - 1.0)) + _mean_f32(jnp.square(fake_logits)))


def lsgan_generator_loss(real_logits, fake_logits):
  """Least squares: mean (fake - 1)^2."""
  del real_logits
  return _mean_f32(jnp.square(fake_logits - 1.0))


def wgan_discriminator_loss(real_logits, fake_logits):
  """The Wasserstein critic loss mean(fake) - mean(real); WGAN-GP adds `gradient_penalty`."""
  return _mean_f32(fake_logits) - _mean_f32(real_logits)


def wgan_generator_loss(real_logits, fake_logits):
  """-mean(fake)."""
  del real_logits
  return -_mean_f32(fake_logits)


def ragan_ls_discriminator_loss(real_logits, fake_logits):
  """Relativistic average LSGAN (DeblurGAN-v2): real should beat the average fake by 1
  and fake lose to the average real by 1; the two squared errors averaged."""
  real = real_logits.astype(jnp.float32)
  fake = fake_logits.astype(jnp.float32)
  return 0.5 * (jnp.mean(jnp.square(real - jnp.mean(fake) - 1.0))
                + jnp.mean(jnp.square(fake - jnp.mean(real) + 1.0)))


def ragan_ls_generator_loss(real_logits, fake_logits):
  """The discriminator's relativistic targets swapped."""
  return ragan_ls_discriminator_loss(fake_logits, real_logits)


def gradient_penalty(critic_fn: Callable, real, fake, rng):
  """WGAN-GP's penalty (Gulrajani et al. 2017), unweighted: mean over images of (||grad|| - 1)^2.

  The caller multiplies it by lambda (10 in WGAN-GP and DeblurGAN; see
  config.gan.gradient_penalty_weight) and adds it to the critic loss. The
  gradient is that of sum(critic_fn(x)) (logits of any shape, e.g. one per
  patch) with respect to each image x, taken at a random point between the
  real and the fake image (one uniform mixing weight per image). real and fake
  are constants here; the penalty's gradient flows into the critic's
  parameters through `critic_fn`.
  """
  real = jax.lax.stop_gradient(real).astype(jnp.float32)
  fake = jax.lax.stop_gradient(fake).astype(jnp.float32)
  alpha = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1))
  mixed = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x).astype(jnp.float32)))(mixed)
  # The tiny constant keeps sqrt differentiable where a gradient is exactly zero.
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))


class AdversarialLoss(NamedTuple):
  """A GAN objective: both map (real_logits, fake_logits) to a scalar to minimise.

  'wgan_gp' also needs `gradient_penalty` (weighted) added to its
  discriminator loss.
  """
  discriminator: Callable
  generator: Callable


ADVERSARIAL = {
    'vanilla': AdversarialLoss(vanilla_discriminator_loss, vanilla_generator_loss),
    'lsgan': AdversarialLoss(lsgan_discriminator_loss, lsgan_generator_loss),
    'wgan_gp': AdversarialLoss(wgan_discriminator_loss, wgan_generator_loss),
    'ragan_ls': AdversarialLoss(ragan_ls_discriminator_loss, ragan_ls_generator_loss),
}


def get_adversarial_losses(name: str) -> AdversarialLoss:
  """(discriminator_loss, generator_loss) of the GAN objective named by `config.gan.loss`."""
  return lookup(ADVERSARIAL, name, 'config.gan.loss')
