"""What every command-line tool shares: flag parsing with one-line errors, and
running `main` so that bad input ends with 'Error: ...' and exit status 2."""

import importlib
import importlib.util
import logging as py_logging
import os
import sys
from typing import Callable, Optional

from absl import app, flags, logging

from deblur_jax.cli import runtime
from deblur_jax.core.errors import REPORTED_ERRORS


def _installed_configs_dir() -> str | None:
  """Where `pip install` put the shipped configs/ folder (as deblur_jax.configs)."""
  spec = importlib.util.find_spec('deblur_jax.configs')
  return list(spec.submodule_search_locations)[0] if spec else None


def locate_config_files(argv: list[str]) -> list[str]:
  """`argv` with `--config=configs/NAME.py[:variants]` pointed at the shipped config
  when no such file exists here, so the documented commands work from any folder
  once the package is installed; and the config's siblings made importable.

  Config files import their siblings as `configs.NAME` (as the Flax examples do):
  the folder above configs/ goes on the path, or, for the installed copy, the name
  `configs` is bound to the package deblur_jax.configs.
  """
  located = []
  for arg in argv:
    if arg.startswith('--config='):
      config_file, colon, variants = arg[len('--config='):].partition(':')
      installed = _installed_configs_dir()
      if (not os.path.exists(config_file) and installed
          and os.path.dirname(os.path.normpath(config_file)) == 'configs'):
        candidate = os.path.join(installed, os.path.basename(config_file))
        if os.path.isfile(candidate):
          config_file = candidate
          arg = f'--config={config_file}{colon}{variants}'
      if not os.path.isfile(config_file):
        shipped = f' nor among the shipped configs in {installed}' if installed else ''
        raise FileNotFoundError(f'--config: there is no file {config_file} in {os.getcwd()}'
                                f'{shipped}.')
      _make_siblings_importable(config_file, installed)
    located.append(arg)
  return located


def _make_siblings_importable(config_file: str, installed_dir: str | None) -> None:
  config_dir = os.path.dirname(os.path.abspath(config_file))
  if installed_dir and os.path.isdir(config_dir) and os.path.samefile(config_dir,
                                                                    installed_dir):
    sys.modules.setdefault('configs', importlib.import_module('deblur_jax.configs'))
    return
  root = os.path.dirname(config_dir)
  if root not in sys.path:
    sys.path.insert(0, root)


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
