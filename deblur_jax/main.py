"""Train or evaluate a deblurring model.

  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR
  python -m deblur_jax.main --config=configs/mimo.py:plus --workdir=DIR \
      --config.data.dir=/data/GOPRO_Large
  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR --mode=eval

Run again on the same DIR to resume from its latest checkpoint.

Several processes (hosts, or processes on one host) train one model together
with --distributed: every process runs the same command. On SLURM, Cloud TPU,
Open MPI and Kubernetes the processes find each other; elsewhere add
--coordinator_address=HOST:PORT --num_processes=N --process_id=I. The scripts in
launch/ start such jobs.
"""

from absl import flags, logging
from ml_collections import config_flags

from deblur_jax.cli import command_line, runtime

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and evaluation results.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                  "'train' trains (resuming from DIR) and evaluates periodically; 'eval' "
                  'evaluates a checkpoint and writes per-image results into DIR/eval.')
config_flags.DEFINE_config_file('config', None, 'Configuration file (and :variant).',
                                lock_config=True)
flags.DEFINE_bool('distributed', False,
                  'Join a multi-process job (jax.distributed.initialize) before training. '
                  'Every process runs the same command; the global batch is split over the '
                  'devices of all processes, and process 0 writes the logs.')
flags.DEFINE_string('coordinator_address', None,
                    'HOST:PORT of process 0, reachable from every process (with '
                    '--distributed; default: detected on SLURM, Cloud TPU, Open MPI, '
                    'Kubernetes).')
flags.DEFINE_integer('num_processes', None,
                     'Number of processes in the job (with --distributed; default: detected).')
flags.DEFINE_integer('process_id', None,
                     'This process\'s index, 0 to num_processes - 1 (with --distributed; '
                     'default: detected).')
flags.DEFINE_integer('coordinator_timeout_s', 300,
                     'Seconds to wait for all processes to reach the coordinator before '
                     'giving up with an error (with --distributed).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(_):
  # pylint: disable=g-import-not-at-top  (after flag parsing: --help stays fast)
  from deblur_jax.evaluation import evaluator
  from deblur_jax.parallel import distributed
  from deblur_jax.training import loop

  # Before anything touches a device: afterwards JAX sees the devices of all processes.
  runtime.configure_xla_cpu('train' if FLAGS.mode == 'train' else 'inference')
  distributed.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes,
                         FLAGS.process_id, FLAGS.coordinator_timeout_s)
  config = FLAGS.config
  logging.info('Config from %s:\n%s', config_flags.get_config_filename(FLAGS['config']),
               config)
  if FLAGS.mode == 'train':
    loop.train_and_evaluate(config, FLAGS.workdir)
  else:
    evaluator.evaluate_checkpoint(config, FLAGS.workdir)


def run() -> None:
  """The console script's entry point."""
  command_line.run(main, uses_tensorflow=True, workload=None)


if __name__ == '__main__':
  run()
