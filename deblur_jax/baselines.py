"""Scores classical deconvolution with the known kernel on a synthesized folder:

  python -m deblur_jax.baselines --data=synth/test --method=wiener --nsr=0.001 \
      --output=wiener.csv

prints the PSNR/SSIM of each blurred input and of its deconvolution against
the sharp image, then their means, and optionally writes them as CSV. The
methods are in deblur_jax.evaluation.baselines.
"""

import sys

from absl import flags

from deblur_jax import cli
from deblur_jax.errors import InputError
from deblur_jax.evaluation import baselines

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only when run as a program: other commands define --output too, and a
  test process may import them all."""
  flags.DEFINE_string('data', None, 'A folder written by deblur_jax.data.degrade.synthesize.')
  flags.DEFINE_enum('method', 'wiener', list(baselines.METHODS), 'The deconvolution.')
  flags.DEFINE_float('nsr', baselines.DEFAULT_NSR, 'Wiener: noise-to-signal power ratio.')
  flags.DEFINE_integer('num_iter', baselines.DEFAULT_NUM_ITER, 'Richardson-Lucy: iterations.')
  flags.DEFINE_string('output', None, 'Optional CSV file for the per-image and mean scores.')
  flags.mark_flags_as_required(['data'])


def main(_):
  if FLAGS.nsr < 0 or FLAGS.num_iter < 1:
    raise InputError(f'--nsr={FLAGS.nsr} must be >= 0 and --num_iter={FLAGS.num_iter} >= 1.')
  rows, skipped = baselines.evaluate(FLAGS.data, FLAGS.method, FLAGS.nsr, FLAGS.num_iter)
  print(baselines.format_table(rows, FLAGS.method))
  if FLAGS.output:
    baselines.write_csv(FLAGS.output, rows)
  if skipped:
    print(f'{len(skipped)} images skipped (see the warnings).', file=sys.stderr)
    raise SystemExit(1)


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
