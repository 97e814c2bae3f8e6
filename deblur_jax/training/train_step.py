"""The pure train step and the update both train steps share, jitted over a data mesh.

Nothing here touches files or TensorFlow: the loop driver (training/loop.py)
and the benchmarks build on these functions.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from deblur_jax.evaluation import metrics
from deblur_jax.parallel import sharding
from deblur_jax.training import losses
from deblur_jax.training.state import TrainState


def all_finite(tree) -> jax.Array:
  """True when every element of every leaf of `tree` is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def apply_update(state: TrainState, grads, loss, *, ema_decay: float = 0.0, **updated):
  """The state after one step with `grads`, or `state` unchanged (but for the step
  count) when the loss or a gradient is not finite.

  `updated` replaces other fields (batch_stats) on a finite step. Updates are
  scaled by the plateau scale when there is one; the EMA follows the new params.
  Returns (new state, 1.0 if the update was skipped else 0.0).

  The choice is made per backend when the step is lowered (lax.platform_dependent):
  on CPUs one `lax.cond`, which XLA's CPU compiler builds 7x faster for MIMO-UNet's
  step than a select per leaf (9.5 s against 67.5 s; BENCHMARKS.md); on GPUs and
  TPUs a select per leaf (as optax.apply_if_finite does), since XLA:GPU runs a
  conditional by copying its predicate to the host and waiting for it mid-step.
  Both compute the same update; their fusions may round it differently in the
  last bit (at most 1.7e-7 relative after four demo steps).
  """
  def update(state):
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    if state.plateau is not None:
      updates = jax.tree.map(lambda u: state.plateau.scale.astype(u.dtype) * u, updates)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(params=params, opt_state=opt_state, **updated)
    if state.ema_params is not None:
      new_state = new_state.replace(ema_params=optax.incremental_update(
          params, state.ema_params, step_size=1.0 - ema_decay))
    return new_state

  finite = jnp.logical_and(jnp.isfinite(loss), all_finite(grads))
  new_state = jax.lax.platform_dependent(
      finite, state, cpu=functools.partial(update_by_cond, update),
      default=functools.partial(update_by_select, update))
  return new_state.replace(step=state.step + 1), 1.0 - finite.astype(jnp.float32)


def update_by_cond(update: Callable, finite, state):
  """update(state) if `finite` else `state`, as one conditional (for XLA:CPU)."""
  return jax.lax.cond(finite, update, lambda state: state, state)


def update_by_select(update: Callable, finite, state):
  """update(state) if `finite` else `state`, as a select per leaf: no conditional,
  so the device never waits for the host (for GPUs and TPUs)."""
  return jax.tree.map(functools.partial(jnp.where, finite), update(state), state)


def unit_float_images(images) -> jax.Array:
  """Training images as float32 in [0, 1], converted on the device: uint8 or uint16
  levels (data/pipeline.py sends them so, a quarter or half the bytes of float32)
  as TensorFlow decodes a PNG, the 8-bit levels widened to 16 bits (level x 257,
  exact) and times float32(1 / 65535); float32 images unchanged."""
  if images.dtype == jnp.uint8:
    images = images.astype(jnp.uint16) * jnp.uint16(257)
  if images.dtype == jnp.uint16:
    return images.astype(jnp.float32) * jnp.float32(1 / 65535)
  return images


def unit_float_batch(batch: dict) -> dict:
  """`batch` {'blur', 'sharp'} with `unit_float_images` applied to each."""
  return {key: unit_float_images(images) for key, images in batch.items()}


def learning_rate(state: TrainState, learning_rate_fn: optax.Schedule):
  """The learning rate of the step `state` is about to take: schedule x plateau scale."""
  scale = 1.0 if state.plateau is None else state.plateau.scale
  return learning_rate_fn(state.step) * scale


def batch_psnr_gain(deblurred, blur, sharp) -> jax.Array:
  """dB by which `deblurred` is closer to `sharp` than the blurred input is, over the
  batch's pooled squared error.

  Unlike the mean of per-crop PSNRs ('psnr'), which flat or black crops (the
  input already exact) drive towards infinity, this stays finite and is zero
  for a model that returns its input, also on a batch whose input is already exact
  (both errors then floor at 1e-12, an error below float32 rounding).
  """
  def squared_error(images):
    return jnp.maximum(losses.mse(images.astype(jnp.float32), sharp.astype(jnp.float32)), 1e-12)

  return 10.0 * jnp.log10(squared_error(blur) / squared_error(deblurred))


def step_metrics(state: TrainState, *, loss, predictions, blur, sharp, grads, skipped,
                 learning_rate_fn: optax.Schedule) -> dict:
  """The scalars every train step reports, for the step `state` (before it) took."""
  deblurred = jnp.clip(predictions[-1], 0.0, 1.0)
  return {
      'loss': loss,
      'psnr': jnp.mean(metrics.psnr(deblurred, sharp)),
      'psnr_gain': batch_psnr_gain(deblurred, blur, sharp),
      'grad_norm': optax.global_norm(grads),
      'learning_rate': learning_rate(state, learning_rate_fn),
      'skipped': skipped,
  }


def train_step(state: TrainState, batch: dict, *, loss_fn: Callable,
               learning_rate_fn: optax.Schedule, rng,
               ema_decay: float = 0.0) -> tuple[TrainState, dict]:
  """One optimisation step on a global batch {'blur', 'sharp'}: (N, H, W, 3), float32
  in [0, 1] or levels (`unit_float_images`).

  Losses are means over the global batch, so the result does not depend on how
  the batch is split across devices; BatchNorm statistics are global too.
  Dropout draws from `rng` folded with the step, so a resumed run draws the
  same masks. A step whose loss or gradients are not finite changes nothing
  but the step count, and reports 'skipped' = 1. Returns the new state and
  scalar metrics (`step_metrics`).
  """
  batch = unit_float_batch(batch)
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
  return new_state, step_metrics(state, loss=loss, predictions=predictions,
                                 blur=batch['blur'], sharp=batch['sharp'],
                                 grads=grads, skipped=skipped, learning_rate_fn=learning_rate_fn)


def jit_train_step(mesh, *, loss_fn: Callable, learning_rate_fn: optax.Schedule, rng,
                   ema_decay: float = 0.0, state_sharding=None):
  """`train_step` compiled for `mesh`: batch split over 'data', state donated and
  kept in `state_sharding` (default: replicated; see `sharding.current_shardings`)."""
  step = functools.partial(train_step, loss_fn=loss_fn, learning_rate_fn=learning_rate_fn,
                           rng=rng, ema_decay=ema_decay)
  state_sharding = state_sharding or sharding.replicated(mesh)
  return jax.jit(step,
                 in_shardings=(state_sharding, sharding.batch_sharded(mesh)),
                 out_shardings=(state_sharding, sharding.replicated(mesh)),
                 donate_argnums=0)
