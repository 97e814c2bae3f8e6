"""The train state: parameters, optimizer state and what optional features keep."""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from deblur_jax import models
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
                       fsdp: bool = False,
                       fsdp_min_size: int = sharding.FSDP_MIN_SIZE) -> TrainState:
  """Initialises parameters and optimizer state (and the EMA copy and plateau
  state when asked) on `mesh`: replicated, or sharded FSDP-style with `fsdp`
  (arrays of at least `fsdp_min_size` elements)."""

  def init():
    variables = model.init({'params': rng, 'dropout': rng},
                           models.dummy_images(model, image_size), train=False)
    params = variables['params']
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                             batch_stats=variables.get('batch_stats', {}),
                             ema_params=jax.tree.map(jnp.copy, params) if ema else None,
                             plateau=plateau.init({}) if plateau is not None else None)

  placement = sharding.replicated_or_fsdp(jax.eval_shape(init), mesh, fsdp, fsdp_min_size)
  return jax.jit(init, out_shardings=placement)()
