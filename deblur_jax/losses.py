"""Training losses: pure functions of NHWC float arrays.

A loss compares one output scale with the sharp image downsampled to that
scale; `build_loss_fn` sums it over every scale the model returns (MIMO-UNet
returns 1/4, 1/2 and full resolution; single-scale models return one).
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from deblur_jax import image_ops
from deblur_jax.errors import InputError


def l1(pred, target):
  """Mean absolute error over all pixels and channels."""
  return jnp.mean(jnp.abs(pred - target))


def mse(pred, target):
  """Mean squared error over all pixels and channels."""
  return jnp.mean(jnp.square(pred - target))


def fft_l1(pred, target):
  """L1 between the unnormalised 2-D FFTs of `pred` and `target`, per channel.

  As the official MIMO-UNet code (`torch.rfft(..., onesided=False)` then
  L1Loss): the mean over real and imaginary parts taken as separate numbers.
  Computed in float32 (the FFT needs it).
  """
  diff = (pred.astype(jnp.float32) - target.astype(jnp.float32))
  spectrum = jnp.fft.fft2(diff, axes=(1, 2))
  return 0.5 * (jnp.mean(jnp.abs(spectrum.real)) + jnp.mean(jnp.abs(spectrum.imag)))


def mimo_loss(pred, target, fft_weight: float = 0.1):
  """The official MIMO-UNet loss at one scale: L1 + fft_weight * FFT L1."""
  return l1(pred, target) + fft_weight * fft_l1(pred, target)


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


# name -> builder of the per-scale loss from `config.loss`.
LOSSES = {
    'mimo': lambda cfg: functools.partial(mimo_loss, fft_weight=cfg.fft_weight),
    'l1': lambda cfg: l1,
    'mse': lambda cfg: mse,
}


def build_loss_fn(loss_config) -> Callable:
  """Returns `loss_fn(predictions, sharp) -> scalar` for `config.loss`."""
  if loss_config.name not in LOSSES:
    raise InputError(f'Unknown loss {loss_config.name!r} in config.loss.name; choose one of '
                     f'{sorted(LOSSES)}.')
  return functools.partial(multiscale, LOSSES[loss_config.name](loss_config))
