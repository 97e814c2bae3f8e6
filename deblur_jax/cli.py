"""What every command-line tool shares: flag parsing with one-line errors, and
running `main` so that bad input ends with 'Error: ...' and exit status 2."""

import logging as py_logging
import os
import sys
from typing import Callable

from absl import app, flags, logging

from deblur_jax import runtime
from deblur_jax.errors import REPORTED_ERRORS


def _make_config_siblings_importable(argv) -> None:
  """Config files import their siblings as `configs.NAME` (as the Flax examples
  do); put the folder that holds configs/ on the path, wherever we run from."""
  for arg in argv[1:]:
    if arg.startswith('--config='):
      config_file = arg[len('--config='):].split(':')[0]
      root = os.path.dirname(os.path.dirname(os.path.abspath(config_file)))
      if root not in sys.path:
        sys.path.insert(0, root)


def parse_flags(argv):
  """absl's parsing, with a one-line error for a bad flag or --config override."""
  _make_config_siblings_importable(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f'Error: {e}\nPass --helpfull to see the flags.', file=sys.stderr)
    sys.exit(2)
  except (AttributeError, ImportError, KeyError, TypeError, ValueError) as e:
    overrides = ' '.join(a for a in argv[1:] if a.startswith('--config.'))
    reason = e
    while isinstance(reason, BaseException) and reason.args:  # ml_collections nests KeyErrors
      reason = reason.args[0]
    reason = ' '.join(str(reason).split())
    where = f'cannot apply {overrides}' if overrides else 'bad --config'
    print(f'Error: {where}: {reason}', file=sys.stderr)
    sys.exit(2)


def define_checkpoint_flags(use: str) -> None:
  """--workdir, --checkpoint and --step: which checkpoint a tool `use`s ('load',
  'export'); resolve them with inference.checkpoint_location."""
  flags.DEFINE_string('workdir', None, f'Training directory: {use}s its latest checkpoint '
                      '(or --step).')
  flags.DEFINE_string('checkpoint', None,
                      'A checkpoint step directory, e.g. DIR/checkpoints/1600.')
  flags.DEFINE_integer('step', None, f'With --workdir: the checkpoint step to {use}.')


def _quiet_orbax_info(record) -> bool:
  """Orbax logs every file it writes at INFO; keep its warnings and errors only."""
  return record.levelno >= py_logging.WARNING or '/orbax/' not in record.pathname


def run(main: Callable[[list[str]], None], *, uses_tensorflow: bool = False) -> None:
  """`app.run(main)` after `runtime.configure_process` (TensorFlow kept off the
  accelerators when the tool `uses_tensorflow`); an InputError or TrainingError
  prints 'Error: ...' and exits with status 2."""
  runtime.configure_process(hide_accelerators=uses_tensorflow)

  def guarded_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    logging.get_absl_handler().addFilter(_quiet_orbax_info)
    try:
      main(argv)
    except REPORTED_ERRORS as e:
      logging.error('%s', e)
      print(f'Error: {e}', file=sys.stderr)
      sys.exit(2)

  app.run(guarded_main, flags_parser=parse_flags)
