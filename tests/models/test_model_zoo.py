"""The model zoo of seed reports 001-004: presets, outputs, shared layers, discriminators."""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deblur_jax import models
from deblur_jax.core.errors import InputError
from deblur_jax.models import gan, layers

# name -> knobs for a model small enough to run in a test, and an input (H, W).
TINY = {
    'unet': (dict(base_features=2), (32, 48)),
    'resunet': (dict(base_features=2, num_blocks=1), (16, 24)),
    'autoencoder': (dict(base_features=4), (16, 24)),
    'attention_autoencoder': (dict(base_features=4), (16, 24)),
    'gan_generator': (dict(base_features=4, num_blocks=1, dropout_rate=0.5), (16, 24)),
}


def build(name, **knobs):
  return models.build_model(ml_collections.ConfigDict(dict(name=name, **knobs)))


def variable_counts(model, height, width):
  """Entries per variable collection, from shapes alone (nothing is computed)."""
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, height, width, 3))))
  return {name: sum(x.size for x in jax.tree.leaves(tree)) for name, tree in variables.items()}


def compiled(fn, *args):
  """`fn` jitted for `args`; XLA's backend optimisations off, since compiling is most of
  a tiny model's test time."""
  return jax.jit(fn).lower(*args).compile(
      compiler_options={'xla_backend_optimization_level': 0})


def init(model, x):
  # The 'rbg' generator compiles far faster than the default threefry on CPU.
  return model.init(jax.random.key(0, impl='rbg'), x)


class TinyRun(NamedTuple):
  model: Any
  images: Any
  variables: dict  # Initial.
  outputs: list  # Training mode.
  grads: dict  # Of a training-mode MSE.
  updates: dict  # Collections the training-mode call changed ('batch_stats').


@functools.cache
def tiny(name) -> TinyRun:
  """A tiny model of the zoo initialised and run once, compiled as one program."""
  knobs, (height, width) = TINY[name]
  model = build(name, **knobs)
  x = jax.random.uniform(jax.random.key(1), (2, height, width, 3))

  def run(x):
    variables = init(model, x)

    def loss(params):
      out, updates = model.apply({**variables, 'params': params}, x, train=True,
                                 rngs={'dropout': jax.random.key(2, impl='rbg')},
                                 mutable=['batch_stats'])
      return jnp.mean(jnp.square(out[0] - jnp.clip(x + 0.1, 0, 1))), (out, updates)

    grads, (out, updates) = jax.grad(loss, has_aux=True)(variables['params'])
    return variables, out, grads, updates

  return TinyRun(model, x, *jax.device_get(compiled(run, x)(x)))


@pytest.mark.parametrize('name,size,total,batch_stats', [
    ('unet', (256, 448), 7_763_491, 1_664),  # Report 001: Keras total, non-trainable.
    ('resunet', (256, 448), 972_739, 1_024),  # Report 003.
    ('autoencoder', (224, 224), 1_331_459, 0),  # Report 002 gives no count.
    ('attention_autoencoder', (224, 224), 10_145_286, 0),  # Report 004: 10.3M.
    ('gan_generator', (448, 448), 8_124_419, 0),  # Report 004: 8.1M.
])
def test_presets_have_the_reported_sizes(name, size, total, batch_stats):
  counts = variable_counts(build(name), *size)
  assert counts.get('batch_stats', 0) == batch_stats
  assert counts['params'] + counts.get('batch_stats', 0) == total


@pytest.mark.parametrize('placement,batch_stats', [('report', 1_664), ('encoder', 1_920),
                                                   ('none', 0)])
def test_unet_batch_norm_placements(placement, batch_stats):
  counts = variable_counts(build('unet', batch_norm=placement), 32, 32)
  assert counts.get('batch_stats', 0) == batch_stats


def test_unet_unknown_batch_norm_placement_is_an_input_error():
  with pytest.raises(InputError, match='config.model.batch_norm'):
    variable_counts(build('unet', batch_norm='decoder'), 32, 32)


def test_resunet_layers_match_the_reports_table():
  """Report 003 lists each layer's Keras parameter count (BatchNorm statistics included)."""
  variables = jax.eval_shape(
      lambda: build('resunet').init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  counts = {layer: sum(x.size for x in jax.tree.leaves(
      [variables['params'][layer], variables['batch_stats'].get(layer, {})]))
            for layer in variables['params']}
  assert counts == {'conv_0': 448, 'conv_1': 11_008, 'conv_2': 92_288, 'block_0': 333_184,
                    'block_1': 312_704, 'up_0': 147_584, 'up_1': 73_792, 'out': 1_731}


@pytest.mark.parametrize('name,multiple', [('unet', 16), ('resunet', 4), ('autoencoder', 8),
                                           ('attention_autoencoder', 8), ('gan_generator', 4)])
def test_size_multiple_is_the_smallest_side_accepted(name, multiple):
  model = build(name, **TINY[name][0])
  assert model.size_multiple == multiple
  assert variable_counts(model, multiple, 2 * multiple)['params'] > 0
  with pytest.raises(ValueError, match=f'divisible by {multiple}'):
    variable_counts(model, multiple + multiple // 2, multiple)


@pytest.mark.parametrize('name', sorted(TINY))
def test_returns_one_restored_image_in_the_unit_range(name):
  run = tiny(name)
  out = run.outputs
  assert isinstance(out, list) and len(out) == 1
  assert out[0].shape == run.images.shape and out[0].dtype == jnp.float32
  assert np.all((out[0] >= 0) & (out[0] <= 1))


@pytest.mark.parametrize('name', sorted(TINY))
def test_training_gradients_are_finite_and_nonzero(name):
  leaves = jax.tree.leaves(tiny(name).grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert all(np.any(g != 0) for g in leaves)


@pytest.mark.parametrize('name', ['unet', 'resunet'])
def test_training_updates_batch_norm_statistics(name):
  run = tiny(name)
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), run.variables['batch_stats'],
                         run.updates['batch_stats'])
  assert jax.tree.leaves(changed) and all(jax.tree.leaves(changed))


def test_bfloat16_compute_keeps_float32_parameters_and_output():
  knobs, (height, width) = TINY['unet']
  model = models.build_model(ml_collections.ConfigDict(dict(name='unet', **knobs)),
                             dtype=jnp.bfloat16)
  out, variables = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, height, width, 3))))
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert out[0].dtype == jnp.float32


SIGMOID_MODELS = ['unet', 'resunet', 'autoencoder', 'attention_autoencoder']


def zero_weights_output(name, **knobs):
  """The model's output for `tiny(name)`'s images with every variable zero."""
  run = tiny(name)
  model = build(name, **{**TINY[name][0], **knobs})
  zero = jax.tree.map(np.zeros_like, run.variables)
  (out,) = compiled(model.apply, zero, run.images)(zero, run.images)
  return run.images, out


@pytest.mark.parametrize('name,knobs', [('gan_generator', {})] + [
    (name, dict(global_residual=True)) for name in SIGMOID_MODELS])
def test_global_residual_models_return_their_input_with_zero_weights(name, knobs):
  """With every weight zero the tanh correction is zero and the input comes back."""
  images, out = zero_weights_output(name, **knobs)
  np.testing.assert_allclose(out, images, atol=1e-6)


@pytest.mark.parametrize('name', SIGMOID_MODELS)
def test_seed_models_end_in_a_sigmoid_unless_asked_for_a_global_residual(name):
  """The reports' head by default (sigmoid(0) = 0.5 everywhere), the same variables either way."""
  _, out = zero_weights_output(name)
  np.testing.assert_allclose(out, 0.5)
  knobs, (height, width) = TINY[name]
  x = jnp.zeros((1, height, width, 3))
  shapes = [jax.tree.map(jnp.shape, jax.eval_shape(functools.partial(init, model, x)))
            for model in (build(name, **knobs), build(name, **knobs, global_residual=True))]
  assert shapes[0] == shapes[1]


def naive_conv_transpose(x, kernel, bias):
  """Input pixel i adds x[i] * w[t] to output 2i + t - (k - 1) // 2, by definition.
  x NHWC, kernel (k, k, in, out)."""
  n, h, w, _ = x.shape
  k, p = kernel.shape[0], (kernel.shape[0] - 1) // 2
  out = np.zeros((n, 2 * h + k, 2 * w + k, kernel.shape[-1]))
  for ty in range(k):
    for tx in range(k):
      out[:, ty:ty + 2 * h:2, tx:tx + 2 * w:2] += np.einsum('nhwc,co->nhwo', x, kernel[ty, tx])
  return out[:, p:p + 2 * h, p:p + 2 * w] + bias


@pytest.mark.parametrize('kernel_size', [2, 3, 4])
def test_conv_transpose_2x_equals_its_definition(kernel_size):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
  kernel = rng.normal(size=(kernel_size, kernel_size, 3, 5)).astype(np.float32)
  bias = np.arange(5.0, dtype=np.float32)
  layer = layers.ConvTranspose2x(features=5, kernel_size=kernel_size)
  out = layer.apply({'params': {'kernel': kernel, 'bias': bias}}, x)
  np.testing.assert_allclose(out, naive_conv_transpose(x, kernel, bias), atol=1e-4)


@pytest.mark.parametrize('name,shape', [('patchgan', (2, 6, 6, 1)), ('dcgan', (2, 1))])
def test_discriminators_return_float32_logits(name, shape):
  model = gan.DISCRIMINATORS[name](base_features=4)
  x = jnp.zeros((2, 64, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  logits, updates = jax.eval_shape(
      lambda v: model.apply(v, x, train=True, mutable=['batch_stats']), variables)
  assert logits.shape == shape and logits.dtype == jnp.float32
  assert set(updates) == {'batch_stats'}


def test_patchgan_logits_see_70x70_patches():
  """Logit (0, 0) reads input rows and columns -23..46: 0..46 inside the image."""
  model = gan.PatchGANDiscriminator(base_features=2)
  x = jax.random.uniform(jax.random.key(1), (1, 64, 64, 3))
  corner = lambda images: model.apply(init(model, x), images)[0, 0, 0, 0]
  grad = np.asarray(compiled(jax.grad(corner), x)(x))[0]
  assert np.all(grad[47:] == 0) and np.all(grad[:, 47:] == 0)
  assert np.any(grad[46, :47] != 0) and np.any(grad[:47, 46] != 0)


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_every_model_initialises_from_the_dummy_images_the_tools_use(name):
  """Sides rounded up to the model's size multiple (32 for FFTformer), its channels."""
  model = models.get_model_class(name)()
  images = models.dummy_images(model)
  assert images.shape[1] % model.size_multiple == 0 and images.shape[1] >= 16
  assert images.shape[-1] == models.input_channels(model) == 3
  jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))


def test_plain_forms_trace_the_default_form_and_nothing_traced_outside_leaks_in():
  x, kernel = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 1, 2))
  conv = jax.jit(layers.depthwise_conv3x3)
  assert 'platform_index' in str(jax.make_jaxpr(conv)(x, kernel))
  with layers.plain_forms():
    assert layers.in_plain_forms()
    plain = str(jax.make_jaxpr(conv)(x, kernel))
  assert 'platform_index' not in plain and 'feature_group_count=2' in plain
  assert not layers.in_plain_forms()
  assert 'platform_index' in str(jax.make_jaxpr(conv)(x, kernel))


def test_symbolic_reflection_padding_and_plain_max_pooling_equal_numpy():
  """reflect_pad for any size (jax.export, no constraint) and max_pool_2x in
  plain_forms give numpy's numbers."""
  pad = jax.export.export(jax.jit(lambda x: layers.reflect_pad(x, 3)))(jax.ShapeDtypeStruct(
      jax.export.symbolic_shape('1, h, w, 2'), jnp.float32))
  rng = np.random.default_rng(0)
  for height, width in ((4, 9), (7, 5)):
    x = rng.normal(size=(1, height, width, 2)).astype(np.float32)
    np.testing.assert_array_equal(
        pad.call(x), np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode='reflect'))
  x = jnp.asarray(rng.normal(size=(2, 6, 8, 3)), jnp.float32)
  with layers.plain_forms():
    plain = layers.max_pool_2x(x)
  np.testing.assert_array_equal(plain, layers.max_pool_2x(x))
  np.testing.assert_array_equal(plain, np.asarray(x).reshape(2, 3, 2, 4, 2, 3).max(axis=(2, 4)))
