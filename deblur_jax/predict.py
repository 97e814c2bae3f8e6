"""Deblur your own photos with a trained (or converted) checkpoint.

  python -m deblur_jax.predict --workdir=runs/mimo --input=photo.jpg --output=out/
  python -m deblur_jax.predict --checkpoint=runs/mimo/checkpoints/1600 --input=photos/ \
      --output=out/ --tile=512 --ensemble --compare

Any size and aspect ratio; 8/16-bit PNG, JPEG, gray and RGBA inputs; outputs are
lossless PNGs of the input's depth, colour and alpha (NAME.png under --output,
keeping the folder structure). The model is rebuilt from the config saved with
the checkpoint. A file that cannot be read is reported and skipped; the exit
status is then 1. Imports no TensorFlow.
"""

import os
import time

import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from deblur_jax import cli
from deblur_jax.data import image_files
from deblur_jax.errors import InputError
from deblur_jax.inference import deblur

FLAGS = flags.FLAGS
cli.define_checkpoint_flags('load')
flags.DEFINE_string('input', None, 'An image file or a folder of images (searched recursively).')
flags.DEFINE_string('output', None, 'Folder for the deblurred images.')
flags.DEFINE_integer('tile', 0, 'Run overlapping tiles of this size (a multiple of 64) on '
                     'images larger than it, to bound memory; 0 = whole images.')
flags.DEFINE_integer('tile_overlap', 32, 'Pixels shared by neighbouring tiles, blended.')
flags.DEFINE_integer('bucket', None, 'Image sides are padded up to multiples of this, so '
                     'that mixed sizes share compiled programs. Default: 64, or only what the '
                     'model needs for models whose statistics span the image (NAFNet), '
                     'whose output padding would change.')
flags.DEFINE_boolean('ensemble', False, 'Average over the four 90-degree rotations (4x slower).')
flags.DEFINE_boolean('compare', False, 'Also write NAME_compare.png: input | deblurred.')
flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
flags.mark_flags_as_required(['input', 'output'])


def output_path(output_dir: str, name: str, suffix: str = '') -> str:
  return os.path.join(output_dir, os.path.splitext(name)[0] + suffix + '.png')


def main(_):
  if os.path.isfile(FLAGS.output):
    raise InputError(f'--output={FLAGS.output!r} is a file; give a folder.')
  if FLAGS.tile and (FLAGS.tile % 64 or FLAGS.tile <= FLAGS.tile_overlap):
    raise InputError(f'--tile={FLAGS.tile} must be a multiple of 64 larger than '
                     f'--tile_overlap={FLAGS.tile_overlap}.')
  if FLAGS.bucket is not None and FLAGS.bucket < 1:
    raise InputError(f'--bucket={FLAGS.bucket} must be positive.')
  files = image_files.list_images(FLAGS.input)
  workdir, step = deblur.checkpoint_location(FLAGS.workdir, FLAGS.checkpoint,
                                                 FLAGS.step)
  model, variables, step = deblur.load_model(workdir, step, jnp.dtype(FLAGS.dtype))
  logging.info('Restoring %d images with %s from the checkpoint at step %d.', len(files),
               type(model).__name__, step)
  deblur_fn = deblur.make_deblur_fn(model, variables)
  bucket = deblur.size_bucket(model, FLAGS.bucket)
  failed = []
  for i, (path, name) in enumerate(files, 1):
    start = time.perf_counter()
    try:
      image = image_files.read_image(path)
    except InputError as e:
      logging.warning('[%d/%d] skipped: %s', i, len(files), e)
      failed.append(path)
      continue
    deblurred = deblur.deblur_image(deblur_fn, image.rgb, bucket=bucket, tile=FLAGS.tile,
                                       overlap=FLAGS.tile_overlap, ensemble=FLAGS.ensemble)
    image_files.write_image(output_path(FLAGS.output, name), deblurred, image)
    if FLAGS.compare:
      side_by_side = np.concatenate([image.rgb, deblurred], axis=1)
      image_files.write_image(output_path(FLAGS.output, name, '_compare'), side_by_side,
                           image_files.LoadedImage(side_by_side, 8, gray=False))
    logging.info('[%d/%d] %s (%dx%d) in %.2f s', i, len(files), name, image.rgb.shape[1],
                 image.rgb.shape[0], time.perf_counter() - start)
  logging.info('Wrote %d deblurred images to %s; %d skipped.', len(files) - len(failed),
               FLAGS.output, len(failed))
  if failed:
    raise SystemExit(1)


def run() -> None:
  """The console script's entry point."""
  cli.run(main)


if __name__ == '__main__':
  run()
