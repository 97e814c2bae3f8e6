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

An output ending in .onnx writes an ONNX graph instead (the onnx extra: pip
install 'deblur_jax[onnx]'), for ONNX Runtime, OpenCV's DNN module and inference
servers: float32 N x 3 x H x W RGB in [0, 1] in and out, the model's padding
inside, checked in ONNX Runtime against the library before it is written:

  python -m deblur_jax.export --workdir=runs/mimo --output=mimo.onnx
  python -m deblur_jax.export --workdir=runs/unet --output=unet.onnx --image_size=720x1280
  python -m deblur_jax.export --workdir=runs/mimo --output=mimo16.onnx --dtype=float16

Height and width are dynamic (--image_size fixes them); every model but EVSSM
exports. docs/deployment.md has the table.

The library parts: deblur_jax.inference.serialize and onnx_graph.
"""

import os

from absl import flags, logging

from deblur_jax import models
from deblur_jax.cli import command_line
from deblur_jax.core import checkpoints, files
from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.inference import deblur, onnx_graph, serialize

FLAGS = flags.FLAGS
command_line.define_checkpoint_flags('export')
flags.DEFINE_string('output', None, 'The file to write: .jaxexport, or .onnx for an ONNX graph.')
flags.DEFINE_string('saved_model', None, 'Also write a TensorFlow SavedModel to this folder.')
flags.DEFINE_enum('dtype', 'float32', sorted(set(models.COMPUTE_DTYPES) | {'float16'}),
                  'Compute dtype: float32 or bfloat16; for .onnx float32 or float16 (weights '
                  'and compute, float32 input and output).')
flags.DEFINE_bool('overwrite', False, 'Replace an existing output file.')
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


def _check_output(path: str) -> None:
  """An InputError unless `path` names a new file (or --overwrite) in an existing folder."""
  if os.path.isdir(path):
    raise InputError(f'--output={path!r} is a folder; give a file name.')
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise InputError(f'--output={path!r}: the folder {folder} does not exist.')
  if os.path.exists(path) and not FLAGS.overwrite:
    raise InputError(f'--output={path!r} exists; pass --overwrite to replace it.')


def _write_onnx(workdir: str, step, image_size) -> None:
  """The ONNX graph of the checkpoint, checked in ONNX Runtime, then written."""
  for flag in ('platforms', 'saved_model'):
    if FLAGS[flag].value:
      raise InputError(f'--{flag} is for .jaxexport files, not ONNX graphs.')
  dtype = FLAGS.dtype
  if dtype not in onnx_graph.DTYPES:
    raise InputError(f'--dtype={dtype}: ONNX graphs are {" or ".join(onnx_graph.DTYPES)}.')
  model, variables, step = deblur.load_model(workdir, step)
  proto = onnx_graph.convert(model, variables, image_size, dtype, step)
  error = onnx_graph.check(proto, model, variables, image_size, dtype)
  proto.metadata_props.add(key='max_abs_difference_from_library', value=f'{error:.3g}')
  with files.atomic_write(FLAGS.output) as f:
    f.write(proto.SerializeToString())
  sizes = (f'images of {image_size[0]}x{image_size[1]}' if image_size else 'any image size')
  logging.info('Wrote %s: the checkpoint at step %d as a %s ONNX graph for %s, %d bytes; '
               'ONNX Runtime gives the library\'s output within %.3g.', FLAGS.output, step,
               dtype, sizes, os.path.getsize(FLAGS.output), error)


def main(_):
  _check_output(FLAGS.output)
  for platform in FLAGS.platforms or ():
    lookup(serialize.PLATFORMS, platform, '--platforms')
  image_size = _image_size(FLAGS.image_size)
  workdir, step = checkpoints.checkpoint_location(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
  if FLAGS.output.lower().endswith('.onnx'):
    _write_onnx(workdir, step, image_size)
    return
  if FLAGS.dtype not in models.COMPUTE_DTYPES:
    raise InputError(f'--dtype={FLAGS.dtype} is for ONNX graphs; a .jaxexport computes in '
                     f'{" or ".join(models.COMPUTE_DTYPES)}.')
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
