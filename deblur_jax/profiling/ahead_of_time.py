"""Compiling the train step and inference without running them, for the local
devices or for a TPU topology that is not attached (through libtpu).

Inputs are abstract (jax.ShapeDtypeStruct with shardings): nothing is placed on
a device, so a TPU pod slice's programs compile on a laptop's CPU. The record
gives the compile time, the compiled program's memory per device and XLA's
cost analysis; `deblur_jax.bench --compile_only [--topology=v5e:2x2]` prints it.

TPU topologies need libtpu (the version `jax[tpu]` pins) importable, and no TPU.
"""

import datetime
import importlib.metadata
import importlib.util
import os
import re

import jax
import jax.numpy as jnp

from deblur_jax import models
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import eval_step
from deblur_jax.parallel import sharding
from deblur_jax.profiling import benchmarks

# Topologies libtpu knows, for the error message (there are more, e.g. 'v5e:4x4').
TOPOLOGY_EXAMPLES = ('v4:2x2x1', 'v5e:2x2', 'v5e:2x4', 'v5p:2x2x1', 'v6e:2x2')


def pinned_libtpu() -> str:
  """The libtpu requirement of the installed jax's 'tpu' extra, e.g. 'libtpu==0.0.42.*'."""
  try:
    requirements = importlib.metadata.requires('jax') or []
  except importlib.metadata.PackageNotFoundError:
    requirements = []
  for requirement in requirements:
    match = re.match(r'\s*(libtpu\s*[=<>~!][^;]*);.*extra\s*==\s*.tpu.', requirement)
    if match:
      return match.group(1).replace(' ', '')
  return 'libtpu==<the version jax[tpu] pins>'


def topology_devices(name: str) -> list:
  """The compile-only devices of TPU topology `name` ('v5e:2x2': 4 chips), from libtpu.

  Raises an InputError when libtpu is not installed or does not know `name`.
  """
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    return list(topologies.get_topology_desc(name, 'tpu').devices)
  except Exception as e:  # pylint: disable=broad-except  # libtpu raises several kinds
    if importlib.util.find_spec('libtpu') is None and not os.environ.get('TPU_LIBRARY_PATH'):
      raise InputError(f'--topology={name} compiles through libtpu, which is not installed: '
                       f"`pip install '{pinned_libtpu()}'` (no TPU needed).") from e
    reason = ' '.join(str(e).split())[:300]
    raise InputError(f'--topology={name}: libtpu cannot make this TPU topology ({reason}); '
                     f'for example {", ".join(TOPOLOGY_EXAMPLES)}.') from e


def abstract_images(batch: int, height: int, width: int, mesh) -> jax.ShapeDtypeStruct:
  """(batch, height, width, 3) float32 split over `mesh`, as `benchmarks.random_batch` makes."""
  return jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32,
                              sharding=sharding.batch_sharded(mesh))


def lowerable_train_step(config, mesh, batch: int, height: int, width: int, dtype: str):
  """(the jitted train step, its abstract arguments (state, batch), parameter count)
  as `benchmarks.bench_train` runs it; the state is replicated or FSDP-sharded as
  config.train asks."""
  step_fn, state = benchmarks.train_step_and_state(config, mesh, min(height, width), dtype,
                                                   abstract=True)
  images = abstract_images(batch, height, width, mesh)
  return step_fn, (state, {'blur': images, 'sharp': images}), models.count_params(
      state.params)


def lowerable_inference(config, mesh, batch: int, height: int, width: int, dtype: str):
  """(the jitted full-resolution deblurring, its abstract arguments (variables,
  images), parameter count) as `benchmarks.bench_infer` runs it."""
  model = models.build_model(config.model, models.compute_dtype(dtype))
  variables = models.variables_template(model, sharding.replicated(mesh))
  deblur_fn = jax.jit(
      lambda v, x: eval_step.deblur_images(model.apply, v, x, model.size_multiple),
      in_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)),
      out_shardings=sharding.batch_sharded(mesh))
  return deblur_fn, (variables, abstract_images(batch, height, width, mesh)), (
      models.count_params(variables['params']))


def compile_only(config, what: str, batch: int, height: int, width: int, dtype: str,
                 devices=None) -> dict:
  """Compiles the train step (`what`='train') or inference ('infer') for `devices`
  (default: the local ones; or `topology_devices(...)`) and returns the record:
  compile seconds (lower + compile), the compiled memory per device, and XLA's
  cost analysis of one device's program ('gflops_per_device')."""
  if what not in ('train', 'infer'):
    raise InputError(f'--compile_only compiles --what=train or --what=infer, not {what}.')
  mesh = sharding.create_mesh(devices)
  sharding.check_batch_divisible(batch, mesh, '--batch')
  lowerable = lowerable_train_step if what == 'train' else lowerable_inference
  jitted, args, params = lowerable(config, mesh, batch, height, width, dtype)
  compiled, compile_s = benchmarks.compile_timed(jitted, *args)
  device = mesh.devices.flat[0]
  cost = benchmarks.compiled_cost(compiled)
  record = {
      'what': what, 'compile_only': True, 'model': config.model.name, 'params': params,
      'batch': batch, 'height': height, 'width': width, 'dtype': dtype,
      'platform': device.platform, 'device_kind': device.device_kind,
      'num_devices': mesh.devices.size,
      'fsdp': bool(config.train.fsdp), 'remat': bool(config.model.get('remat', False)),
      'compile_s': round(compile_s, 3),
      # JAX_EXEC_TIME_OPTIMIZATION_EFFORT: -1 trades run time for compile time (TPU: ~4x faster).
      'exec_time_optimization_effort': jax.config.jax_exec_time_optimization_effort,
      'gflops_per_device': round(cost['flops'] / 1e9, 3) if cost.get('flops') else None,
      'gbytes_accessed_per_device': (round(cost['bytes accessed'] / 1e9, 3)
                                     if cost.get('bytes accessed') else None),
      'jax': jax.__version__,
      'date': datetime.date.today().isoformat(),
  }
  memory = benchmarks.compiled_memory(compiled)
  memory.pop('device_peak_bytes', None)  # the local allocator's, not this program's
  record.update(memory)
  return record
