"""Exported inference programs give the same images as the library, at any size, for
every registered model."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deblur_jax import models
from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.inference import deblur, serialize
from deblur_jax.models import image_ops
from helpers import TINY_MODELS, random_variables, tiny_model_config

# Sides that are multiples of no model's size multiple (4, 8, 16), batch 1 and 2.
SHAPES = ((1, 20, 28, 3), (2, 9, 11, 3))
PLATFORMS = ('cpu', 'cuda', 'tpu')


def compiled(fn, *args):
  """`fn` compiled for `args` without XLA's backend optimisations (most of a tiny
  model's test time), the same for the library and the exported program."""
  return jax.jit(fn).lower(*args).compile(
      compiler_options={'xla_backend_optimization_level': 0})


@pytest.fixture(scope='module')
def tiny_model():
  model = models.build_model(mimo.get_config('tiny').model)
  return model, random_variables(model)


def images(*shape):
  return np.random.default_rng(0).uniform(size=shape).astype(np.float32)


def test_tiny_models_cover_every_registered_model():
  assert sorted(tiny_model_config(*spec).name for spec in TINY_MODELS) == sorted(models.MODELS)


@pytest.mark.parametrize('spec', TINY_MODELS, ids=lambda spec: f'{spec[0]}:{spec[1]}')
def test_every_model_exports_for_cpu_cuda_and_tpu_and_runs_as_the_library(spec):
  """Any image size; EVSSM, whose windows follow the image size, for each size."""
  model = models.build_model(tiny_model_config(*spec))
  variables = random_variables(model)
  reference = deblur.make_deblur_fn(model, variables)
  for shape in SHAPES:
    sized = serialize.sized_by_image(model)
    exported = jax.export.deserialize(serialize.export(
        model, variables, PLATFORMS, shape[1:3] if sized else None).serialize())
    assert exported.platforms == PLATFORMS
    assert str(exported.in_avals[0].shape) == (f'(b, {shape[1]}, {shape[2]}, 3)' if sized
                                               else '(b, h, w, 3)')
    x = images(*shape)
    out = np.asarray(compiled(exported.call, x)(x))
    assert out.shape == shape
    np.testing.assert_allclose(out, compiled(reference, x)(x), atol=1e-6)


def test_exported_padding_reflects_or_repeats_as_numpy_at_every_size():
  exported = jax.export.export(jax.jit(lambda x: image_ops.pad_to_multiple(x, 16)[0]))(
      jax.ShapeDtypeStruct(jax.export.symbolic_shape('1, h, 16, 1', constraints=('h >= 1',)),
                           jnp.float32))
  for height in (1, 2, 5, 8, 9, 15, 16, 17, 23):  # repeated, reflected, none
    x = images(1, height, 16, 1)
    pad = -height % 16
    expected = np.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)),
                      mode='reflect' if pad < height else 'edge')
    np.testing.assert_array_equal(exported.call(x), expected)
    np.testing.assert_array_equal(image_ops.pad_to_multiple(x, 16)[0], expected)


def test_the_gan_generator_exports_from_five_pixels():
  model = models.build_model(tiny_model_config('gan', 'tiny', {}))
  exported = serialize.export(model, random_variables(model))
  assert serialize.min_side(model) == 5
  assert exported.call(images(1, 5, 6, 3)).shape == (1, 5, 6, 3)
  with pytest.raises(ValueError, match='constraint h >= 5'):
    exported.call(images(1, 4, 6, 3))


class SizeDependent(nn.Module):
  """Takes a Python branch on the image height: not exportable for symbolic sizes."""
  size_multiple = 1

  @nn.compact
  def __call__(self, x, train=False):
    return [x * 2 if x.shape[1] > 8 else x]


def test_a_model_that_cannot_export_is_an_input_error_naming_it():
  with pytest.raises(InputError, match=r'^SizeDependent cannot be exported for any image size: '
                                      r'[^\n]*inconclusive[^\n]*$'):
    serialize.export(SizeDependent(), {})


def test_a_model_sized_by_the_image_needs_an_image_size():
  model = models.build_model(tiny_model_config('evssm', 'tiny', {}))
  with pytest.raises(InputError, match=r'^EVSSM lays out its computation by the image size '
                                      r'.*--image_size=HxW'):
    serialize.export(model, random_variables(model))
  with pytest.raises(InputError, match=r'--image_size=3x8: EVSSM takes sides from 4'):
    serialize.export(model, random_variables(model), image_size=(3, 8))


def test_jax_export_round_trip_for_any_batch_and_size(tiny_model):
  model, variables = tiny_model
  deblurred = jax.export.deserialize(serialize.export(model, variables).serialize())
  reference = deblur.make_deblur_fn(model, variables)
  for shape in ((2, 20, 28, 3), (1, 21, 30, 3), (1, 5, 7, 3)):
    x = images(*shape)
    out = np.asarray(deblurred.call(x))
    assert out.shape == shape
    np.testing.assert_allclose(out, reference(x), atol=1e-6)


def test_tensorflow_saved_model_round_trip(tiny_model, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model, variables = tiny_model
  serialize.write_saved_model(model, variables, str(tmp_path / 'saved'))
  serve = tf.saved_model.load(str(tmp_path / 'saved')).signatures['serving_default']
  x = images(1, 19, 26, 3)
  (out,) = serve(images=tf.constant(x)).values()
  np.testing.assert_allclose(out.numpy(), deblur.make_deblur_fn(model, variables)(x),
                             atol=1e-5)
