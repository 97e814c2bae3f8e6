"""Export a checkpoint as a self-contained inference program for deployment.

  python -m deblur_jax.export --workdir=runs/mimo --output=mimo.jaxexport
  python -m deblur_jax.export --workdir=runs/mimo --output=mimo.jaxexport \
      --saved_model=mimo_savedmodel          # also a TensorFlow SavedModel (jax2tf)

The .jaxexport file is a serialised `jax.export.Exported` with the weights
inside: float32 NHWC images in [0, 1] (any batch, any height and width from 4
up; 5 for the GAN generator) in, the deblurred images (clamped to [0, 1], same
shape) out, for every model. EVSSM, whose scan windows are laid out by the image
size, exports for one size: --image_size=HxW (any batch). Running it needs jax
alone, not this library:

  exported = jax.export.deserialize(open('mimo.jaxexport', 'rb').read())
  deblurred = exported.call(images)

The library part: deblur_jax.inference.serialize.
"""

import os

from absl import flags, logging

from deblur_jax import models
from deblur_jax.cli import command_line
from deblur_jax.core import checkpoints, files
from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.inference import deblur, serialize

FLAGS = flags.FLAGS
command_line.define_checkpoint_flags('export')
flags.DEFINE_string('output', None, 'The .jaxexport file to write.')
flags.DEFINE_string('saved_model', None, 'Also write a TensorFlow SavedModel to this folder.')
flags.DEFINE_enum('dtype', 'float32', list(models.COMPUTE_DTYPES), 'Compute dtype.')
flags.DEFINE_list('platforms', None, "Platforms to lower for, e.g. 'cpu,cuda' (default: this "
                  f"machine's); any of {', '.join(serialize.PLATFORMS)}.")
flags.DEFINE_string('image_size', None, 'HxW, e.g. 720x1280: export for this image size '
                    '(any batch) instead of any size; needed by EVSSM, whose scan windows '
                    'are laid out by the image size.')
flags.mark_flags_as_required(['output'])


def _image_size(text):
  """(H, W) of --image_size, or None."""
  if text is None:
    return None
  parts = text.lower().split('x')
  if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
    raise InputError(f'--image_size={text!r} must be HEIGHTxWIDTH, e.g. 720x1280.')
  return int(parts[0]), int(parts[1])


def main(_):
  if os.path.isdir(FLAGS.output):
    raise InputError(f'--output={FLAGS.output!r} is a folder; give a file name.')
  for platform in FLAGS.platforms or ():
    lookup(serialize.PLATFORMS, platform, '--platforms')
  image_size = _image_size(FLAGS.image_size)
  workdir, step = checkpoints.checkpoint_location(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
  model, variables, step = deblur.load_model(workdir, step, models.compute_dtype(FLAGS.dtype))
  exported = serialize.export(model, variables, FLAGS.platforms, image_size)
  with files.atomic_write(FLAGS.output) as f:
    f.write(exported.serialize())
  sizes = (f'images of {image_size[0]}x{image_size[1]}' if image_size else
           f'images from {serialize.min_side(model)}x{serialize.min_side(model)} up')
  logging.info('Wrote %s: the checkpoint at step %d for %s, %s, %d bytes.', FLAGS.output, step,
               exported.platforms, sizes, os.path.getsize(FLAGS.output))
  if FLAGS.saved_model:
    serialize.write_saved_model(model, variables, FLAGS.saved_model, image_size)
    logging.info('Wrote the SavedModel %s.', FLAGS.saved_model)


def run() -> None:
  """The console script's entry point."""
  command_line.run(main, workload='inference')


if __name__ == '__main__':
  run()
