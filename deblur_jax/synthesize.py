"""Make a paired dataset from a folder of sharp images by synthetic blur.

  python -m deblur_jax.synthesize --input=photos/ --output=synth/test \
      --kernels=gauss7,shake --noise_sigma=0,0.01 --jpeg_quality=0 --seed=0

(or `deblur-synthesize` once
installed) writes OUTPUT/{sharp,blur}/NAME.png, OUTPUT/kernels/NAME.npy and
OUTPUT/manifest.json for every image under --input, as described in
deblur_jax.data.degrade.degrade_folder. A file that cannot be read is reported and
skipped (exit status 1). Imports neither TensorFlow nor JAX.
"""

from absl import flags, logging

from deblur_jax.cli import command_line
from deblur_jax.core.errors import InputError
from deblur_jax.data.degrade import degradations, degrade_folder, kernels

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Called by `run` only: other commands define --input and --output too, and a
  test process may import them all."""
  flags.DEFINE_string('input', None, 'A folder of sharp images (searched recursively) or one '
                      'image.')
  flags.DEFINE_string('output', None, 'Folder to write blur/, sharp/, kernels/ and '
                      'manifest.json into.')
  flags.DEFINE_list('kernels', ['gauss7', 'shake'], 'Kernel families, one picked at random '
                    f'per image: {",".join(kernels.KERNEL_FAMILIES)}.')
  flags.DEFINE_integer('kernel_size', 0, 'Odd kernel side; 0 = each family\'s default '
                       f'(Gaussians their own, others {kernels.DEFAULT_KERNEL_SIZE}).')
  flags.DEFINE_list('noise_sigma', ['0'], 'Standard deviation of Gaussian noise on [0, 1] '
                    'intensities, or a LOW,HIGH range drawn uniformly per image.')
  flags.DEFINE_list('jpeg_quality', ['0'], 'JPEG quality 1-100 of a final JPEG round trip, '
                    'or a LOW,HIGH range; 0 = none.')
  flags.DEFINE_integer('seed', 0, 'Seed: the same seed and names give the same blur.')
  flags.mark_flags_as_required(['input', 'output'])


def main(_):
  spec = degradations.SyntheticBlur(
      kernels=tuple(k.strip() for k in FLAGS.kernels),
      kernel_size=FLAGS.kernel_size or None,
      noise_sigma=degradations.parse_range(FLAGS.noise_sigma, '--noise_sigma', float),
      jpeg_quality=degradations.parse_range(FLAGS.jpeg_quality, '--jpeg_quality', int))
  if FLAGS.seed < 0:
    raise InputError(f'--seed={FLAGS.seed} must not be negative.')
  summary = degrade_folder.synthesize(FLAGS.input, FLAGS.output, spec, FLAGS.seed)
  logging.info('Wrote %d pairs to %s; %d skipped.', len(summary.written), FLAGS.output,
               len(summary.skipped))
  print(f'Wrote {len(summary.written)} pairs to {FLAGS.output}'
        + (f'; skipped {len(summary.skipped)}: '
           + ', '.join(p for p, _ in summary.skipped) if summary.skipped else '') + '.')
  if summary.skipped:
    raise SystemExit(1)


def run() -> None:
  """The command (console script `deblur-synthesize`)."""
  define_flags()
  command_line.run(main)


if __name__ == '__main__':
  run()
