"""XLA-compiled benchmarks of the train step and of inference, one JSON line per run.

  python -m deblur_jax.bench --config=configs/mimo.py --what=train --batch=4 --size=256
  python -m deblur_jax.bench --config=configs/mimo.py:plus --what=infer --batch=1 \
      --height=720 --width=1280 --dtype=bfloat16
  python -m deblur_jax.bench --config=configs/mimo.py --what=input --batch=4 \
      --config.data.dir=/data/GOPRO_Large --config.data.cache=memory

Times are medians of `--steps` runs after `--warmup` runs, each ended with
block_until_ready; compilation (lower + compile) is timed apart. FLOPs come
from the compiled program's cost analysis, peak memory from its memory
analysis (and from the device's allocator where it reports one). Imports no
TensorFlow except for `--what=input`.
"""

import datetime
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from deblur_jax import cli, models, runtime
from deblur_jax.evaluation import eval_step
from deblur_jax.parallel import sharding
from deblur_jax.training import losses, optimizers, train_step
from deblur_jax.training import state as state_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Configuration file (and :variant).',
                                lock_config=True)
flags.DEFINE_enum('what', 'train', ['train', 'infer', 'input'],
                  'train: one optimisation step; infer: the full-resolution output; '
                  'input: the training input pipeline alone.')
flags.DEFINE_integer('batch', None, 'Global batch (default: config.train.batch_size for train, '
                     '1 per device for infer).')
flags.DEFINE_integer('size', None, 'Square height and width (default: config.data.crop_size).')
flags.DEFINE_integer('height', None, 'Image height; overrides --size.')
flags.DEFINE_integer('width', None, 'Image width; overrides --size.')
flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'],
                  'Compute dtype (default: config.train.compute_dtype).')
flags.DEFINE_integer('steps', 10, 'Timed runs (at least 1).')
flags.DEFINE_integer('warmup', 2, 'Untimed runs after compilation.')
flags.mark_flags_as_required(['config'])
flags.register_validator('steps', lambda steps: steps >= 1, message='--steps must be at least 1.')

# Dense peak FLOP/s by device kind and dtype (float32 matmuls run as TF32 on
# Hopper by default). Unknown devices (CPUs among them) report no fraction.
PEAK_FLOPS = {
    'H100': {'bfloat16': 989e12, 'float32': 494e12},
    'H200': {'bfloat16': 989e12, 'float32': 494e12},
    'A100': {'bfloat16': 312e12, 'float32': 156e12},
}


def peak_flops(device, dtype: str):
  for kind, peaks in PEAK_FLOPS.items():
    if kind in device.device_kind:
      return peaks[dtype]
  return None


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return cost or {}


def _memory(compiled) -> dict:
  out = {}
  analysis = compiled.memory_analysis()
  if analysis is not None:
    out['compiled_peak_bytes'] = int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                                     + analysis.output_size_in_bytes
                                     - analysis.alias_size_in_bytes)
    out['compiled_temp_bytes'] = int(analysis.temp_size_in_bytes)
    out['compiled_argument_bytes'] = int(analysis.argument_size_in_bytes)
  stats = jax.local_devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    out['device_peak_bytes'] = int(stats['peak_bytes_in_use'])
  return out


def time_calls(call, steps: int, warmup: int) -> list[float]:
  """Seconds of each of `steps` calls after `warmup` untimed ones; `call` must block."""
  for _ in range(warmup):
    call()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return times


def _random_batch(batch: int, height: int, width: int, mesh) -> dict:
  rng = np.random.default_rng(0)
  sharp = rng.uniform(size=(batch, height, width, 3)).astype(np.float32)
  blur = np.clip(sharp + rng.normal(0, 0.05, sharp.shape), 0, 1).astype(np.float32)
  return sharding.make_global_batch({'blur': blur, 'sharp': sharp}, mesh)


def bench_train(config, mesh, batch: int, height: int, width: int, dtype: str, steps: int,
                warmup: int) -> dict:
  model = models.build_model(config.model, jnp.dtype(dtype))
  tx, schedule = optimizers.build_optimizer(config.optimizer, num_train_steps=10**6,
                                            steps_per_epoch=1)
  state = state_lib.create_train_state(jax.random.key(0), model, tx, min(height, width), mesh,
                                        fsdp=config.train.fsdp)
  step_fn = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                      learning_rate_fn=schedule, rng=jax.random.key(1),
                                      state_sharding=sharding.current_shardings(state))
  data = _random_batch(batch, height, width, mesh)
  start = time.perf_counter()
  compiled = step_fn.lower(state, data).compile()
  compile_s = time.perf_counter() - start
  holder = [state]

  def call():
    holder[0], metrics = compiled(holder[0], data)
    jax.block_until_ready(metrics['loss'])

  times = time_calls(call, steps, warmup)
  return {'compile_s': compile_s, 'times': times, 'compiled': compiled,
          'params': sum(x.size for x in jax.tree.leaves(state.params))}


def bench_infer(config, mesh, batch: int, height: int, width: int, dtype: str, steps: int,
                warmup: int) -> dict:
  model = models.build_model(config.model, jnp.dtype(dtype))
  variables = jax.jit(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False),
      out_shardings=sharding.replicated(mesh))()
  deblur_fn = jax.jit(
      lambda v, x: eval_step.deblur_images(model.apply, v, x, model.size_multiple),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
      out_shardings=sharding.batch_sharded(mesh))
  images = _random_batch(batch, height, width, mesh)['blur']
  start = time.perf_counter()
  compiled = deblur_fn.lower(variables, images).compile()
  compile_s = time.perf_counter() - start
  times = time_calls(lambda: jax.block_until_ready(compiled(variables, images)), steps, warmup)
  return {'compile_s': compile_s, 'times': times, 'compiled': compiled,
          'params': sum(x.size for x in jax.tree.leaves(variables['params']))}


def bench_input(config, mesh, batch: int, steps: int, warmup: int) -> dict:
  """The training input pipeline alone: its sustained crops/s over the `steps` timed
  batches (the prefetch buffer filled during `warmup` aside), and the seconds taken
  to set it up, decoding the training set for config.data.cache 'memory' or a new
  'file'."""
  from deblur_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  runtime.hide_accelerators_from_tensorflow()  # tf.data on the host only
  start = time.perf_counter()
  dataset, num_images = pipeline.create_train_dataset(
      config.data, seed=config.seed, global_batch=batch,
      rows=sharding.process_batch_rows(batch, mesh), start_step=0)
  setup_s = time.perf_counter() - start
  batches = dataset.as_numpy_iterator()
  times = time_calls(lambda: next(batches), steps, warmup)
  cores = len(os.sched_getaffinity(0))  # tf.data's default thread pool has one per core
  crops_per_s = batch * len(times) / sum(times)
  return {'compile_s': 0.0, 'times': times, 'compiled': None, 'params': None,
          'items_per_s': crops_per_s,
          'extra': {'cache': config.data.get('cache', 'none'), 'setup_s': round(setup_s, 3),
                    'train_images': num_images, 'cores': cores,
                    'crops_per_s_per_core': round(crops_per_s / cores, 3)}}


def run_benchmark(config, what: str, batch: int, height: int, width: int, dtype: str, steps: int,
        warmup: int) -> dict:
  """Benchmarks one configuration and returns the JSON record."""
  mesh = sharding.create_mesh()
  sharding.check_batch_divisible(batch, mesh, '--batch')
  if what == 'train':
    result = bench_train(config, mesh, batch, height, width, dtype, steps, warmup)
  elif what == 'infer':
    result = bench_infer(config, mesh, batch, height, width, dtype, steps, warmup)
  else:
    result = bench_input(config, mesh, batch, steps, warmup)
  step_s = statistics.median(result['times'])
  device = jax.devices()[0]
  record = {
      'what': what, 'model': config.model.name, 'params': result['params'],
      'batch': batch, 'height': height, 'width': width, 'dtype': dtype,
      'platform': device.platform, 'device_kind': device.device_kind,
      'num_devices': jax.device_count(),
      'fsdp': bool(config.train.fsdp), 'remat': bool(config.model.get('remat', False)),
      'compile_s': round(result['compile_s'], 3),
      'step_ms_median': round(1e3 * step_s, 3),
      'step_ms_min': round(1e3 * min(result['times']), 3),
      # crops/s (train; input: sustained over all timed steps) or frames/s (infer)
      'items_per_s': round(result.get('items_per_s', batch / step_s), 3),
      'jax': jax.__version__,
      'date': datetime.date.today().isoformat(),
      **result.get('extra', {}),
  }
  if result['compiled'] is not None:
    flops = _cost(result['compiled']).get('flops')
    if flops:
      peak = peak_flops(device, dtype)
      record['gflops_per_step'] = round(flops / 1e9, 3)
      record['tflops_per_s'] = round(flops / step_s / 1e12, 4)
      record['peak_fraction'] = (round(flops / step_s / (peak * jax.device_count()), 4)
                                 if peak else None)
    record.update(_memory(result['compiled']))
  return record


def main(_):
  config = FLAGS.config
  height = FLAGS.height or FLAGS.size or config.data.crop_size
  width = FLAGS.width or FLAGS.size or config.data.crop_size
  default_batch = config.train.batch_size if FLAGS.what != 'infer' else jax.device_count()
  record = run_benchmark(config, FLAGS.what, FLAGS.batch or default_batch, height, width,
               FLAGS.dtype or config.train.compute_dtype, FLAGS.steps, FLAGS.warmup)
  record = {'config': config_flags.get_config_filename(FLAGS['config']), **record}
  print(json.dumps(record), flush=True)


def run() -> None:
  """The console script's entry point."""
  cli.run(main)


if __name__ == '__main__':
  run()
