"""Deblurring whole images of any size with a saved model: whole, tiled or ensembled.

Loading a checkpoint's model from its own saved config, and pure array
functions around a compiled `deblur_fn` (NHWC batch in [0, 1] -> the model's
clamped full-resolution output): size buckets (padding so that a folder of
mixed sizes compiles a few programs, not one per image), overlapping tiles
and self-ensemble.
"""

import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deblur_jax import models
from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import eval_step
from deblur_jax.models import image_ops


def load_model(workdir: str, step=None, dtype=jnp.float32):
  """(model, its variables, the step) of a checkpoint, rebuilt from its saved config."""
  if not os.path.isdir(checkpoints.checkpoint_dir(workdir)):
    raise InputError(f'{workdir} has no checkpoints/ folder.')
  manager = checkpoints.create_manager(workdir, keep=1, read_only=True)
  saved, step = checkpoints.read_config(manager, step)
  model_config = ml_collections.ConfigDict(saved['model'])
  model = models.build_model(model_config, dtype)
  models.check_rgb_model(model, 'deblur_jax.predict (and export)')
  # Onto this process's first device, whatever devices and processes saved it.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  template = models.variables_template(model, device)
  variables, step = checkpoints.restore_model_variables(manager, template, saved['model'],
                                                          step)
  manager.close()
  return model, variables, step


def make_deblur_fn(model, variables) -> Callable:
  """The jitted `images (N, H, W, 3) -> deblurred images`, any H and W."""

  @jax.jit
  def deblur_fn(images):
    return eval_step.deblur_images(model.apply, variables, images, model.size_multiple)

  return deblur_fn


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Reflect-pads (H, W, C) at the bottom and right to height x width."""
  pad = ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0))
  small = pad[0][1] >= image.shape[0] or pad[1][1] >= image.shape[1]
  return np.pad(image, pad, mode='edge' if small else 'reflect')


def size_bucket(model, requested: int | None = None) -> int:
  """The multiple image sides are padded to: `requested` (default 64) made a
  multiple of the model's size_multiple; by default only size_multiple for models
  whose output more padding would change (`pad_only_to_multiple`: NAFNet's and
  Restormer's attention spans the whole image; FFTformer's official test pads to
  its multiple only)."""
  if requested is None:
    requested = 1 if getattr(model, 'pad_only_to_multiple', False) else 64
  return int(np.lcm(requested, model.size_multiple))


def check_tile(model, tile: int, bucket: int) -> str:
  """Raises an InputError unless `tile` is a multiple of `bucket` (the side images
  are padded to); returns what tiling changes, for the log."""
  name = type(model).__name__
  if tile % bucket:
    raise InputError(f'--tile={tile} must be a multiple of {bucket}, the multiple {name} '
                     f'pads image sides to (--bucket), e.g. {image_ops.round_up(tile, bucket)}.')
  wide = (f' {name} relates pixels across the whole image (attention or channel statistics), '
          'so every output pixel can differ a little from whole-image inference.'
          if getattr(model, 'pad_only_to_multiple', False) else '')
  return (f'Tiles of {tile}x{tile}: each sees only its own pixels, so the output differs from '
          f'whole-image inference near tile seams, where tiles are blended.{wide}')


def deblur_whole(deblur_fn: Callable, image: np.ndarray, bucket: int) -> np.ndarray:
  """The deblurred (H, W, 3) image, run at H and W padded up to multiples of `bucket`."""
  height, width = image.shape[:2]
  padded = _pad_to(image, image_ops.round_up(height, bucket), image_ops.round_up(width, bucket))
  return np.asarray(deblur_fn(padded[None]))[0, :height, :width]


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  if length <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, length - tile, stride))
  return starts + [length - tile]


def _ramp(tile: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
  """Blending weights along one axis: 1 inside, rising over `overlap` pixels at
  edges shared with a neighbouring tile (not at the image border)."""
  weights = np.ones(tile, np.float32)
  if overlap:
    rise = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    if not at_start:
      weights[:overlap] = rise
    if not at_end:
      weights[-overlap:] = rise[::-1]
  return weights


def deblur_tiled(deblur_fn: Callable, image: np.ndarray, tile: int, overlap: int,
                  multiple: int, batch: int = 4) -> np.ndarray:
  """The deblurred (H, W, 3) image from overlapping tile x tile crops, blended
  with linear ramps across each overlap so that no seam shows. The image is
  first padded to `multiple` like `deblur_whole`, so borders match it. Memory
  is that of `batch` tiles, whatever the image size."""
  if not 0 <= overlap < tile or tile % multiple:
    raise ValueError(f'Tile overlap {overlap} must lie in [0, tile={tile}), and the tile must '
                     f'be a multiple of {multiple}.')
  height, width = image.shape[:2]
  padded = _pad_to(image, image_ops.round_up(max(height, tile), multiple),
                   image_ops.round_up(max(width, tile), multiple))
  ys = _tile_starts(padded.shape[0], tile, overlap)
  xs = _tile_starts(padded.shape[1], tile, overlap)
  boxes = [(y, x) for y in ys for x in xs]
  total = np.zeros(padded.shape, np.float32)
  weight = np.zeros(padded.shape[:2] + (1,), np.float32)
  for first in range(0, len(boxes), batch):
    chunk = boxes[first:first + batch]
    crops = [padded[y:y + tile, x:x + tile] for y, x in chunk]
    crops += [crops[0]] * (batch - len(crops))  # one compiled shape for every batch
    outputs = np.asarray(deblur_fn(np.stack(crops)))
    for (y, x), out in zip(chunk, outputs):
      w = np.outer(_ramp(tile, overlap, y == ys[0], y == ys[-1]),
                   _ramp(tile, overlap, x == xs[0], x == xs[-1]))[..., None]
      total[y:y + tile, x:x + tile] += w * out
      weight[y:y + tile, x:x + tile] += w
  return (total / weight)[:height, :width]


def deblur_image(deblur_fn: Callable, image: np.ndarray, *, bucket: int = 64, tile: int = 0,
                  overlap: int = 32, ensemble: bool = False) -> np.ndarray:
  """The deblurred (H, W, 3) image in [0, 1].

  Sides are padded to multiples of `bucket` (itself a multiple of the model's
  size multiple). tile > 0 runs overlapping tiles when the image is larger
  than a tile. ensemble averages the outputs for the four 90-degree rotations
  of the input (the MIMO-UNet++ protocol).
  """
  single = functools.partial(deblur_tiled, deblur_fn, tile=tile, overlap=overlap,
                             multiple=bucket)
  if not tile or max(image.shape[:2]) <= tile:
    single = functools.partial(deblur_whole, deblur_fn, bucket=bucket)
  if not ensemble:
    return single(image)
  outputs = [np.rot90(single(np.ascontiguousarray(np.rot90(image, k))), -k) for k in range(4)]
  return np.mean(outputs, axis=0)

