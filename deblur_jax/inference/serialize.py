"""A checkpoint's model as a self-contained inference program: jax.export or a SavedModel.

Both take float32 NHWC images in [0, 1] (any batch, any height and width from
`min_side(model)` up: 4, or 5 for the GAN generator) and return the deblurred
images (clamped to [0, 1], same shape). A model whose computation is laid out by
the image size (EVSSM's scan windows: `sized_by_image`) is exported for one
height and width (`image_size`), any batch. Running the `jax.export.Exported`
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


def sized_by_image(model) -> bool:
  """Whether `model` lays its computation out by the image size (a class attribute),
  so that it exports for one size (`image_size`) only."""
  return getattr(type(model), 'sized_by_image', False)


def check_image_size(model, image_size) -> None:
  """An InputError unless `model` exports for `image_size` (H, W), or for any size
  (None)."""
  if image_size is None and sized_by_image(model):
    raise InputError(f'{type(model).__name__} lays out its computation by the image size '
                     '(its scan windows): export it for one size with --image_size=HxW, '
                     'e.g. 720x1280.')
  if image_size is not None and min(image_size) < min_side(model):
    raise InputError(f'--image_size={image_size[0]}x{image_size[1]}: {type(model).__name__} '
                     f'takes sides from {min_side(model)}.')


def _polymorphic_shape(model, image_size) -> tuple[str, tuple[str, ...]]:
  """(the input's shape spec, its constraints): any size, or `image_size` (H, W)."""
  check_image_size(model, image_size)
  if image_size is None:
    return IMAGE_SHAPE, image_constraints(model)
  height, width = image_size
  return f'b, {height}, {width}, 3', ()


def export(model, variables, platforms=None, image_size=None) -> jax.export.Exported:
  """The deblur_fn function exported for any image shape (or, with `image_size`
  (H, W), for that size and any batch), lowered for `platforms` (some of
  PLATFORMS; default: this machine's). An InputError naming the model if it cannot
  be written for symbolic image sizes."""
  spec, constraints = _polymorphic_shape(model, image_size)
  shape = jax.export.symbolic_shape(spec, constraints=constraints)
  try:
    return jax.export.export(deblur.make_deblur_fn(model, variables), platforms=platforms)(
        jax.ShapeDtypeStruct(shape, jnp.float32))
  except (jax.errors.InconclusiveDimensionOperation, TypeError, ValueError) as e:
    reason = str(e).strip().splitlines()[0]  # jax's explanations run to many lines
    raise InputError(f'{type(model).__name__} cannot be exported for any image size: '
                     f'{reason}') from e


def write_saved_model(model, variables, directory: str, image_size=None) -> None:
  """A TensorFlow SavedModel with a `serving_default` signature, through jax2tf (for
  `image_size` (H, W) only, as `export`, where given)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  spec, constraints = _polymorphic_shape(model, image_size)
  converted = jax2tf.convert(deblur.make_deblur_fn(model, variables), with_gradient=False,
                             polymorphic_shapes=[spec], polymorphic_constraints=constraints)
  height, width = image_size or (None, None)
  module = tf.Module()
  module.deblur_fn = tf.function(
      converted, autograph=False,
      input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name='images')])
  tf.saved_model.save(module, directory, signatures={'serving_default': module.deblur_fn})
