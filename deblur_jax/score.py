"""Scores any method's saved results the way the benchmark's own script does:

  python -m deblur_jax.score --results=DIR --data=DIR --protocol=NAME \
      [--test_list=FILE] [--output=DIR] [--workers=N] [--overwrite]

finds the benchmark's layout in --data (RealBlur's scene folders, the Restormer /
DPDD target/ folder, HIDE's GT/, GoPro's sequences), matches each result file to
its ground truth by the benchmark's naming, scores the pairs under the protocol,
writes scores.csv (one row per image) and scores.json (means overall and per
group) to `--output` (default: the results folder) and prints the means. Results
without ground truth, targets without a result and images that cannot be scored
are named, the rest scored, and the exit status is 1. Layouts and protocols:
deblur_jax.evaluation.scoring.
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
  flags.DEFINE_string('data', None, "The benchmark's ground truth: RealBlur's scene folders, a "
                      'folder with target/ (Restormer, DPDD), HIDE with GT/, GoPro test/.')
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
  lines = [f"{scores['protocol']} ({scores['layout']} layout): {means['count']} images"
           + ''.join(f', {k} {means[k]:.4f}' for k in ('psnr', 'ssim', 'mae', 'input_psnr')
                     if k in means)]
  lines += [f"  {group}: {values['count']} images, psnr {values['psnr']:.4f}, ssim "
            f"{values['ssim']:.4f}" for group, values in scores['groups'].items()]
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
  layout, pairs, unmatched, missing = scoring.match_results(FLAGS.results, FLAGS.data,
                                                            FLAGS.test_list)
  if not pairs:
    raise InputError(f'--results={FLAGS.results} holds no image that matches a ground truth in '
                     f'--data={FLAGS.data} ({layout} layout; see docs/evaluation.md).')
  rows = scoring.score_all(pairs, FLAGS.protocol, FLAGS.workers)
  scores = scoring.summary(rows, FLAGS.protocol, layout, unmatched, missing)
  paths = scoring.write_scores(output, rows, scores)
  print(_report(scores))
  print('Wrote ' + ' and '.join(paths))
  if scores['failed'] or unmatched or missing:
    sys.exit(1)


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  command_line.run(main, workload='inference')


if __name__ == '__main__':
  run()
