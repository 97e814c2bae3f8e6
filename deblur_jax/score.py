"""Scores any method's saved results the way the benchmark's own script does:

  python -m deblur_jax.score --results=DIR --data=DIR --protocol=NAME \
      [--test_list=FILE] [--output=DIR] [--workers=N] [--overwrite]
  python -m deblur_jax.score --output=DIR [--method=NAME] \
      --benchmark=NAME,PROTOCOL,RESULTS,DATA[,TEST_LIST] --benchmark=...
  python -m deblur_jax.score --workdir=DIR [--step=N] [--output=DIR] \
      --benchmark=NAME,PROTOCOL,DATA[,TEST_LIST] --benchmark=...

finds the benchmark's layout in --data (RealBlur's scene folders, the Restormer /
DPDD target/ folder, HIDE's GT/, GoPro's sequences), matches each result file to
its ground truth by the benchmark's naming, scores the pairs under the protocol,
writes scores.csv (one row per image) and scores.json (means overall and per
group) to `--output` (default: the results folder) and prints the means. Results
without ground truth, targets without a result and images that cannot be scored
are named, the rest scored, and the exit status is 1. Layouts and protocols:
deblur_jax.evaluation.scoring.

With --benchmark (repeated), each benchmark's results are scored under its own
protocol into DIR/NAME/scores.{csv,json}, and DIR/table.md and DIR/table.tex
hold a paper's table: PSNR and SSIM per benchmark, the protocol under each.
With a checkpoint (--workdir or --checkpoint) instead of RESULTS, its model first
restores each benchmark's blurred inputs into DIR/NAME/results/ (PNGs, padded
only to the model's own multiple, as the official test scripts pad); DIR defaults
to WORKDIR/eval/step_N_benchmarks/, and the results page of the step, where it
was evaluated (--mode=eval), is written again with links to the tables.
"""

import functools
import os
import shutil
import sys

from absl import flags, logging

from deblur_jax.cli import command_line, runtime
from deblur_jax.core import checkpoints, files
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import results_page, scoring, tables
from deblur_jax.inference import deblur, photos

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
  flags.DEFINE_bool('overwrite', False, 'Replace existing score and table files.')
  flags.DEFINE_multi_string('benchmark', [], 'NAME,PROTOCOL,RESULTS,DATA[,TEST_LIST]: one '
                            "column of a paper's table (with --output; instead of --results, "
                            '--data and --protocol); with a checkpoint NAME,PROTOCOL,DATA'
                            '[,TEST_LIST], its results made first.')
  flags.DEFINE_string('method', None, "The table's row name (default: --output's name, or "
                      "the checkpoint's model).")
  command_line.define_checkpoint_flags('score')


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


def _parse_benchmark(text: str, with_results: bool) -> tuple[str, str, str, str | None]:
  """(name, protocol, results folder or '' where a checkpoint makes them, data,
  test list or None) of one --benchmark."""
  form = ('NAME,PROTOCOL,RESULTS,DATA[,TEST_LIST]' if with_results else
          'NAME,PROTOCOL,DATA[,TEST_LIST] (the checkpoint makes the results)')
  fields = text.split(',')
  if not with_results:
    fields.insert(2, '-')
  if len(fields) not in (4, 5) or not all(fields):
    raise InputError(f'--benchmark={text!r} must be {form}.')
  if fields[1] not in scoring.PROTOCOLS:
    raise InputError(f'--benchmark={text!r}: unknown protocol {fields[1]!r}; choose one of '
                     f'{sorted(scoring.PROTOCOLS)}.')
  return (*fields, None) if len(fields) == 4 else tuple(fields)


def _matched(field: str, results: str, data: str, test_list: str | None):
  """scoring.match_results, with one-line errors for what it cannot start from."""
  if test_list is not None and not os.path.isfile(test_list):
    raise InputError(f'{field}: the test list {test_list} is not a file.')
  layout, pairs, unmatched, missing = scoring.match_results(results, data, test_list)
  if not pairs:
    raise InputError(f'{field}: {results} holds no image that matches a ground truth in '
                     f'{data} ({layout} layout; see docs/evaluation.md).')
  return layout, pairs, unmatched, missing


def _score(protocol: str, matched) -> tuple[list[dict], dict]:
  layout, pairs, unmatched, missing = matched
  rows = scoring.score_all(pairs, protocol, FLAGS.workers)
  return rows, scoring.summary(rows, protocol, layout, unmatched, missing)


def _incomplete(scores: dict) -> bool:
  return bool(scores['failed'] or scores['unmatched_results'] or scores['missing_results'])


def _check_absent(path: str) -> None:
  if os.path.exists(path) and not FLAGS.overwrite:
    raise InputError(f'{path} exists; pass --overwrite to replace it.')


def _restore_benchmarks(benchmarks: list, output: str, model, variables) -> list:
  """Each benchmark with its results folder: the model's restorations of its
  blurred inputs, written to OUTPUT/NAME/results/ at the inputs' relative paths."""
  inputs = [scoring.benchmark_inputs(data, test_list)  # All checked before any runs.
            for _, _, _, data, test_list in benchmarks]
  deblur_fn = functools.partial(deblur.deblur_image, deblur.make_deblur_fn(model, variables),
                                bucket=deblur.size_bucket(model, 1))
  made = []
  for (name, protocol, _, data, test_list), images in zip(benchmarks, inputs):
    results = os.path.join(output, name, 'results')
    logging.info('%s: restoring %d images into %s.', name, len(images), results)
    if os.path.isdir(results):  # --overwrite: the results of an earlier run go whole.
      shutil.rmtree(results)
    summary = photos.deblur_photos(images, results, deblur_fn)
    if summary.skipped:
      raise InputError(f'--benchmark={name}: {len(summary.skipped)} inputs could not be '
                       f'restored, e.g. {summary.skipped[0][0]}: {summary.skipped[0][1]}.')
    made.append((name, protocol, results, data, test_list))
  return made


def _table(_) -> None:
  if FLAGS.results or FLAGS.data or FLAGS.protocol or FLAGS.test_list:
    raise InputError('--benchmark replaces --results, --data, --protocol and --test_list.')
  from_checkpoint = bool(FLAGS.workdir or FLAGS.checkpoint)
  if not FLAGS.output and not from_checkpoint:
    raise InputError('--benchmark needs --output, the folder for the table and its scores '
                     '(or a checkpoint: --workdir or --checkpoint).')
  benchmarks = [_parse_benchmark(text, not from_checkpoint) for text in FLAGS.benchmark]
  names = [b[0] for b in benchmarks]
  if len(set(names)) < len(names):
    raise InputError(f'--benchmark names repeat: {names}.')
  output, method, workdir = FLAGS.output, FLAGS.method, None
  if from_checkpoint:
    workdir, step = checkpoints.checkpoint_location(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
    model, variables, step = deblur.load_model(workdir, step)
    output = output or results_page.benchmarks_dir(workdir, step)
    method = method or type(model).__name__
  for name in names:  # Everything checked before anything is scored or written.
    scoring.check_output(os.path.join(output, name), FLAGS.overwrite)
    if from_checkpoint:
      _check_absent(os.path.join(output, name, 'results'))
  for table_file in tables.TABLE_FILES:
    _check_absent(os.path.join(output, table_file))
  if from_checkpoint:
    benchmarks = _restore_benchmarks(benchmarks, output, model, variables)
  matched = [_matched(f'--benchmark={name}', results, data, test_list)
             for name, _, results, data, test_list in benchmarks]
  scored = [_score(b[1], m) for b, m in zip(benchmarks, matched)]
  summaries = []
  for name, (rows, scores) in zip(names, scored):
    scoring.write_scores(os.path.join(output, name), rows, scores)
    summaries.append((name, scores))
    print(f'{name}: ' + _report(scores))
  method = method or os.path.basename(os.path.normpath(output))
  texts = (tables.markdown(method, summaries), tables.latex(method, summaries))
  for table_file, text in zip(tables.TABLE_FILES, texts):
    with files.atomic_write(os.path.join(output, table_file), 'w') as f:
      f.write(text)
  print(texts[0], end='')
  print(f'Wrote {output}/table.md, table.tex and NAME/scores.csv, scores.json for '
        f'{", ".join(names)}')
  if from_checkpoint and step in results_page.evaluated_steps(workdir):
    runtime.hide_accelerators_from_tensorflow()  # The page reads the run's event files.
    print(f'Linked from the results page {results_page.write_page(workdir, step)}')
  if any(_incomplete(scores) for _, scores in summaries):
    sys.exit(1)


def main(argv):
  if FLAGS.benchmark:
    return _table(argv)
  if FLAGS.workdir or FLAGS.checkpoint:
    raise InputError('A checkpoint (--workdir, --checkpoint) is scored through --benchmark.')
  missing_flags = [f'--{f}' for f in ('results', 'data', 'protocol') if not FLAGS[f].value]
  if missing_flags:
    raise InputError(f'Pass {", ".join(missing_flags)} (or --benchmark, repeated, for a table).')
  output = FLAGS.output or FLAGS.results
  scoring.check_output(output, FLAGS.overwrite)
  rows, scores = _score(FLAGS.protocol, _matched('--results', FLAGS.results, FLAGS.data,
                                                 FLAGS.test_list))
  paths = scoring.write_scores(output, rows, scores)
  print(_report(scores))
  print('Wrote ' + ' and '.join(paths))
  if _incomplete(scores):
    sys.exit(1)


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  command_line.run(main, workload='inference')


if __name__ == '__main__':
  run()
