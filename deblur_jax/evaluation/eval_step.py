"""The pure eval step: deblur whole images of any size and score them, jitted over a mesh."""

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from deblur_jax.evaluation import protocols
from deblur_jax.models import image_ops
from deblur_jax.parallel import sharding

# What `eval_step` scores for each image: the deblurred output against the sharp
# image, and the blurred input against it (what deblurring gains), both under
# the evaluation's protocol; 'mse' is the float MSE of the clamped output.
PER_IMAGE_METRICS = ('psnr', 'ssim', 'mse', 'input_psnr', 'input_ssim')


def device_metrics(protocol: protocols.Protocol) -> tuple[str, ...]:
  """The PER_IMAGE_METRICS the eval step computes: all, or only 'mse' for a protocol
  scored on the host (protocols.HOST_PROTOCOLS give the others)."""
  return ('mse',) if protocol.on_host else PER_IMAGE_METRICS


def deblur_images(apply_fn: Callable, variables: dict, blur, size_multiple: int):
  """The model's full-resolution output for any image size, clamped to [0, 1].

  Pads bottom and right by reflection to the model's multiple, then crops back.
  """
  padded, size = image_ops.pad_to_multiple(blur, size_multiple)
  deblurred = apply_fn(variables, padded, train=False)[-1]
  return jnp.clip(image_ops.crop_to(deblurred, size), 0.0, 1.0)


def eval_step(variables: dict, batch: dict, *, apply_fn: Callable, size_multiple: int,
              protocol: protocols.Protocol = protocols.Protocol()) -> dict:
  """device_metrics(protocol), each of shape (N,), and 'deblurred': the (N, H, W, 3)
  outputs in [0, 1].

  `protocol` scores the output and the blurred input alike against the sharp image
  (unless it runs on the host).
  """
  deblurred = deblur_images(apply_fn, variables, batch['blur'], size_multiple)
  sharp = batch['sharp']
  mse = jnp.mean(jnp.square(deblurred - sharp), axis=(1, 2, 3))
  if protocol.on_host:
    return {'mse': mse, 'deblurred': deblurred}
  scores = protocol(deblurred, sharp)
  input_scores = protocol(batch['blur'], sharp)
  return {
      'psnr': scores['psnr'],
      'mse': mse,
      'ssim': scores['ssim'],
      'input_psnr': input_scores['psnr'],
      'input_ssim': input_scores['ssim'],
      'deblurred': deblurred,
  }


def jit_eval_step(mesh, *, apply_fn: Callable, size_multiple: int,
                  protocol: protocols.Protocol = protocols.Protocol()):
  """`eval_step(variables, batch)` under `protocol`, compiled for `mesh`: per-image metrics
  replicated, deblurred images split over 'data'."""
  step = functools.partial(eval_step, apply_fn=apply_fn, size_multiple=size_multiple,
                           protocol=protocol)
  per_image = sharding.replicated(mesh)  # a few floats per image, readable on every process
  out_shardings = {name: per_image for name in device_metrics(protocol)}
  out_shardings['deblurred'] = sharding.batch_sharded(mesh)
  # Variables stay as they are (replicated, or sharded by FSDP training).
  return jax.jit(step, in_shardings=(None, sharding.batch_sharded(mesh)),
                 out_shardings=out_shardings)
