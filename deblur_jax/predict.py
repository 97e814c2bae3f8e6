"""Deblur your own photos with a trained (or converted) checkpoint.

  python -m deblur_jax.predict --workdir=runs/mimo --input=photo.jpg --output=out/
  python -m deblur_jax.predict --checkpoint=runs/mimo/checkpoints/1600 --input=photos/ \
      --output=out/ --tile=512 --ensemble --compare --format=same

Reads JPEG, PNG, TIFF, WebP and BMP files of any size (8 or 16 bit; gray,
palette, RGBA; CMYK JPEGs), upright as viewers show them (EXIF orientation
applied), and writes each result under --output with the input's relative
name, size, bit depth, alpha and colour profile: a lossless PNG, or with
--format=same the input's own format (inference/photos.py). The model is
rebuilt from the config saved with the checkpoint. A file that cannot be read
is reported and skipped, the others are still written, and the exit status is
then 1. Imports no TensorFlow.
"""

import functools

from absl import flags, logging

from deblur_jax import models
from deblur_jax.cli import command_line
from deblur_jax.core import checkpoints
from deblur_jax.data import image_files
from deblur_jax.inference import deblur, photos

FLAGS = flags.FLAGS
command_line.define_checkpoint_flags('load')
flags.DEFINE_string('input', None, 'An image file or a folder of images (searched recursively).')
flags.DEFINE_string('output', None, 'Folder for the deblurred images.')
flags.DEFINE_enum('format', 'png', photos.FILE_FORMATS,
                  'png: lossless PNGs, 16-bit for 16-bit inputs. same: the input\'s own format '
                  'and file name: JPEG at --jpeg_quality (lossy), PNG, TIFF (deflate, 16-bit '
                  'kept), WebP (lossless) and BMP.')
flags.DEFINE_integer('jpeg_quality', 95, 'With --format=same: the quality (1-100) JPEG inputs '
                     'are written at, with full-resolution colour (4:4:4). JPEG is lossy.')
flags.DEFINE_integer('tile', 0, 'Run overlapping tiles of this size (a multiple of the '
                     'padding bucket: 64, or 8 for Restormer, 32 for FFTformer) on images '
                     'larger than it, to bound memory; 0 = whole images.')
flags.DEFINE_integer('tile_overlap', 32, 'Pixels shared by neighbouring tiles, blended.')
flags.DEFINE_integer('bucket', None, 'Image sides are padded up to multiples of this, so '
                     'that mixed sizes share compiled programs. Default: 64, or only what the '
                     'model needs where more padding would change the output (NAFNet, '
                     'Restormer, FFTformer), as their official test scripts pad.')
flags.DEFINE_boolean('ensemble', False, 'Average over the four 90-degree rotations (4x slower).')
flags.DEFINE_boolean('compare', False, 'Also write NAME_compare.png: input | deblurred.')
flags.DEFINE_enum('dtype', 'float32', list(models.COMPUTE_DTYPES), 'Compute dtype.')
flags.mark_flags_as_required(['input', 'output'])


def main(_):
  photos.check_options(FLAGS.output, file_format=FLAGS.format, jpeg_quality=FLAGS.jpeg_quality,
                       tile=FLAGS.tile, tile_overlap=FLAGS.tile_overlap, bucket=FLAGS.bucket)
  files = image_files.list_images(FLAGS.input, extensions=image_files.PHOTO_EXTENSIONS)
  workdir, step = checkpoints.checkpoint_location(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
  model, variables, step = deblur.load_model(workdir, step, models.compute_dtype(FLAGS.dtype))
  logging.info('Deblurring %d images with %s from the checkpoint at step %d.', len(files),
               type(model).__name__, step)
  bucket = deblur.size_bucket(model, FLAGS.bucket)
  if FLAGS.tile:
    logging.info(deblur.check_tile(model, FLAGS.tile, bucket))
  deblur_fn = functools.partial(
      deblur.deblur_image, deblur.make_deblur_fn(model, variables), bucket=bucket, tile=FLAGS.tile,
      overlap=FLAGS.tile_overlap, ensemble=FLAGS.ensemble)
  summary = photos.deblur_photos(files, FLAGS.output, deblur_fn, file_format=FLAGS.format,
                                 jpeg_quality=FLAGS.jpeg_quality, compare=FLAGS.compare)
  if summary.skipped:
    logging.error('Exit status 1: %d of %d images were not written (listed above).',
                  len(summary.skipped), len(files))
    raise SystemExit(1)


def run() -> None:
  """The console script's entry point."""
  command_line.run(main, workload='inference')


if __name__ == '__main__':
  run()
