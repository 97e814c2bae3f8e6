"""XLA-compiled benchmarks of the train step and of inference, one JSON line per run.

  python -m deblur_jax.bench --config=configs/mimo.py --what=train --batch=4 --size=256
  python -m deblur_jax.bench --config=configs/mimo.py:plus --what=infer --batch=1 \
      --height=720 --width=1280 --dtype=bfloat16
  python -m deblur_jax.bench --config=configs/mimo.py --what=onnx --batch=1 \
      --height=720 --width=1280 [--dtype=float16]
  python -m deblur_jax.bench --config=configs/mimo.py --what=input --batch=4 \
      --config.data.dir=/data/GOPRO_Large --config.data.cache=memory
  python -m deblur_jax.bench --config=configs/mimo.py --what=train --batch=32 --size=256 \
      --dtype=bfloat16 --compile_only --topology=v5e:2x2

Times are medians of `--steps` runs after `--warmup` runs, each ended with
block_until_ready; compilation (lower + compile) is timed apart. FLOPs come
from the compiled program's cost analysis, peak memory from its memory
analysis (and from the device's allocator where it reports one). Imports no
TensorFlow except for `--what=input`. `--what=onnx` times the model's ONNX graph in
ONNX Runtime (the onnx extra) and the library's XLA program in the same run. The
library part: deblur_jax.profiling.benchmarks.

`--compile_only` compiles without running, from abstract inputs, and reports
the compile time, memory per device and cost analysis; with `--topology` it
compiles for a TPU slice that is not attached, through libtpu (installed apart:
deblur_jax.profiling.ahead_of_time).
"""

import json
import os

import jax
from absl import flags
from ml_collections import config_flags

from deblur_jax import models
from deblur_jax.cli import command_line, runtime
from deblur_jax.core.errors import InputError
from deblur_jax.profiling import ahead_of_time, benchmarks

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Configuration file (and :variant).',
                                lock_config=True)
flags.DEFINE_enum('what', 'train', ['train', 'infer', 'onnx', 'input'],
                  'train: one optimisation step; infer: the full-resolution output; onnx: '
                  'the ONNX graph in ONNX Runtime against infer (float32 or float16 graph); '
                  'input: the training input pipeline alone.')
flags.DEFINE_integer('batch', None, 'Global batch (default: config.train.batch_size for train, '
                     '1 per device for infer).')
flags.DEFINE_integer('size', None, 'Square height and width (default: config.data.crop_size).')
flags.DEFINE_integer('height', None, 'Image height; overrides --size.')
flags.DEFINE_integer('width', None, 'Image width; overrides --size.')
flags.DEFINE_enum('dtype', None, sorted(set(models.COMPUTE_DTYPES) | {'float16'}),
                  'Compute dtype (default: config.train.compute_dtype; float32 for onnx); '
                  'float16 for onnx only.')
flags.DEFINE_integer('steps', 10, 'Timed runs (at least 1).')
flags.DEFINE_integer('warmup', 2, 'Untimed runs after compilation.')
flags.DEFINE_bool('compile_only', False, 'Compile the train step or inference from abstract '
                  'inputs without running it: compile seconds, memory per device, cost analysis.')
flags.DEFINE_string('topology', None, 'With --compile_only: compile for this TPU topology '
                    'instead of the local devices, e.g. v5e:2x2 (4 chips); needs libtpu, no TPU.')
flags.mark_flags_as_required(['config'])
flags.register_validator('steps', lambda steps: steps >= 1, message='--steps must be at least 1.')


def main(_):
  # Before jax.device_count() below starts the backend.
  runtime.configure_xla_cpu('inference' if FLAGS.what in ('infer', 'onnx') else 'train')
  config = FLAGS.config
  height = FLAGS.height or FLAGS.size or config.data.crop_size
  width = FLAGS.width or FLAGS.size or config.data.crop_size
  dtype = FLAGS.dtype or ('float32' if FLAGS.what == 'onnx' else config.train.compute_dtype)
  onnx = FLAGS.what == 'onnx'
  if (dtype == 'float16' and not onnx) or (dtype == 'bfloat16' and onnx):
    raise InputError(f'--dtype={dtype} with --what={FLAGS.what}: ONNX graphs are float32 or '
                     'float16, the XLA programs float32 or bfloat16.')
  if onnx and FLAGS.compile_only:
    raise InputError('--what=onnx runs ONNX Runtime: it has no --compile_only.')
  if FLAGS.topology and not FLAGS.compile_only:
    raise InputError(f'--topology={FLAGS.topology} compiles only: add --compile_only.')
  devices = ahead_of_time.topology_devices(FLAGS.topology) if FLAGS.topology else jax.devices()
  default_batch = (len(devices) if FLAGS.what in ('infer', 'onnx') else config.train.batch_size)
  if FLAGS.compile_only:
    record = ahead_of_time.compile_only(config, FLAGS.what, FLAGS.batch or default_batch,
                                        height, width, dtype, devices)
    record['topology'] = FLAGS.topology
  else:
    if FLAGS.what == 'input':
      runtime.hide_accelerators_from_tensorflow()  # tf.data on the host only
    record = benchmarks.run_benchmark(config, FLAGS.what, FLAGS.batch or default_batch, height,
                                      width, dtype, FLAGS.steps, FLAGS.warmup)
  record = {'config': command_line.config_label(config_flags.get_config_filename(FLAGS['config'])),
            **record,
            'xla_flags': os.environ.get('XLA_FLAGS', ''), 'cpu': runtime.cpu_description()}
  print(json.dumps(record), flush=True)


def run() -> None:
  """The console script's entry point."""
  command_line.run(main, workload=None)


if __name__ == '__main__':
  run()
