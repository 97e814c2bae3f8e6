"""The train state and the pure train and eval steps, jitted over a data mesh.

Nothing here touches files or TensorFlow: the loop driver (train.py), the
benchmarks and the inference tools all build on these functions.
"""

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from deblur_jax.evaluation import metrics
from deblur_jax.models import image_ops
from deblur_jax.parallel import sharding


class TrainState(train_state.TrainState):
  """Flax's TrainState plus what the optional training features keep.

  batch_stats: BatchNorm statistics (an empty dict for models without).
  ema_params: exponential moving average of `params`, or None when off.
  plateau: `optax.contrib.reduce_on_plateau` state whose `scale` multiplies
    every update (driven by a validation metric), or None when off.
  """
  batch_stats: Any = None
  ema_params: Any = None
  plateau: Any = None

  def variables(self, params=None) -> dict:
    """What `apply_fn` takes: the params (or `params`) and any BatchNorm statistics."""
    variables = {'params': self.params if params is None else params}
    if self.batch_stats:
      variables['batch_stats'] = self.batch_stats
    return variables


def create_train_state(rng, model: nn.Module, tx: optax.GradientTransformation,
                       image_size: int, mesh, *, ema: bool = False,
                       plateau: Optional[optax.GradientTransformationExtraArgs] = None,
                       fsdp: bool = False) -> TrainState:
  """Initialises parameters and optimizer state (and the EMA copy and plateau
  state when asked) on `mesh`: replicated, or sharded FSDP-style with `fsdp`."""

  def init():
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = model.init({'params': rng, 'dropout': rng}, dummy, train=False)
    params = variables['params']
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                             batch_stats=variables.get('batch_stats', {}),
                             ema_params=jax.tree.map(jnp.copy, params) if ema else None,
                             plateau=plateau.init({}) if plateau is not None else None)

  shardings = sharding.state_shardings(jax.eval_shape(init), mesh, fsdp)
  return jax.jit(init, out_shardings=shardings)()


def state_shardings(state: TrainState):
  """The shardings `state` lives in, for jitting steps that keep them."""
  return jax.tree.map(lambda x: x.sharding, state)


def all_finite(tree) -> jax.Array:
  """True when every element of every leaf of `tree` is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def apply_update(state: TrainState, grads, loss, *, ema_decay: float = 0.0, **updated):
  """The state after one step with `grads`, or `state` unchanged (but for the step
  count) when the loss or a gradient is not finite.

  `updated` replaces other fields (batch_stats) on a finite step. Updates are
  scaled by the plateau scale when there is one; the EMA follows the new params.
  Returns (new state, 1.0 if the update was skipped else 0.0).
  """
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  if state.plateau is not None:
    updates = jax.tree.map(lambda u: state.plateau.scale.astype(u.dtype) * u, updates)
  params = optax.apply_updates(state.params, updates)
  candidate = state.replace(params=params, opt_state=opt_state, **updated)
  if state.ema_params is not None:
    candidate = candidate.replace(ema_params=optax.incremental_update(
        params, state.ema_params, step_size=1.0 - ema_decay))
  finite = jnp.logical_and(jnp.isfinite(loss), all_finite(grads))
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), candidate, state)
  return new_state.replace(step=state.step + 1), 1.0 - finite.astype(jnp.float32)


def train_step(state: TrainState, batch: dict, *, loss_fn: Callable,
               learning_rate_fn: optax.Schedule, rng,
               ema_decay: float = 0.0) -> tuple[TrainState, dict]:
  """One optimisation step on a global batch {'blur', 'sharp'}: (N, H, W, 3) in [0, 1].

  Losses are means over the global batch, so the result does not depend on how
  the batch is split across devices; BatchNorm statistics are global too.
  Dropout draws from `rng` folded with the step, so a resumed run draws the
  same masks. A step whose loss or gradients are not finite changes nothing
  but the step count, and reports 'skipped' = 1. Returns the new state and
  scalar metrics.
  """
  dropout_rng = jax.random.fold_in(rng, state.step)

  def compute_loss(params):
    predictions, updates = state.apply_fn(
        state.variables(params), batch['blur'], train=True,
        rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
    return loss_fn(predictions, batch['sharp']), (predictions, updates)

  (loss, (predictions, updates)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
      state.params)
  new_state, skipped = apply_update(
      state, grads, loss, ema_decay=ema_decay,
      batch_stats=updates.get('batch_stats', state.batch_stats))
  restored = jnp.clip(predictions[-1], 0.0, 1.0)
  step_metrics = {
      'loss': loss,
      'psnr': jnp.mean(metrics.psnr(restored, batch['sharp'])),
      'grad_norm': optax.global_norm(grads),
      'learning_rate': learning_rate_fn(state.step) * _plateau_scale(state),
      'skipped': skipped,
  }
  return new_state, step_metrics


def _plateau_scale(state: TrainState):
  return 1.0 if state.plateau is None else state.plateau.scale


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
      'mse': jnp.mean(jnp.square(restored - sharp), axis=(1, 2, 3)),
      'ssim': metrics.ssim(restored, sharp),
      'input_psnr': metrics.psnr(blur, sharp),
      'input_ssim': metrics.ssim(blur, sharp),
      'restored': restored,
  }


def jit_train_step(mesh, *, loss_fn: Callable, learning_rate_fn: optax.Schedule, rng,
                   ema_decay: float = 0.0, state_sharding=None):
  """`train_step` compiled for `mesh`: batch split over 'data', state donated and
  kept in `state_sharding` (default: replicated; see `state_shardings`)."""
  step = functools.partial(train_step, loss_fn=loss_fn, learning_rate_fn=learning_rate_fn,
                           rng=rng, ema_decay=ema_decay)
  state_sharding = state_sharding or sharding.replicated(mesh)
  return jax.jit(step,
                 in_shardings=(state_sharding, sharding.batch_sharded(mesh)),
                 out_shardings=(state_sharding, sharding.replicated(mesh)),
                 donate_argnums=0)


def jit_eval_step(mesh, *, apply_fn: Callable, size_multiple: int):
  """`eval_step(variables, batch)` compiled for `mesh`: per-image metrics replicated,
  restored images split over 'data'."""
  step = functools.partial(eval_step, apply_fn=apply_fn, size_multiple=size_multiple)
  per_image = sharding.replicated(mesh)  # a few floats per image, readable on every process
  out_shardings = {'psnr': per_image, 'mse': per_image, 'ssim': per_image, 'input_psnr': per_image,
                   'input_ssim': per_image, 'restored': sharding.batch_sharded(mesh)}
  # Variables stay as they are (replicated, or sharded by FSDP training).
  return jax.jit(step, in_shardings=(None, sharding.batch_sharded(mesh)),
                 out_shardings=out_shardings)
