"""Train or evaluate a deblurring model.

  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR
  python -m deblur_jax.main --config=configs/mimo.py:plus --workdir=DIR \
      --config.data.dir=/data/GOPRO_Large
  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR --mode=eval

Run again on the same DIR to resume from its latest checkpoint.
"""

import logging as py_logging
import os
import sys

# Quiet TensorFlow's C++ start-up banner; the data pipeline imports it.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from deblur_jax.errors import InputError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and evaluation results.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                  "'train' trains (resuming from DIR) and evaluates periodically; 'eval' "
                  'evaluates a checkpoint and writes per-image results into DIR/eval.')
config_flags.DEFINE_config_file('config', None, 'Configuration file (and :variant).',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def _quiet_orbax_info(record) -> bool:
  """Orbax logs every file it writes at INFO; keep its warnings and errors only."""
  return record.levelno >= py_logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_handler().addFilter(_quiet_orbax_info)
  from deblur_jax import train  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  logging.info('Config:\n%s', config)
  try:
    if FLAGS.mode == 'train':
      train.train_and_evaluate(config, FLAGS.workdir)
    else:
      train.evaluate_checkpoint(config, FLAGS.workdir)
  except InputError as e:
    logging.error('%s', e)
    print(f'Error: {e}', file=sys.stderr)
    sys.exit(2)


def _make_config_siblings_importable(argv) -> None:
  """Config files import their siblings as `configs.NAME` (as the Flax examples
  do); put the folder that holds configs/ on the path, wherever we run from."""
  for arg in argv[1:]:
    if arg.startswith('--config='):
      config_file = arg[len('--config='):].split(':')[0]
      root = os.path.dirname(os.path.dirname(os.path.abspath(config_file)))
      if root not in sys.path:
        sys.path.insert(0, root)


def _parse_flags(argv):
  """absl's parsing, with a one-line error for a bad --config override."""
  _make_config_siblings_importable(argv)
  try:
    return FLAGS(argv)
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


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
