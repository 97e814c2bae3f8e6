"""The jitted train step: global batch semantics on any device count, learning, donation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from deblur_jax import models
from deblur_jax.parallel import sharding
from deblur_jax.training import losses, optimizers, train_step


def setup(num_devices, **model_overrides):
  config = tiny.get_config()
  config.model.update(model_overrides)
  mesh = sharding.create_mesh(jax.devices()[:num_devices])
  model = models.build_model(config.model)
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  state = train_step.create_train_state(jax.random.key(0), model, tx, 32, mesh)
  step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                   learning_rate_fn=schedule, rng=jax.random.key(1))
  return mesh, state, step


def random_batch(seed=0, size=32):
  rng = np.random.default_rng(seed)
  sharp = rng.uniform(size=(4, size, size, 3)).astype(np.float32)
  return {'blur': np.clip(sharp + rng.normal(0, 0.1, sharp.shape), 0, 1).astype(np.float32),
          'sharp': sharp}


def test_batch_norm_statistics_are_those_of_the_global_batch():
  """One step from the same start: same loss and running statistics on 1 and 4 devices
  (per-device statistics would differ by far more than rounding)."""
  results = []
  for devices in (1, 4):
    mesh, state, step = setup(devices, batch_norm=True)
    state, metrics = step(state, sharding.make_global_batch(random_batch(), mesh))
    results.append((float(metrics['loss']), jax.device_get(state.batch_stats)))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               results[0][1], results[1][1])
  assert jax.tree.leaves(results[0][1])  # the model really has statistics


def test_dropout_masks_do_not_depend_on_the_device_count():
  losses_by_devices = []
  for devices in (1, 4):
    mesh, state, step = setup(devices, dropout_rate=0.5)
    _, metrics = step(state, sharding.make_global_batch(random_batch(), mesh))
    losses_by_devices.append(float(metrics['loss']))
  assert losses_by_devices[0] == pytest.approx(losses_by_devices[1], rel=1e-6)


def test_training_on_a_fixed_batch_lowers_the_loss_and_reports_metrics():
  mesh, state, step = setup(4)
  sharp = random_batch()['sharp']
  batch = sharding.make_global_batch({'blur': 0.5 * sharp + 0.25, 'sharp': sharp}, mesh)
  history = []
  for _ in range(20):
    state, metrics = step(state, batch)
    history.append(float(metrics['loss']))
  assert set(metrics) == {'loss', 'psnr', 'grad_norm', 'learning_rate', 'skipped'}
  assert history[-1] < 0.95 * history[0]
  assert sum(b < a for a, b in zip(history, history[1:])) >= 16  # falls at almost every step
  assert int(state.step) == 20
  assert float(metrics['learning_rate']) == pytest.approx(1e-3)


def test_state_is_donated_and_batches_are_split_over_devices():
  mesh, state, step = setup(4)
  batch = sharding.make_global_batch(random_batch(), mesh)
  assert len(batch['blur'].addressable_shards) == 4
  assert batch['blur'].addressable_shards[0].data.shape == (1, 32, 32, 3)
  old_leaf = jax.tree.leaves(state.params)[0]
  new_state, _ = step(state, batch)
  assert old_leaf.is_deleted()
  assert jax.tree.leaves(new_state.params)[0].sharding.is_fully_replicated


def test_eval_step_scores_any_image_size():
  mesh, state, _ = setup(4)
  eval_fn = train_step.jit_eval_step(mesh, apply_fn=state.apply_fn, size_multiple=4)
  batch = random_batch(size=30)
  batch = {k: v[:, :, :27] for k, v in batch.items()}  # 30x27: not a multiple of 4
  out = eval_fn(state.variables(), sharding.make_global_batch(batch, mesh))
  assert out['restored'].shape == (4, 30, 27, 3)
  assert float(out['restored'].min()) >= 0 and float(out['restored'].max()) <= 1
  assert out['psnr'].shape == out['ssim'].shape == (4,)
  expected_input_psnr = -10 * np.log10(((batch['blur'] - batch['sharp']) ** 2).mean(axis=(1, 2, 3)))
  np.testing.assert_allclose(out['input_psnr'], expected_input_psnr, rtol=1e-4)


def test_bfloat16_compute_trains():
  config = tiny.get_config()
  mesh = sharding.create_mesh()
  model = models.build_model(config.model, jnp.bfloat16)
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  state = train_step.create_train_state(jax.random.key(0), model, tx, 32, mesh)
  step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                   learning_rate_fn=schedule, rng=jax.random.key(1))
  state, metrics = step(state, sharding.make_global_batch(random_batch(), mesh))
  assert np.isfinite(float(metrics['loss']))
  assert jax.tree.leaves(state.params)[0].dtype == jnp.float32


def test_a_single_process_supplies_every_row_of_the_batch():
  mesh = sharding.create_mesh()
  assert sharding.process_batch_rows(8, mesh) == range(0, 8)
  with pytest.raises(ValueError, match='multiple of the number of devices'):
    sharding.local_batch_size(6, mesh, 'config.train.batch_size')


def test_fsdp_shards_the_state_and_computes_the_same_step():
  """Parameters and Adam moments split over 4 devices give the replicated step's numbers."""
  config = tiny.get_config()
  config.model.base_width = 32  # 3x3x128x128 kernels: large enough to be sharded
  mesh = sharding.create_mesh(jax.devices()[:4])
  model = models.build_model(config.model)
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  batch = sharding.make_global_batch(random_batch(), mesh)
  results = []
  for fsdp in (False, True):
    state = train_step.create_train_state(jax.random.key(0), model, tx, 32, mesh, fsdp=fsdp)
    step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                     learning_rate_fn=schedule, rng=jax.random.key(1),
                                     state_sharding=train_step.state_shardings(state))
    state, metrics = step(state, batch)
    results.append((state, float(metrics['loss'])))
  (replicated, loss_r), (sharded, loss_s) = results
  assert loss_r == pytest.approx(loss_s, rel=1e-6)
  sharded_leaves = [x for x in jax.tree.leaves(sharded.params)
                    if not x.sharding.is_fully_replicated]
  assert sharded_leaves, 'no parameter was sharded'
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(replicated.params), jax.device_get(sharded.params))


def test_fsdp_splits_large_arrays_on_an_axis_that_divides():
  mesh = sharding.create_mesh(jax.devices()[:4])
  assert sharding.fsdp_sharding((3, 3, 64, 128), mesh).spec == jax.sharding.PartitionSpec(
      None, None, None, 'data')
  assert sharding.fsdp_sharding((3, 3, 3, 30), mesh).is_fully_replicated  # small
  assert sharding.fsdp_sharding((257, 259), mesh, min_size=1).is_fully_replicated  # no axis


def test_remat_keeps_the_parameters_and_the_gradients():
  config = tiny.get_config()
  batch = random_batch()
  grads = []
  for remat in (False, True):
    config.model.remat = remat
    model = models.build_model(config.model)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    loss = lambda p: losses.build_loss_fn(config.loss)(  # noqa: E731
        model.apply({'params': p}, batch['blur'], train=True), batch['sharp'])
    grads.append(jax.grad(loss)(variables['params']))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), *grads)
