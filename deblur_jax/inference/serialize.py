"""A checkpoint's model as a self-contained inference program: jax.export or a SavedModel.

Both take float32 NHWC images in [0, 1] (any batch, any height and width >= 4)
and return the deblurred images (clamped to [0, 1], same shape). Running the
`jax.export.Exported` needs jax alone, not this library:

  exported = jax.export.deserialize(open('mimo.jaxexport', 'rb').read())
  deblurred = exported.call(images)
"""

import jax
import jax.numpy as jnp

from deblur_jax.inference import deblur

# Any batch; any height and width from 4 up.
IMAGE_SHAPE = 'b, h, w, 3'
IMAGE_CONSTRAINTS = ('h >= 4', 'w >= 4')


def export(model, variables, platforms=None) -> jax.export.Exported:
  """The deblur_fn function exported for any image shape, lowered for `platforms`
  (e.g. ['cpu', 'cuda']; default: this machine's)."""
  shape = jax.export.symbolic_shape(IMAGE_SHAPE, constraints=IMAGE_CONSTRAINTS)
  return jax.export.export(deblur.make_deblur_fn(model, variables), platforms=platforms)(
      jax.ShapeDtypeStruct(shape, jnp.float32))


def write_saved_model(model, variables, directory: str) -> None:
  """A TensorFlow SavedModel with a `serving_default` signature, through jax2tf."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  converted = jax2tf.convert(deblur.make_deblur_fn(model, variables), with_gradient=False,
                             polymorphic_shapes=[IMAGE_SHAPE],
                             polymorphic_constraints=IMAGE_CONSTRAINTS)
  module = tf.Module()
  module.deblur_fn = tf.function(
      converted, autograph=False,
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name='images')])
  tf.saved_model.save(module, directory, signatures={'serving_default': module.deblur_fn})
