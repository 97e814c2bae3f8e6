"""Scores classical deconvolution with the known kernel on a synthesized folder:

  python -m deblur_jax.baselines --data=synth/test --method=wiener --nsr=0.001 \
      --output=wiener.csv

prints the PSNR/SSIM of each blurred input and of its deconvolution against
the sharp image, then their means, and optionally writes them as CSV. The
methods are in deblur_jax.evaluation.classical_deconvolution.
"""

import sys

from absl import flags

from deblur_jax.cli import command_line
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import classical_deconvolution

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only when run as a program: other commands define --output too, and a
  test process may import them all."""
  flags.DEFINE_string('data', None, 'A folder written by deblur_jax.data.degrade.degrade_folder.')
  flags.DEFINE_enum('method', 'wiener', list(classical_deconvolution.METHODS), 'The deconvolution.')
  flags.DEFINE_float('nsr', classical_deconvolution.DEFAULT_NSR,
                    'Wiener: noise-to-signal power ratio.')
  flags.DEFINE_integer('num_iter', classical_deconvolution.DEFAULT_NUM_ITER,
                      'Richardson-Lucy: iterations.')
  flags.DEFINE_string('output', None, 'Optional CSV file for the per-image and mean scores.')
  flags.mark_flags_as_required(['data'])


def main(_):
  if FLAGS.nsr < 0 or FLAGS.num_iter < 1:
    raise InputError(f'--nsr={FLAGS.nsr} must be >= 0 and --num_iter={FLAGS.num_iter} >= 1.')
  rows, skipped = classical_deconvolution.evaluate(FLAGS.data, FLAGS.method, FLAGS.nsr,
                                                   FLAGS.num_iter)
  print(classical_deconvolution.format_table(rows, FLAGS.method))
  if FLAGS.output:
    classical_deconvolution.write_csv(FLAGS.output, rows)
  if skipped:
    print(f'{len(skipped)} images skipped (see the warnings).', file=sys.stderr)
    raise SystemExit(1)


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  command_line.run(main)


if __name__ == '__main__':
  run()
