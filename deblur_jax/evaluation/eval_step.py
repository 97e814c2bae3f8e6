"""The pure eval step: deblur whole images of any size and score them, jitted over a mesh."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from deblur_jax.evaluation import metrics
from deblur_jax.models import image_ops
from deblur_jax.parallel import sharding

# What `eval_step` scores for each image: the deblurred output against the sharp
# image, and the blurred input against it (what deblurring gains).
PER_IMAGE_METRICS = ('psnr', 'ssim', 'mse', 'input_psnr', 'input_ssim')


def deblur_images(apply_fn: Callable, variables: dict, blur, size_multiple: int):
  """The model's full-resolution output for any image size, clamped to [0, 1].

  Pads bottom and right by reflection to the model's multiple, then crops back.
  """
  padded, size = image_ops.pad_to_multiple(blur, size_multiple)
  deblurred = apply_fn(variables, padded, train=False)[-1]
  return jnp.clip(image_ops.crop_to(deblurred, size), 0.0, 1.0)


def eval_step(variables: dict, batch: dict, *, apply_fn: Callable, size_multiple: int) -> dict:
  """PER_IMAGE_METRICS, each of shape (N,), and 'deblurred': the (N, H, W, 3) outputs."""
  deblurred = deblur_images(apply_fn, variables, batch['blur'], size_multiple)
  sharp = batch['sharp']
  blur = jnp.clip(batch['blur'], 0.0, 1.0)
  return {
      'psnr': metrics.psnr(deblurred, sharp),
      'mse': jnp.mean(jnp.square(deblurred - sharp), axis=(1, 2, 3)),
      'ssim': metrics.ssim(deblurred, sharp),
      'input_psnr': metrics.psnr(blur, sharp),
      'input_ssim': metrics.ssim(blur, sharp),
      'deblurred': deblurred,
  }


def jit_eval_step(mesh, *, apply_fn: Callable, size_multiple: int):
  """`eval_step(variables, batch)` compiled for `mesh`: per-image metrics replicated,
  deblurred images split over 'data'."""
  step = functools.partial(eval_step, apply_fn=apply_fn, size_multiple=size_multiple)
  per_image = sharding.replicated(mesh)  # a few floats per image, readable on every process
  out_shardings = {name: per_image for name in PER_IMAGE_METRICS}
  out_shardings['deblurred'] = sharding.batch_sharded(mesh)
  # Variables stay as they are (replicated, or sharded by FSDP training).
  return jax.jit(step, in_shardings=(None, sharding.batch_sharded(mesh)),
                 out_shardings=out_shardings)
