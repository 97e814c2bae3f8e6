"""Export a checkpoint as a self-contained inference program for deployment.

  python -m deblur_jax.export --workdir=runs/mimo --output=mimo.jaxexport
  python -m deblur_jax.export --workdir=runs/mimo --output=mimo.jaxexport \
      --saved_model=mimo_savedmodel          # also a TensorFlow SavedModel (jax2tf)

The .jaxexport file is a serialised `jax.export.Exported` with the weights
inside: float32 NHWC images (any batch, any height and width >= 4) in [0, 1]
in, the deblurred images (clamped to [0, 1], same shape) out. Running it needs
jax alone, not this library:

  exported = jax.export.deserialize(open('mimo.jaxexport', 'rb').read())
  deblurred = exported.call(images)
"""

import os

import jax
import jax.numpy as jnp
from absl import flags, logging

from deblur_jax import cli
from deblur_jax.errors import InputError
from deblur_jax.inference import deblur

FLAGS = flags.FLAGS
cli.define_checkpoint_flags('export')
flags.DEFINE_string('output', None, 'The .jaxexport file to write.')
flags.DEFINE_string('saved_model', None, 'Also write a TensorFlow SavedModel to this folder.')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
flags.DEFINE_list('platforms', None, "Platforms to lower for, e.g. 'cpu,cuda' (default: this "
                  "machine's).")
flags.mark_flags_as_required(['output'])

# Any batch; any height and width from 4 up.
IMAGE_SHAPE = 'b, h, w, 3'
IMAGE_CONSTRAINTS = ('h >= 4', 'w >= 4')


def export(model, variables, platforms=None) -> jax.export.Exported:
  """The deblur_fn function exported for any image shape."""
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


def main(_):
  if os.path.isdir(FLAGS.output):
    raise InputError(f'--output={FLAGS.output!r} is a folder; give a file name.')
  workdir, step = deblur.checkpoint_location(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
  model, variables, step = deblur.load_model(workdir, step, jnp.dtype(FLAGS.dtype))
  exported = export(model, variables, FLAGS.platforms)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  with open(FLAGS.output, 'wb') as f:
    f.write(exported.serialize())
  logging.info('Wrote %s: the checkpoint at step %d for %s, %d bytes.', FLAGS.output, step,
               exported.platforms, os.path.getsize(FLAGS.output))
  if FLAGS.saved_model:
    write_saved_model(model, variables, FLAGS.saved_model)
    logging.info('Wrote the SavedModel %s.', FLAGS.saved_model)


def run() -> None:
  """The console script's entry point."""
  cli.run(main)


if __name__ == '__main__':
  run()
