"""Writes the results page of an evaluated step from its files:

  python -m deblur_jax.report --workdir=DIR [--step=N]

builds DIR/eval/step_N.html (default: the latest evaluated step) from
step_N.csv, step_N.json, the comparison images saved beside them and the run's
TensorBoard event files, and prints its path. Every evaluation writes its page;
this writes it again, e.g. with the training curves up to now. The page is made
in deblur_jax.evaluation.results_page.
"""

from absl import flags

from deblur_jax.cli import command_line
from deblur_jax.evaluation import results_page

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only when run as a program: other commands define --workdir and --step too, and a
  test process may import them all."""
  flags.DEFINE_string('workdir', None, 'Training directory whose eval/ folder holds results.')
  flags.DEFINE_integer('step', None, 'The evaluated step; default: the latest.')
  flags.mark_flags_as_required(['workdir'])


def main(_):
  print(results_page.write_page(FLAGS.workdir, FLAGS.step))


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  command_line.run(main, uses_tensorflow=True)


if __name__ == '__main__':
  run()
