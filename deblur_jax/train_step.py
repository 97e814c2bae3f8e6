"""The train state and the pure train and eval steps, jitted over a data mesh.

Nothing here touches files or TensorFlow: the loop driver (train.py), the
benchmarks and the inference tools all build on these functions.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from deblur_jax import image_ops, metrics, sharding


class TrainState(train_state.TrainState):
  """Flax's TrainState plus BatchNorm statistics (an empty dict for models without)."""
  batch_stats: Any = None

  def variables(self, params=None) -> dict:
    """What `apply_fn` takes: the params (or `params`) and any BatchNorm statistics."""
    variables = {'params': self.params if params is None else params}
    if self.batch_stats:
      variables['batch_stats'] = self.batch_stats
    return variables


def create_train_state(rng, model: nn.Module, tx: optax.GradientTransformation,
                       image_size: int, mesh) -> TrainState:
  """Initialises parameters (PyTorch-style init) and optimizer state, replicated on `mesh`."""

  def init():
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = model.init({'params': rng, 'dropout': rng}, dummy, train=False)
    return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                             batch_stats=variables.get('batch_stats', {}))

  return jax.jit(init, out_shardings=sharding.replicated(mesh))()


def train_step(state: TrainState, batch: dict, *, loss_fn: Callable,
               learning_rate_fn: optax.Schedule, rng) -> tuple[TrainState, dict]:
  """One optimisation step on a global batch {'blur', 'sharp'}: (N, H, W, 3) in [0, 1].

  Losses are means over the global batch, so the result does not depend on how
  the batch is split across devices; BatchNorm statistics are global too.
  Dropout draws from `rng` folded with the step, so a resumed run draws the
  same masks. Returns the new state and scalar metrics.
  """
  dropout_rng = jax.random.fold_in(rng, state.step)

  def compute_loss(params):
    predictions, updates = state.apply_fn(
        state.variables(params), batch['blur'], train=True,
        rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
    return loss_fn(predictions, batch['sharp']), (predictions, updates)

  (loss, (predictions, updates)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
      state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=updates.get('batch_stats', state.batch_stats))
  restored = jnp.clip(predictions[-1], 0.0, 1.0)
  step_metrics = {
      'loss': loss,
      'psnr': jnp.mean(metrics.psnr(restored, batch['sharp'])),
      'grad_norm': optax.global_norm(grads),
      'learning_rate': learning_rate_fn(state.step),
  }
  return new_state, step_metrics


def restore_images(apply_fn: Callable, variables: dict, blur, size_multiple: int):
  """The model's full-resolution output for any image size, clamped to [0, 1].

  Pads bottom and right by reflection to the model's multiple, then crops back.
  """
  padded, size = image_ops.pad_to_multiple(blur, size_multiple)
  restored = apply_fn(variables, padded, train=False)[-1]
  return jnp.clip(image_ops.crop_to(restored, size), 0.0, 1.0)


def eval_step(variables: dict, batch: dict, *, apply_fn: Callable, size_multiple: int) -> dict:
  """Per-image PSNR and SSIM of the restored and of the blurred input, and the output."""
  restored = restore_images(apply_fn, variables, batch['blur'], size_multiple)
  sharp = batch['sharp']
  blur = jnp.clip(batch['blur'], 0.0, 1.0)
  return {
      'psnr': metrics.psnr(restored, sharp),
      'ssim': metrics.ssim(restored, sharp),
      'input_psnr': metrics.psnr(blur, sharp),
      'input_ssim': metrics.ssim(blur, sharp),
      'restored': restored,
  }


def jit_train_step(mesh, *, loss_fn: Callable, learning_rate_fn: optax.Schedule, rng):
  """`train_step` compiled for `mesh`: batch split over 'data', state replicated, donated."""
  step = functools.partial(train_step, loss_fn=loss_fn, learning_rate_fn=learning_rate_fn,
                           rng=rng)
  return jax.jit(step,
                 in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                 out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)),
                 donate_argnums=0)


def jit_eval_step(mesh, *, apply_fn: Callable, size_multiple: int):
  """`eval_step(variables, batch)` compiled for `mesh`: per-image metrics replicated,
  restored images split over 'data'."""
  step = functools.partial(eval_step, apply_fn=apply_fn, size_multiple=size_multiple)
  per_image = sharding.replicated(mesh)  # a few floats per image, readable on every process
  out_shardings = {'psnr': per_image, 'ssim': per_image, 'input_psnr': per_image,
                   'input_ssim': per_image, 'restored': sharding.batch_sharded(mesh)}
  return jax.jit(step,
                 in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
                 out_shardings=out_shardings)
