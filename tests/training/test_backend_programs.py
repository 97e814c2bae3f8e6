"""The train step each backend gets. Lowered for GPUs and TPUs on this CPU-only
machine (jax.export), every model's bfloat16 step has no conditional, no
custom call or host callback and no float64, and uses the plain grouped
convolution; the CPU program keeps its CPU-tuned forms. On the CPU, both forms
of each choice compute the same numbers."""

import importlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

# MLIR's canonicaliser folds the single-branch `case` ops that lax.platform_dependent
# leaves for the platform lowered; JAX's own context has the dialects it needs.
from jax._src.interpreters.mlir import make_ir_context
from jax.extend.mlir import ir, passmanager

from deblur_jax import models
from deblur_jax.models import layers
from deblur_jax.parallel import sharding
from deblur_jax.training import losses, optimizers, train_step
from deblur_jax.training.state import create_train_state

# Every registered model family, as its shipped config's tiny variant.
FAMILIES = {'mimo_unet': ('mimo', 'tiny'), 'nafnet': ('nafnet', 'tiny'),
            'unet': ('unet', 'tiny'), 'resunet': ('resunet', 'tiny'),
            'autoencoder': ('autoencoder', 'tiny'),
            'attention_autoencoder': ('autoencoder', 'attention,tiny'),
            'gan_generator': ('gan', 'tiny'), 'restormer': ('restormer', 'tiny'),
            'fftformer': ('fftformer', 'tiny'), 'evssm': ('evssm', 'tiny')}


def test_every_registered_model_is_covered():
  assert sorted(FAMILIES) == sorted(models.MODELS)


def lowered_step(family: str, platform: str) -> str:
  """The canonicalised StableHLO of `family`'s bfloat16 train step on a uint8 batch
  of 2 crops, lowered for `platform`."""
  config_file, variant = FAMILIES[family]
  config = importlib.import_module(f'deblur_jax.configs.{config_file}').get_config(variant)
  assert config.model.name == family
  model = models.build_model(config.model, jnp.bfloat16)
  mesh = sharding.create_mesh(jax.devices()[:1])
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  size = config.data.crop_size
  state = jax.eval_shape(lambda: create_train_state(jax.random.key(0), model, tx, size, mesh,
                                                    ema=True))
  step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                   learning_rate_fn=schedule, rng=jax.random.key(1))
  crops = jax.ShapeDtypeStruct((2, size, size, 3), jnp.uint8)
  exported = jax.export.export(step, platforms=(platform,))(state, {'blur': crops,
                                                                    'sharp': crops})
  with make_ir_context():
    module = ir.Module.parse(exported.mlir_module())
    passmanager.PassManager.parse('builtin.module(inline,canonicalize)').run(module.operation)
    return str(module)


@pytest.mark.parametrize('family', sorted(FAMILIES))
@pytest.mark.parametrize('platform', ['cuda', 'tpu'])
def test_accelerators_get_a_step_without_conditionals_or_host_work(family, platform):
  program = lowered_step(family, platform)
  for op in ('stablehlo.case', 'stablehlo.if', 'custom_call', 'callback', 'f64'):
    assert op not in program, f'{family} on {platform}: {op}'
  assert 'tensor<2x' in program and 'xui8>' in program  # the batch arrives as uint8


def test_accelerators_get_the_grouped_depthwise_conv_and_the_cpu_its_shifted_taps():
  def group_counts(program):
    return {int(n) for n in re.findall(r'feature_group_count = (\d+)', program)} - {1}

  assert group_counts(lowered_step('nafnet', 'cuda'))  # each width's depthwise convs
  cpu_program = lowered_step('nafnet', 'cpu')
  assert not group_counts(cpu_program)
  assert 'stablehlo.case' in cpu_program  # the skipped-step update stays a cond on CPUs


def test_accelerators_scan_each_chunk_in_parallel_form_and_the_cpu_step_by_step():
  """EVSSM's selective scan: a loop over chunks everywhere; inside each chunk a second
  loop (one position a step) on CPUs only, lax.associative_scan's log-depth form on
  GPUs and TPUs."""
  loops = {platform: lowered_step('evssm', platform).count('stablehlo.while')
           for platform in ('cpu', 'cuda', 'tpu')}
  assert loops['cuda'] == loops['tpu'] > 0 and loops['cpu'] > loops['cuda'], loops


def test_the_bias_gradient_is_the_same_either_way():
  rng = np.random.default_rng(0)
  y = jnp.asarray(rng.normal(size=(2, 5, 7, 6)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(6,)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=y.shape), jnp.float32)

  def grads(add):
    return jax.grad(lambda y, b: jnp.sum(weights * add(y, b)), argnums=(0, 1))(y, bias)

  for cpu, plain in zip(grads(layers.bias_add_matmul_grad), grads(jnp.add)):
    np.testing.assert_allclose(cpu, plain, rtol=1e-5, atol=1e-5)
  # The library function picks the CPU form here.
  for picked, cpu in zip(grads(layers.bias_add), grads(layers.bias_add_matmul_grad)):
    np.testing.assert_array_equal(picked, cpu)


def test_the_skipped_step_update_is_the_same_as_a_cond_and_as_a_select():
  params = {'w': jnp.arange(6.0).reshape(2, 3), 'b': jnp.ones(3)}
  tx = optax.adam(0.1)
  state = {'params': params, 'opt_state': tx.init(params)}
  grads = jax.tree.map(lambda p: 0.5 * p + 1.0, params)

  def update(state):
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    return {'params': optax.apply_updates(state['params'], updates), 'opt_state': opt_state}

  for finite in (True, False):
    by_cond = jax.jit(train_step.update_by_cond, static_argnums=0)(update, finite, state)
    by_select = jax.jit(train_step.update_by_select, static_argnums=0)(update, finite, state)
    expected = jax.jit(update)(state) if finite else state
    # The same arithmetic; XLA may fuse (and so round) it differently in the last bit.
    for form in (by_cond, by_select):
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-7, atol=0),
                   form, expected)


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16])
def test_levels_become_the_floats_tensorflow_decodes_a_png_to(dtype):
  levels = np.arange(np.iinfo(dtype).max + 1, dtype=np.int64).astype(dtype)
  # TensorFlow widens 8-bit PNG levels to 16 bits (x 257), then multiplies by 1 / 65535.
  wide = levels.astype(np.float32) * (257 if dtype == np.uint8 else 1)
  expected = wide * np.float32(1 / 65535)
  got = jax.jit(train_step.unit_float_images)(levels)
  np.testing.assert_array_equal(got, expected)
  assert got.dtype == jnp.float32 and float(got[-1]) == 1.0
  floats = jnp.linspace(0, 1, 5)
  assert train_step.unit_float_images(floats) is floats
