"""Exported inference programs give the same images as the library, at any size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deblur_jax import models
from deblur_jax.configs import mimo
from deblur_jax.inference import deblur, serialize


@pytest.fixture(scope='module')
def tiny_model():
  model = models.build_model(mimo.get_config('tiny').model)
  init = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False))
  return model, init()


def images(*shape):
  return np.random.default_rng(0).uniform(size=shape).astype(np.float32)


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
