"""The Optax chain and schedules built from config.optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deblur_jax.configs import common
from deblur_jax.training import optimizers


@pytest.fixture
def opt_config():
  return common.base_config().optimizer


def build(opt_config, **fields):
  """The update rule of `opt_config` with a constant schedule and `fields` set."""
  opt_config.schedule = 'constant'
  opt_config.update(fields)
  return optimizers.build_optimizer(opt_config, num_train_steps=10, steps_per_epoch=1)[0]


def run_steps(tx, grads_seq, params):
  state = tx.init(params)
  for g in grads_seq:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_paper_multistep_halves_every_500_epochs(opt_config):
  _, schedule = optimizers.build_optimizer(opt_config, num_train_steps=10_000, steps_per_epoch=526)
  every = 500 * 526
  assert float(schedule(0)) == pytest.approx(1e-4)
  assert float(schedule(every - 1)) == pytest.approx(1e-4)
  assert float(schedule(every)) == pytest.approx(5e-5)
  assert float(schedule(5 * every)) == pytest.approx(1e-4 / 32)


def test_multistep_in_steps_overrides_epochs(opt_config):
  opt_config.decay_every_steps = 10
  opt_config.decay_factor = 0.1
  _, schedule = optimizers.build_optimizer(opt_config, 100, steps_per_epoch=7)
  assert float(schedule(9)) == pytest.approx(1e-4)
  assert float(schedule(10)) == pytest.approx(1e-5)


def test_cosine_warms_up_then_decays(opt_config):
  opt_config.schedule = 'cosine'
  opt_config.warmup_steps = 10
  opt_config.end_learning_rate = 1e-6
  _, schedule = optimizers.build_optimizer(opt_config, 110, steps_per_epoch=1)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(5e-5)
  assert float(schedule(10)) == pytest.approx(1e-4)
  assert float(schedule(60)) == pytest.approx((1e-4 + 1e-6) / 2, rel=1e-3)
  assert float(schedule(110)) == pytest.approx(1e-6)


def test_cosine_with_a_hold_is_restormers_cyclic_schedule(opt_config):
  """BasicSR's CosineAnnealingRestartCyclicLR with periods (30, 70), eta_mins (lr, 1e-6):
  the peak for 30 steps, then a cosine to 1e-6 over the other 70."""
  opt_config.update(schedule='cosine', learning_rate=3e-4, hold_steps=30,
                    end_learning_rate=1e-6)
  _, schedule = optimizers.build_optimizer(opt_config, 100, steps_per_epoch=1)
  for step in (0, 29, 30, 45, 64, 99, 100):
    progress = max(step - 30, 0) / 70
    expected = 1e-6 + 0.5 * (3e-4 - 1e-6) * (1 + np.cos(np.pi * progress))
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_constant_schedule(opt_config):
  opt_config.schedule = 'constant'
  _, schedule = optimizers.build_optimizer(opt_config, 10, 1)
  assert float(schedule(0)) == float(schedule(10**6)) == pytest.approx(1e-4)


@pytest.mark.parametrize('name', ['adam', 'adamw', 'rmsprop', 'sgd'])
def test_every_optimizer_descends_a_quadratic(opt_config, name):
  tx = build(opt_config, name=name, learning_rate=0.05)
  params = {'w': jnp.array([2.0, -3.0])}
  loss = lambda p: jnp.sum(p['w'] ** 2)
  state = tx.init(params)
  for _ in range(30):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 0.5 * 13.0


def test_adam_follows_the_bias_corrected_moment_formulas(opt_config):
  """Kingma & Ba's update written out: m and v averaged with b1 and b2, bias-corrected,
  step = lr * m_hat / (sqrt(v_hat) + eps), with the config's defaults."""
  grads = [np.array([0.3, -1.0]), np.array([0.1, 0.2])]
  tx = build(opt_config)
  got = run_steps(tx, [{'w': jnp.asarray(g)} for g in grads], {'w': jnp.array([1.0, 1.0])})
  b1, b2, eps, lr = opt_config.b1, opt_config.b2, opt_config.eps, opt_config.learning_rate
  w, m, v = np.array([1.0, 1.0]), np.zeros(2), np.zeros(2)
  for t, g in enumerate(grads, 1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
  np.testing.assert_allclose(got['w'], w, rtol=1e-6)


def test_sgd_nesterov_differs_from_plain_momentum(opt_config):
  grads = [{'w': jnp.array([1.0])}] * 3
  params = {'w': jnp.array([0.0])}
  plain = run_steps(build(opt_config, name='sgd'), grads, params)
  nesterov = run_steps(build(opt_config, name='sgd', nesterov=True), grads, params)
  np.testing.assert_allclose(plain['w'], [-1e-4 * (1 + 1.9 + 2.71)], rtol=1e-5)
  assert float(nesterov['w'][0]) < float(plain['w'][0])


def test_weight_decay_adds_an_l2_gradient(opt_config):
  tx = build(opt_config, name='sgd', momentum=0.0, learning_rate=0.1, weight_decay=0.5)
  params = run_steps(tx, [{'w': jnp.array([0.0])}], {'w': jnp.array([2.0])})
  np.testing.assert_allclose(params['w'], [2.0 - 0.1 * 0.5 * 2.0], rtol=1e-6)


def test_gradient_clipping_bounds_the_global_norm(opt_config):
  tx = build(opt_config, name='sgd', momentum=0.0, learning_rate=1.0, grad_clip_norm=1.0)
  params = run_steps(tx, [{'w': jnp.array([30.0, 40.0])}], {'w': jnp.zeros(2)})
  np.testing.assert_allclose(params['w'], [-0.6, -0.8], rtol=1e-6)


@pytest.mark.parametrize('field,value,message', [
    ('name', 'adagrad', r"Unknown config\.optimizer\.name 'adagrad'"),
    ('schedule', 'linear', r"Unknown config\.optimizer\.schedule 'linear'"),
    ('warmup_steps', 20, r'warmup_steps=20 must lie in \[0, num_train_steps=10\)'),
    ('hold_steps', 10, r'hold_steps=10 must lie in \[0, num_train_steps - warmup_steps=10\)'),
])
def test_bad_values_are_errors_naming_the_field(opt_config, field, value, message):
  if field in ('warmup_steps', 'hold_steps'):
    opt_config.schedule = 'cosine'
  opt_config[field] = value
  with pytest.raises(ValueError, match=message):
    optimizers.build_optimizer(opt_config, 10, 1)


def test_steps_per_epoch_counts_the_last_partial_batch():
  assert optimizers.steps_per_epoch(2103, 4) == 526
  assert optimizers.steps_per_epoch(3, 16) == 1


def test_nesterov_without_momentum_is_an_error(opt_config):
  with pytest.raises(ValueError, match='nesterov=True needs config.optimizer.momentum > 0'):
    build(opt_config, name='sgd', momentum=0.0, nesterov=True)


def test_rmsprop_keeps_eps_outside_the_square_root(opt_config):
  """PyTorch/Keras RMSprop: g / (sqrt(v) + eps). For a first gradient of 1e-4,
  v = 1e-9 and the step is 3.16; with eps inside the root it would be 0.95."""
  tx = build(opt_config, name='rmsprop', learning_rate=1.0, eps=1e-8)
  params = run_steps(tx, [{'w': jnp.array([1e-4])}], {'w': jnp.zeros(1)})
  expected = -1e-4 / (np.sqrt(0.1 * 1e-8) + 1e-8)
  np.testing.assert_allclose(params['w'], [expected], rtol=1e-4)
