"""Plateau, early stopping, EMA and the non-finite guard, on scripted values."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.training import train_step, validation_monitor
from deblur_jax.training.state import TrainState


def plateau_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      plateau_factor=0.5, plateau_patience=2, plateau_min_delta=1e-6, plateau_cooldown=0,
      plateau_min_scale=0.0))
  config.update(overrides)
  return config


def scales_after(values, **overrides):
  plateau = validation_monitor.build_plateau(plateau_config(**overrides))
  state = plateau.init({})
  scales = []
  for value in values:
    state = validation_monitor.update_plateau(plateau, state, value)
    scales.append(float(state.scale))
  return scales


def test_plateau_halves_after_patience_evaluations_without_improvement():
  assert scales_after([3.0, 2.0, 2.5, 2.1, 2.2, 1.0, 1.5]) == [1, 1, 1, 0.5, 0.5, 0.5, 0.5]


def test_plateau_respects_cooldown_and_min_scale():
  values = [1.0] + [2.0] * 8
  scales = scales_after(values, plateau_patience=1, plateau_cooldown=1, plateau_min_scale=0.2)
  np.testing.assert_allclose(scales, [1, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2], rtol=1e-6)


def test_plateau_min_delta_is_absolute_also_for_negated_metrics():
  """-PSNR from -30.00 to -29.99 is worse, however small the tolerance."""
  assert scales_after([-30.0, -29.99, -29.99], plateau_patience=1) == [1, 0.5, 0.25]
  assert scales_after([-30.0, -30.05, -30.1], plateau_patience=1, plateau_min_delta=0.1) == [
      1, 0.5, 0.25]


def test_plateau_off_and_bad_factor():
  assert validation_monitor.build_plateau(plateau_config(plateau_factor=0.0)) is None
  with pytest.raises(InputError, match=r'config\.train\.plateau_factor=1\.5'):
    validation_monitor.build_plateau(plateau_config(plateau_factor=1.5))


def test_early_stopping_stops_after_patience_evaluations_without_improvement():
  stopper = validation_monitor.EarlyStopping(patience=2, min_delta=0.1)
  decisions = [stopper.update(step, value)
               for step, value in [(1, 5.0), (2, 4.0), (3, 3.95), (4, 3.0), (5, 3.0), (6, 2.95)]]
  assert decisions == [False, False, False, False, False, True]
  assert (stopper.best, stopper.best_step) == (3.0, 4)


def test_early_stopping_counters_survive_a_checkpoint_round_trip():
  stopper = validation_monitor.EarlyStopping(patience=3, min_delta=0.0)
  stopper.update(10, 1.0)
  stopper.update(20, 2.0)
  resumed = validation_monitor.EarlyStopping(patience=3, min_delta=0.0)
  resumed.load(stopper.state())
  assert (resumed.best, resumed.best_step, resumed.wait) == (1.0, 10, 1)
  assert validation_monitor.EarlyStopping(patience=0, min_delta=0.0).update(1, 1.0) is False


def test_monitored_values_are_lower_is_better():
  summary = {'psnr': 30.0, 'ssim': 0.9, 'mse': 0.01}
  assert validation_monitor.lower_is_better(summary, 'psnr') == -30.0
  assert validation_monitor.lower_is_better(summary, 'mse') == 0.01
  assert validation_monitor.from_lower_is_better(-30.0, 'psnr') == 30.0
  with pytest.raises(InputError, match=r"config\.train\.monitor 'loss'"):
    validation_monitor.check_monitor('loss')


def sgd_state(ema=False, plateau=None):
  params = {'w': jnp.array([1.0, 2.0])}
  return TrainState.create(
      apply_fn=None, params=params, tx=optax.sgd(1.0),
      batch_stats={}, ema_params=dict(params) if ema else None,
      plateau=plateau.init({}) if plateau is not None else None)


def test_ema_follows_the_parameters_with_the_given_decay():
  state = sgd_state(ema=True)
  grads = {'w': jnp.array([0.5, -1.0])}
  state, skipped = train_step.apply_update(state, grads, jnp.float32(1.0), ema_decay=0.9)
  np.testing.assert_allclose(state.params['w'], [0.5, 3.0])
  np.testing.assert_allclose(state.ema_params['w'], [0.9 * 1 + 0.1 * 0.5, 0.9 * 2 + 0.1 * 3.0])
  assert float(skipped) == 0.0 and int(state.step) == 1


@pytest.mark.parametrize('loss,grad', [(np.nan, 0.5), (1.0, np.inf), (1.0, np.nan)])
def test_a_non_finite_step_changes_nothing_but_the_step_count(loss, grad):
  state = sgd_state(ema=True)
  new, skipped = train_step.apply_update(state, {'w': jnp.array([grad, 0.0])},
                                         jnp.float32(loss), ema_decay=0.5)
  assert float(skipped) == 1.0 and int(new.step) == 1
  np.testing.assert_array_equal(new.params['w'], state.params['w'])
  np.testing.assert_array_equal(new.ema_params['w'], state.ema_params['w'])


def test_the_plateau_scale_multiplies_the_update():
  plateau = validation_monitor.build_plateau(plateau_config(plateau_patience=0))
  state = sgd_state(plateau=plateau)
  state = state.replace(plateau=validation_monitor.update_plateau(plateau, state.plateau, 1.0))
  state = state.replace(plateau=validation_monitor.update_plateau(plateau, state.plateau, 2.0))
  assert float(state.plateau.scale) == 0.5
  state, _ = train_step.apply_update(state, {'w': jnp.array([1.0, 1.0])}, jnp.float32(1.0))
  np.testing.assert_allclose(state.params['w'], [0.5, 1.5])
