"""What the training loop does with each evaluation: the monitored metric,
ReduceLROnPlateau and early stopping (the Keras recipes of the earlier UNet
and MIMO-UNet reproductions use both, as Keras' callbacks of those names).

The plateau logic is optax's `contrib.reduce_on_plateau`, fed the validation
metric once per evaluation; its `scale` multiplies every update (train_step).
Early stopping is host-side bookkeeping whose counters are checkpointed.
"""

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup

# Validation metrics the loop can monitor, and whether higher is better.
MONITORS = {'psnr': True, 'ssim': True, 'mse': False}


def check_monitor(name: str) -> str:
  lookup(MONITORS, name, 'config.train.monitor')
  return name


def lower_is_better(summary: dict, monitor: str) -> float:
  """The monitored metric of an evaluation summary, negated if higher is better."""
  value = float(summary[monitor])
  return -value if MONITORS[monitor] else value


def from_lower_is_better(value: float, monitor: str) -> float:
  """The inverse of `lower_is_better`."""
  return -value if MONITORS[monitor] else value


def build_plateau(train_config) -> Optional[optax.GradientTransformationExtraArgs]:
  """`reduce_on_plateau` for config.train.plateau_* (None when plateau_factor is 0).

  Patience and cooldown count evaluations. An evaluation improves on the best
  when it beats it by more than plateau_min_delta, in the monitored metric's
  units (absolute, as Keras' min_delta; a relative tolerance would invert for
  the negated PSNR and SSIM).
  """
  factor = train_config.plateau_factor
  if factor == 0:
    return None
  if not 0 < factor < 1:
    raise InputError(f'config.train.plateau_factor={factor} must lie in (0, 1), or be 0 (off).')
  if train_config.plateau_patience < 0 or train_config.plateau_cooldown < 0:
    raise InputError('config.train.plateau_patience and plateau_cooldown must be >= 0.')
  if train_config.plateau_min_delta <= 0:
    raise InputError(f'config.train.plateau_min_delta={train_config.plateau_min_delta} must be '
                     'positive.')
  return optax.contrib.reduce_on_plateau(
      factor=factor, patience=train_config.plateau_patience, rtol=0.0,
      atol=train_config.plateau_min_delta, cooldown=train_config.plateau_cooldown,
      min_scale=train_config.plateau_min_scale)


def update_plateau(plateau: optax.GradientTransformationExtraArgs, plateau_state, value: float):
  """The plateau state after an evaluation whose monitored value (lower is better) is `value`."""
  return _jitted_plateau_update(plateau)(plateau_state, jnp.asarray(value, jnp.float32))


@functools.cache
def _jitted_plateau_update(plateau: optax.GradientTransformationExtraArgs):
  """`plateau`'s update of its state, compiled once per plateau transformation."""
  return jax.jit(lambda state, value: plateau.update({}, state, value=value)[1])


def build_early_stopping(train_config) -> 'EarlyStopping':
  """Fresh early stopping for config.train.monitor and early_stop_* (patience 0 = off)."""
  check_monitor(train_config.monitor)
  if train_config.early_stop_patience < 0 or train_config.early_stop_min_delta < 0:
    raise InputError('config.train.early_stop_patience and early_stop_min_delta must be >= 0.')
  return EarlyStopping(train_config.early_stop_patience, train_config.early_stop_min_delta)


@dataclasses.dataclass
class EarlyStopping:
  """Stops after `patience` evaluations without an improvement of more than
  `min_delta` (absolute, in the monitored metric's units). patience 0 = never."""
  patience: int
  min_delta: float
  best: float = np.inf  # Lower is better.
  best_step: int = -1
  wait: int = 0

  def update(self, step: int, value: float) -> bool:
    """Records an evaluation (lower is better); True when training should stop."""
    if value < self.best - self.min_delta:
      self.best, self.best_step, self.wait = value, step, 0
    else:
      self.wait += 1
    return self.patience > 0 and self.wait >= self.patience

  def state(self) -> dict:
    """The counters, as arrays for the checkpoint."""
    return {'best': np.asarray(self.best, np.float64),
            'best_step': np.asarray(self.best_step, np.int64),
            'wait': np.asarray(self.wait, np.int64)}

  def load(self, state: dict) -> None:
    self.best = float(state['best'])
    self.best_step = int(state['best_step'])
    self.wait = int(state['wait'])
