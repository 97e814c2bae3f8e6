"""XLA-compiled benchmarks of the train step and of inference, and of the input pipeline.

Times are medians of `steps` runs after `warmup` runs, each ended with
block_until_ready; compilation (lower + compile) is timed apart. FLOPs come
from the compiled program's cost analysis, peak memory from its memory
analysis (and from the device's allocator where it reports one). Only
`bench_input` imports TensorFlow (when called); keep TensorFlow off the
accelerators first (`runtime.hide_accelerators_from_tensorflow`).
"""

import datetime
import os
import resource
import statistics
import tempfile
import time

import jax
import numpy as np

from deblur_jax import models
from deblur_jax.evaluation import eval_step
from deblur_jax.parallel import sharding
from deblur_jax.training import losses, optimizers, train_step
from deblur_jax.training import state as state_lib

# Dense peak FLOP/s by device kind and dtype (float32 matmuls run as TF32 on
# Hopper by default). Unknown devices (CPUs among them) report no fraction.
PEAK_FLOPS = {
    'H100': {'bfloat16': 989e12, 'float32': 494e12},
    'H200': {'bfloat16': 989e12, 'float32': 494e12},
    'A100': {'bfloat16': 312e12, 'float32': 156e12},
}


def peak_flops(device, dtype: str):
  """The device's dense peak FLOP/s for `dtype` ('float32', 'bfloat16'), or None if unknown."""
  for kind, peaks in PEAK_FLOPS.items():
    if kind in device.device_kind:
      return peaks[dtype]
  return None


def compiled_cost(compiled) -> dict:
  """XLA's cost analysis of a compiled program ('flops', ...), {} where it gives none."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return cost or {}


def compiled_memory(compiled) -> dict:
  """Bytes per device: the compiled program's peak, temporaries and arguments, and the
  allocator's peak so far where the device reports one."""
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


def compile_timed(jitted, *args):
  """(the program `jitted` compiles to for `args`, seconds to lower and compile it)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def random_batch(batch: int, height: int, width: int, mesh) -> dict:
  """{'blur', 'sharp'}: (batch, height, width, 3) float32 in [0, 1], sharded over `mesh`."""
  rng = np.random.default_rng(0)
  sharp = rng.uniform(size=(batch, height, width, 3)).astype(np.float32)
  blur = np.clip(sharp + rng.normal(0, 0.05, sharp.shape), 0, 1).astype(np.float32)
  return sharding.make_global_batch({'blur': blur, 'sharp': sharp}, mesh)


def train_step_and_state(config, mesh, image_size: int, dtype: str, *, abstract: bool = False):
  """(the jitted train step of `config` computing in `dtype`, its train state): the
  state created on `mesh` (replicated or FSDP-sharded as config.train asks), or with
  `abstract` only its shapes and shardings (jax.ShapeDtypeStructs), nothing placed."""
  model = models.build_model(config.model, models.compute_dtype(dtype))
  tx, schedule = optimizers.build_optimizer(config.optimizer, num_train_steps=10**6,
                                            steps_per_epoch=1)

  def create():
    return state_lib.create_train_state(jax.random.key(0), model, tx, image_size, mesh,
                                        fsdp=config.train.fsdp,
                                        fsdp_min_size=config.train.fsdp_min_size)

  if abstract:
    state = jax.eval_shape(create)
    placement = sharding.replicated_or_fsdp(state, mesh, config.train.fsdp,
                                            config.train.fsdp_min_size)
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                         state, placement)
  else:
    state = create()
    placement = sharding.current_shardings(state)
  step_fn = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                      learning_rate_fn=schedule, rng=jax.random.key(1),
                                      state_sharding=placement)
  return step_fn, state


def bench_train(config, mesh, batch: int, height: int, width: int, dtype: str, steps: int,
                warmup: int) -> dict:
  """One optimisation step on a random batch: {'compile_s', 'times' (seconds per step),
  'compiled', 'params'}."""
  step_fn, state = train_step_and_state(config, mesh, min(height, width), dtype)
  data = random_batch(batch, height, width, mesh)
  compiled, compile_s = compile_timed(step_fn, state, data)
  holder = [state]

  def call():
    holder[0], metrics = compiled(holder[0], data)
    jax.block_until_ready(metrics['loss'])

  times = time_calls(call, steps, warmup)
  return {'compile_s': compile_s, 'times': times, 'compiled': compiled,
          'params': models.count_params(state.params)}


def bench_infer(config, mesh, batch: int, height: int, width: int, dtype: str, steps: int,
                warmup: int) -> dict:
  """Deblurring a random batch at full resolution (untrained weights): as bench_train."""
  model = models.build_model(config.model, models.compute_dtype(dtype))
  variables = jax.jit(
      lambda: model.init(jax.random.key(0), models.dummy_images(model), train=False),
      out_shardings=sharding.replicated(mesh))()
  deblur_fn = jax.jit(
      lambda v, x: eval_step.deblur_images(model.apply, v, x, model.size_multiple),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
      out_shardings=sharding.batch_sharded(mesh))
  images = random_batch(batch, height, width, mesh)['blur']
  compiled, compile_s = compile_timed(deblur_fn, variables, images)
  times = time_calls(lambda: jax.block_until_ready(compiled(variables, images)), steps, warmup)
  return {'compile_s': compile_s, 'times': times, 'compiled': compiled,
          'params': models.count_params(variables['params']), 'variables': variables,
          'images': images}


def bench_onnx(config, mesh, batch: int, height: int, width: int, dtype: str, steps: int,
               warmup: int) -> dict:
  """The model's ONNX graph (`dtype` float32 or float16) in ONNX Runtime's CPU provider
  against the library's XLA program (bench_infer, float32), same weights, same images,
  same process: both times, the file size and the largest difference of the outputs."""
  from deblur_jax.inference import onnx_graph, serialize  # pylint: disable=g-import-not-at-top

  result = bench_infer(config, mesh, batch, height, width, 'float32', steps, warmup)
  variables, images = result.pop('variables'), result.pop('images')
  expected = np.asarray(result['compiled'](variables, images)).transpose(0, 3, 1, 2)
  images = np.asarray(images).transpose(0, 3, 1, 2)
  model = models.build_model(config.model)
  image_size = (height, width) if serialize.sized_by_image(model) else None
  start = time.perf_counter()
  proto = onnx_graph.convert(model, jax.device_get(variables), image_size, dtype)
  convert_s = time.perf_counter() - start
  run_onnx = onnx_graph.onnx_runtime_fn(proto)
  onnx_times = time_calls(lambda: run_onnx(images), steps, warmup)
  difference = np.abs(run_onnx(images) - expected)
  extra = {
      'runtime': f'onnxruntime {onnx_graph.runtime_version()} CPUExecutionProvider',
      'onnx_dtype': dtype, 'onnx_bytes': proto.ByteSize(),
      'onnx_convert_s': round(convert_s, 3),
      'xla_step_ms_median': round(1e3 * statistics.median(result['times']), 3),
      'xla_compile_s': round(result['compile_s'], 3),
      'max_abs_difference_from_xla': float(difference.max()),
      'mean_abs_difference_from_xla': float(difference.mean()),
  }
  if dtype == 'float32':
    opencv = _time_opencv(proto, images, steps, warmup)
    opencv['max_abs_difference_opencv_from_xla'] = float(np.abs(
        opencv.pop('outputs') - expected).max())
    extra.update(opencv)
  result['times'] = onnx_times  # the record's step times are ONNX Runtime's
  result['extra'] = extra
  return result


def _time_opencv(proto, images, steps: int, warmup: int) -> dict:
  """The same float32 graph in OpenCV's DNN module (CPU): load and run times, outputs."""
  import cv2  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, 'model.onnx')
    with open(path, 'wb') as f:
      f.write(proto.SerializeToString())
    start = time.perf_counter()
    net = cv2.dnn.readNetFromONNX(path)
    load_s = time.perf_counter() - start

  def forward():
    net.setInput(images)
    return net.forward()

  times = time_calls(forward, steps, warmup)
  return {'opencv': cv2.__version__, 'opencv_load_s': round(load_s, 3),
          'opencv_step_ms_median': round(1e3 * statistics.median(times), 3),
          'outputs': forward()}


def process_cpu_seconds() -> float:
  """User plus system CPU time of this process so far, all its threads."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def bench_input(config, mesh, batch: int, steps: int, warmup: int) -> dict:
  """The training input pipeline alone: its sustained crops/s and crops per CPU-second
  (this process's user + system time, every thread) over the `steps` timed batches,
  after `warmup` (at least one) that fill its prefetch buffer, and the seconds taken
  to set it up, decoding the training set for a new 'memory' or 'file' cache.
  Imports TensorFlow: the caller keeps it off the accelerators."""
  from deblur_jax.data import cache, pipeline, sources  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  dataset, num_images = pipeline.create_train_dataset(
      config.data, seed=config.seed, global_batch=batch,
      rows=sharding.process_batch_rows(batch, mesh), start_step=0)
  batches = dataset.as_numpy_iterator()
  first = next(batches)
  setup_s = time.perf_counter() - start
  for _ in range(warmup - 1):
    next(batches)
  cpu_start = process_cpu_seconds()
  times = time_calls(lambda: next(batches), steps, warmup=0)
  cpu_s = process_cpu_seconds() - cpu_start
  crops = len(first['blur']) * len(times)  # this process's rows of each batch
  cores = pipeline.usable_cpus()
  crops_per_s = crops / sum(times)
  folders = sources.source_name(config.data) == 'folders'
  return {'compile_s': 0.0, 'times': times, 'compiled': None, 'params': None,
          'items_per_s': crops_per_s,
          'extra': {'cache': cache.check_mode(config.data.cache) if folders else 'none',
                    'batch_dtype': first['blur'].dtype.name, 'setup_s': round(setup_s, 3),
                    'train_images': num_images, 'cores': cores,
                    'threads': pipeline.pipeline_threads(config.data),
                    'crops_per_s_per_core': round(crops_per_s / cores, 3),
                    'cpu_s': round(cpu_s, 4), 'crops_per_cpu_s': round(crops / cpu_s, 1)}}


def run_benchmark(config, what: str, batch: int, height: int, width: int, dtype: str, steps: int,
                  warmup: int) -> dict:
  """Benchmarks one configuration (`what`: 'train', 'infer' or 'input') on all devices
  and returns the JSON record."""
  mesh = sharding.create_mesh()
  sharding.check_batch_divisible(batch, mesh, '--batch')
  if what == 'train':
    result = bench_train(config, mesh, batch, height, width, dtype, steps, warmup)
  elif what == 'infer':
    result = bench_infer(config, mesh, batch, height, width, dtype, steps, warmup)
  elif what == 'onnx':
    result = bench_onnx(config, mesh, batch, height, width, dtype, steps, warmup)
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
    # XLA's cost analysis is of one device's program (each runs its share of the batch).
    flops_per_device = compiled_cost(result['compiled']).get('flops')
    if flops_per_device:
      flops, peak = flops_per_device * jax.device_count(), peak_flops(device, dtype)
      record['gflops_per_device'] = round(flops_per_device / 1e9, 3)
      record['gflops_per_step'] = round(flops / 1e9, 3)
      record['tflops_per_s'] = round(flops / step_s / 1e12, 4)
      record['peak_fraction'] = (round(flops / step_s / (peak * jax.device_count()), 4)
                                 if peak else None)
    record.update(compiled_memory(result['compiled']))
  return record
