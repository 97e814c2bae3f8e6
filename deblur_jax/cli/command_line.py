"""What every command-line tool shares: flag parsing with one-line errors, and
running `main` so that bad input ends with 'Error: ...' and exit status 2."""

import logging as py_logging
import os
import pathlib
import sys
from typing import Callable, Optional

from absl import app, flags, logging

from deblur_jax.cli import runtime
from deblur_jax.core.errors import REPORTED_ERRORS

SHIPPED_CONFIGS = 'configs'  # `--config=configs/NAME.py` names a file of deblur_jax/configs.


def shipped_configs_dir() -> str:
  """The folder of the configs that ship inside the package."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def shipped_config_files() -> list[str]:
  """`configs/NAME.py` of every shipped config (the modules with a `get_config`)."""
  return [f'{SHIPPED_CONFIGS}/{path.name}'
          for path in sorted(pathlib.Path(shipped_configs_dir()).glob('*.py'))
          if 'def get_config(' in path.read_text()]


def locate_config_files(argv: list[str]) -> list[str]:
  """`argv` with `--config=configs/NAME.py[:ARG]` pointed at the shipped config
  deblur_jax/configs/NAME.py, so the documented commands work from any folder; a
  file of that path in the current folder, or any other path, is taken as it is."""
  located = []
  for arg in argv:
    if arg.startswith('--config='):
      config_file, colon, variants = arg[len('--config='):].partition(':')
      if (not os.path.exists(config_file)
          and os.path.dirname(os.path.normpath(config_file)) == SHIPPED_CONFIGS):
        config_file = os.path.join(shipped_configs_dir(), os.path.basename(config_file))
        arg = f'--config={config_file}{colon}{variants}'
      if not os.path.isfile(config_file):
        raise FileNotFoundError(f'--config: there is no file {config_file} in {os.getcwd()}; '
                                f'the shipped configs are {shipped_config_files()}.')
    located.append(arg)
  return located


def config_label(config_file: str) -> str:
  """`--config`'s file (and :ARG) as the user names it: `configs/NAME.py` for a shipped one."""
  path, colon, arg = config_file.partition(':')
  if os.path.dirname(os.path.abspath(path)) == shipped_configs_dir():
    path = f'{SHIPPED_CONFIGS}/{os.path.basename(path)}'
  return f'{path}{colon}{arg}'


def parse_flags(argv):
  """absl's parsing, with a one-line error for a bad flag or --config override."""
  try:
    argv = locate_config_files(argv)
    return flags.FLAGS(argv)
  except FileNotFoundError as e:
    print(f'Error: {e}', file=sys.stderr)
    sys.exit(2)
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
  'export'); resolve them with core.checkpoints.checkpoint_location."""
  flags.DEFINE_string('workdir', None, f'Training directory: {use}s its latest checkpoint '
                      '(or --step).')
  flags.DEFINE_string('checkpoint', None,
                      'A checkpoint step directory, e.g. DIR/checkpoints/1600.')
  flags.DEFINE_integer('step', None, f'With --workdir: the checkpoint step to {use}.')


def _quiet_orbax_info(record) -> bool:
  """Orbax logs every file it writes at INFO; keep its warnings and errors only."""
  return record.levelno >= py_logging.WARNING or '/orbax/' not in record.pathname


def run(main: Callable[[list[str]], None], *, uses_tensorflow: bool = False,
        workload: Optional[runtime.Workload] = 'train') -> None:
  """`app.run(main)` after `runtime.configure_process` (XLA's CPU kernels chosen for
  `workload`, or by `main` itself when it is None; TensorFlow kept off the
  accelerators when the tool `uses_tensorflow`); an InputError or TrainingError
  prints 'Error: ...' and exits with status 2."""
  runtime.configure_process(workload=workload, hide_accelerators=uses_tensorflow)

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
