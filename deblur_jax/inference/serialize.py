"""A checkpoint's model as a self-contained inference program: jax.export or a SavedModel.

Both take float32 NHWC images in [0, 1] (any batch, any height and width from
`min_side(model)` up: 4, or 5 for the GAN generator) and return the deblurred
images (clamped to [0, 1], same shape). Running the `jax.export.Exported`
needs jax alone, not this library:

  exported = jax.export.deserialize(open('mimo.jaxexport', 'rb').read())
  deblurred = exported.call(images)
"""

import jax
import jax.numpy as jnp

from deblur_jax.core.errors import InputError
from deblur_jax.inference import deblur

# Any batch, height and width; the sides from min_side(model) up.
IMAGE_SHAPE = 'b, h, w, 3'
MIN_SIDE = 4  # Unless the model class says more (`min_side`).
# What jax.export lowers for (--platforms).
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')


def min_side(model) -> int:
  """The smallest image height and width the exported `model` takes."""
  return getattr(type(model), 'min_side', MIN_SIDE)


def image_constraints(model) -> tuple[str, str]:
  """jax.export's constraints on the symbolic sizes of IMAGE_SHAPE for `model`."""
  return (f'h >= {min_side(model)}', f'w >= {min_side(model)}')


def export(model, variables, platforms=None) -> jax.export.Exported:
  """The deblur_fn function exported for any image shape, lowered for `platforms`
  (some of PLATFORMS; default: this machine's). An InputError naming the model
  if it cannot be written for symbolic image sizes."""
  shape = jax.export.symbolic_shape(IMAGE_SHAPE, constraints=image_constraints(model))
  try:
    return jax.export.export(deblur.make_deblur_fn(model, variables), platforms=platforms)(
        jax.ShapeDtypeStruct(shape, jnp.float32))
  except (jax.errors.InconclusiveDimensionOperation, TypeError, ValueError) as e:
    reason = str(e).strip().splitlines()[0]  # jax's explanations run to many lines
    raise InputError(f'{type(model).__name__} cannot be exported for any image size: '
                     f'{reason}') from e


def write_saved_model(model, variables, directory: str) -> None:
  """A TensorFlow SavedModel with a `serving_default` signature, through jax2tf."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  converted = jax2tf.convert(deblur.make_deblur_fn(model, variables), with_gradient=False,
                             polymorphic_shapes=[IMAGE_SHAPE],
                             polymorphic_constraints=image_constraints(model))
  module = tf.Module()
  module.deblur_fn = tf.function(
      converted, autograph=False,
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name='images')])
  tf.saved_model.save(module, directory, signatures={'serving_default': module.deblur_fn})
