"""Train or evaluate a deblurring model.

  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR
  python -m deblur_jax.main --config=configs/mimo.py:plus --workdir=DIR \
      --config.data.dir=/data/GOPRO_Large
  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR --mode=eval

Run again on the same DIR to resume from its latest checkpoint.
"""

import os

# Quiet TensorFlow's C++ start-up banner; the data pipeline imports it.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from deblur_jax import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and evaluation results.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                  "'train' trains (resuming from DIR) and evaluates periodically; 'eval' "
                  'evaluates a checkpoint and writes per-image results into DIR/eval.')
config_flags.DEFINE_config_file('config', None, 'Configuration file (and :variant).',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(_):
  from deblur_jax import train  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  logging.info('Config:\n%s', config)
  if FLAGS.mode == 'train':
    train.train_and_evaluate(config, FLAGS.workdir)
  else:
    train.evaluate_checkpoint(config, FLAGS.workdir)


if __name__ == '__main__':
  cli.run(main)
