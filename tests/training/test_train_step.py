"""The jitted train step: global batch semantics on any device count, learning, donation,
FSDP, bfloat16 compute and the logged learning rate."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deblur_jax import models
from deblur_jax.configs import mimo
from deblur_jax.parallel import sharding
from deblur_jax.training import losses, optimizers, train_step
from deblur_jax.training.state import TrainState, create_train_state


def setup(num_devices, loss='mimo', **model_overrides):
  config = mimo.get_config('tiny')
  config.model.update(model_overrides)
  config.loss.name = loss
  mesh = sharding.create_mesh(jax.devices()[:num_devices])
  model = models.build_model(config.model)
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  state = create_train_state(jax.random.key(0), model, tx, 16, mesh)
  step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                   learning_rate_fn=schedule, rng=jax.random.key(1))
  return mesh, state, step


def random_batch(seed=0, size=16):
  rng = np.random.default_rng(seed)
  sharp = rng.uniform(size=(4, size, size, 3)).astype(np.float32)
  return {'blur': np.clip(sharp + rng.normal(0, 0.1, sharp.shape), 0, 1).astype(np.float32),
          'sharp': sharp}


def test_one_and_four_devices_compute_the_same_step():
  """One step from the same start on 1 and 4 devices: the same loss and BatchNorm
  running statistics (per-device statistics would differ by far more than rounding),
  with dropout masks that do not depend on the device count either."""
  results = []
  for devices in (1, 4):
    # The plain L1 loss: the multi-scale FFT loss would only add compile time here.
    mesh, state, step = setup(devices, loss='l1', batch_norm=True, dropout_rate=0.5)
    state, metrics = step(state, sharding.make_global_batch(random_batch(), mesh))
    results.append((float(metrics['loss']), jax.device_get(state.batch_stats)))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               results[0][1], results[1][1])
  assert jax.tree.leaves(results[0][1])  # the model really has statistics


def test_training_on_a_fixed_batch_lowers_the_loss_and_reports_metrics():
  mesh, state, step = setup(4)
  sharp = random_batch()['sharp']
  batch = sharding.make_global_batch({'blur': 0.5 * sharp + 0.25, 'sharp': sharp}, mesh)
  history = []
  for _ in range(20):
    state, metrics = step(state, batch)
    history.append(float(metrics['loss']))
  assert set(metrics) == {'loss', 'psnr', 'psnr_gain', 'grad_norm', 'learning_rate', 'skipped'}
  assert history[-1] < 0.95 * history[0]
  assert sum(b < a for a, b in zip(history, history[1:])) >= 16  # falls at almost every step
  assert int(state.step) == 20
  assert float(metrics['learning_rate']) == pytest.approx(1e-3)


def test_state_is_donated_and_batches_are_split_over_devices():
  mesh, state, step = setup(4)
  batch = sharding.make_global_batch(random_batch(), mesh)
  assert len(batch['blur'].addressable_shards) == 4
  assert batch['blur'].addressable_shards[0].data.shape == (1, 16, 16, 3)
  old_leaf = jax.tree.leaves(state.params)[0]
  new_state, _ = step(state, batch)
  assert old_leaf.is_deleted()
  assert jax.tree.leaves(new_state.params)[0].sharding.is_fully_replicated


def test_fsdp_shards_the_state_and_computes_the_same_step():
  """Parameters and Adam moments split over 4 devices give the replicated step's numbers."""
  config = mimo.get_config('tiny')
  mesh = sharding.create_mesh(jax.devices()[:4])
  model = models.build_model(config.model)
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  batch = sharding.make_global_batch(random_batch(), mesh)
  results = []
  for fsdp in (False, True):
    # The tiny model's 3x3x16x16 and larger kernels are sharded above 1,024 elements.
    state = create_train_state(jax.random.key(0), model, tx, 16, mesh, fsdp=fsdp,
                               fsdp_min_size=1024)
    step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                     learning_rate_fn=schedule, rng=jax.random.key(1),
                                     state_sharding=sharding.current_shardings(state))
    state, metrics = step(state, batch)
    results.append((state, float(metrics['loss'])))
  (replicated, loss_r), (sharded, loss_s) = results
  assert loss_r == pytest.approx(loss_s, rel=1e-6)
  sharded_leaves = [x for x in jax.tree.leaves(sharded.params)
                    if not x.sharding.is_fully_replicated]
  assert sharded_leaves, 'no parameter was sharded'
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(replicated.params), jax.device_get(sharded.params))


def test_remat_keeps_the_parameters_and_the_gradients():
  config = mimo.get_config('tiny')
  batch = random_batch()
  grads = []
  for remat in (False, True):
    config.model.remat = remat
    model = models.build_model(config.model)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False)
    loss = lambda p: losses.build_loss_fn(config.loss)(  # noqa: E731
        model.apply({'params': p}, batch['blur'], train=True), batch['sharp'])
    grads.append(jax.jit(jax.grad(loss))(variables['params']))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), *grads)


def test_bfloat16_compute_matches_float32_within_bfloat16_rounding():
  """bfloat16 keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4%): one step's loss
  and gradient norm agree with float32 to 2%, and the parameters stay float32."""
  config = mimo.get_config('tiny')
  mesh = sharding.create_mesh()
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  results = []
  for dtype in (jnp.float32, jnp.bfloat16):
    model = models.build_model(config.model, dtype)
    state = create_train_state(jax.random.key(0), model, tx, 16, mesh)
    step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                     learning_rate_fn=schedule, rng=jax.random.key(1))
    state, metrics = step(state, sharding.make_global_batch(random_batch(), mesh))
    results.append((float(metrics['loss']), float(metrics['grad_norm'])))
    assert jax.tree.leaves(state.params)[0].dtype == jnp.float32
  (loss32, grad32), (loss16, grad16) = results
  assert loss16 == pytest.approx(loss32, rel=0.02)
  assert grad16 == pytest.approx(grad32, rel=0.02)


def test_the_logged_learning_rate_is_the_schedule_times_the_plateau_scale():
  plateau = optax.contrib.reduce_on_plateau(factor=0.5, patience=0)
  state = TrainState.create(apply_fn=None, params={'w': jnp.zeros(1)}, tx=optax.sgd(1.0),
                            plateau=plateau.init({}))
  state = state.replace(step=jnp.asarray(3), plateau=state.plateau._replace(
      scale=jnp.asarray(0.25)))
  schedule = lambda step: 0.1 * step  # noqa: E731
  assert float(train_step.learning_rate(state, schedule)) == pytest.approx(0.3 * 0.25)
  assert float(train_step.learning_rate(state.replace(plateau=None), schedule)) == (
      pytest.approx(0.3))


def test_the_batch_psnr_gain_is_zero_for_the_input_and_finite_on_exact_crops():
  rng = np.random.default_rng(0)
  sharp = rng.uniform(size=(3, 8, 8, 3)).astype(np.float32)
  sharp[0] = 0.0  # a black crop: its blurred input is already exact (infinite PSNR)
  blur = sharp.copy()
  blur[1:] += 0.1 * rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
  assert float(train_step.batch_psnr_gain(blur, blur, sharp)) == pytest.approx(0.0, abs=1e-5)
  halfway = sharp + 0.5 * (blur - sharp)  # half the error: a quarter of the squared error
  assert float(train_step.batch_psnr_gain(halfway, blur, sharp)) == pytest.approx(
      10 * np.log10(4.0), rel=1e-4)
  assert float(train_step.batch_psnr_gain(blur + 0.1, blur, sharp)) < 0.0
  black = np.zeros_like(sharp)  # every crop exact: 0 dB, not 0/0
  assert float(train_step.batch_psnr_gain(black, black, black)) == 0.0
