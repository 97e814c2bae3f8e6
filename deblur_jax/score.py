"""Scores any method's saved results the way the benchmark's own script does:

  python -m deblur_jax.score --results=DIR --data=DIR --protocol=realblur \
      [--test_list=FILE] [--output=DIR] [--workers=N] [--overwrite]

matches each result file to its ground truth by the benchmark's naming
(RealBlur's sceneNNN_blur_K.png against DATA/sceneNNN/gt/gt_K.png), scores the
pairs in `--workers` processes, writes scores.csv (one row per image) and
scores.json (means overall and per scene) to `--output` (default: the results
folder) and prints the means. Results without ground truth, listed images
without a result and images that cannot be scored are named, the rest scored,
and the exit status is 1. Protocols and layouts: deblur_jax.evaluation.scoring.
"""

import os
import sys

from absl import flags

from deblur_jax.cli import command_line
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import scoring

FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_string('results', None, 'Folder of result images (e.g. sceneNNN_blur_K.png).')
  flags.DEFINE_string('data', None, "The benchmark's folder (RealBlur: the scene folders).")
  flags.DEFINE_enum('protocol', None, list(scoring.PROTOCOLS), 'How to score.')
  flags.DEFINE_string('test_list', None, "The benchmark's test list (RealBlur_J_test_list.txt):"
                      ' every image in it must have a result.')
  flags.DEFINE_string('output', None, 'Folder for scores.csv and scores.json (default: '
                      '--results).')
  flags.DEFINE_integer('workers', os.cpu_count() or 1, 'Processes that score images.')
  flags.DEFINE_bool('overwrite', False, 'Replace existing scores.csv and scores.json.')
  flags.mark_flags_as_required(['results', 'data', 'protocol'])


def _report(scores: dict) -> str:
  means = scores['means']
  lines = [f"{scores['protocol']}: {means['count']} images"
           + ''.join(f', {k} {means[k]:.4f}' for k in ('psnr', 'ssim', 'input_psnr')
                     if k in means)]
  problems = (('no ground truth for', scores['unmatched_results']),
              ('no result for', scores['missing_results']),
              ('could not score', [f'{n} ({e})' for n, e in scores['failed'].items()]))
  for what, names in problems:
    if names:
      lines.append(f'{what} {len(names)}: ' + ', '.join(names))
  return '\n'.join(lines)


def main(_):
  output = FLAGS.output or FLAGS.results
  scoring.check_output(output, FLAGS.overwrite)
  if FLAGS.test_list is not None and not os.path.isfile(FLAGS.test_list):
    raise InputError(f'--test_list={FLAGS.test_list} is not a file.')
  pairs, unmatched, missing = scoring.match_results(FLAGS.results, FLAGS.data, FLAGS.test_list)
  if not pairs:
    raise InputError(f'--results={FLAGS.results} holds no image that matches a ground truth in '
                     f'--data={FLAGS.data} (RealBlur names: sceneNNN_blur_K.png).')
  rows = scoring.score_all(pairs, FLAGS.protocol, FLAGS.workers)
  scores = scoring.summary(rows, FLAGS.protocol, unmatched, missing)
  paths = scoring.write_scores(output, rows, scores)
  print(_report(scores))
  print('Wrote ' + ' and '.join(paths))
  if scores['failed'] or unmatched or missing:
    sys.exit(1)


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  command_line.run(main, workload=None)  # No JAX program: nothing to configure.


if __name__ == '__main__':
  run()
