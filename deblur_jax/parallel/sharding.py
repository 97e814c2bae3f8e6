"""The device mesh and the shardings of the data-parallel train and eval steps.

One axis, 'data', over every device of every process. Batches are split along
it. The train state is replicated on every device, or with FSDP (fully
sharded data parallel) its large arrays are split along 'data' too and
gathered where a step needs them.
"""

from typing import Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from deblur_jax.core.errors import InputError

DATA_AXIS = 'data'


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D ('data',) mesh over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Splits the leading (batch) dimension across the 'data' axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


# Arrays smaller than this many elements stay replicated under FSDP (config.train.fsdp_min_size).
FSDP_MIN_SIZE = 2**16


def fsdp_sharding(shape: Sequence[int], mesh: Mesh, min_size: int = FSDP_MIN_SIZE
                  ) -> NamedSharding:
  """Splits an array of `shape` over 'data' along its largest axis that divides
  evenly; arrays smaller than `min_size` elements, or with no such axis, stay
  replicated (their all-gathers would cost more than they save)."""
  num_devices = mesh.devices.size
  if int(np.prod(shape, dtype=np.int64)) >= min_size:
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
      if shape[axis] % num_devices == 0:
        spec = [None] * len(shape)
        spec[axis] = DATA_AXIS
        return NamedSharding(mesh, PartitionSpec(*spec))
  return replicated(mesh)


def replicated_or_fsdp(abstract_tree, mesh: Mesh, fsdp: bool, min_size: int = FSDP_MIN_SIZE):
  """The shardings to place a tree (a train state) in: every leaf replicated, or
  FSDP-style with `fsdp` (see `fsdp_sharding`)."""
  if not fsdp:
    return jax.tree.map(lambda _: replicated(mesh), abstract_tree)
  return jax.tree.map(lambda x: fsdp_sharding(x.shape, mesh, min_size), abstract_tree)


def current_shardings(tree):
  """The shardings the arrays of `tree` live in, for jitting steps that keep them."""
  return jax.tree.map(lambda x: x.sharding, tree)


def check_batch_divisible(global_batch_size: int, mesh: Mesh, field: str) -> None:
  """Raises an InputError naming `field` unless the batch splits evenly over the devices."""
  num_devices = mesh.devices.size
  if global_batch_size <= 0 or global_batch_size % num_devices:
    raise InputError(f'{field}={global_batch_size} must be a positive multiple of the '
                     f'number of devices ({num_devices}).')


def process_batch_rows(global_batch_size: int, mesh: Mesh) -> range:
  """The rows of a global batch that this process supplies: one contiguous run.

  `make_array_from_process_local_data` places this process's local batch on
  these rows; input pipelines read the examples of these rows.
  """
  indices = batch_sharded(mesh).addressable_devices_indices_map((global_batch_size,))
  rows = sorted({r for index in indices.values() for r in range(global_batch_size)[index[0]]})
  if rows != list(range(rows[0], rows[-1] + 1)):
    raise ValueError(f'This process holds rows {rows} of the batch, not one contiguous run; '
                     'build the mesh from jax.devices() in their default order.')
  return range(rows[0], rows[-1] + 1)


def make_global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
  """Assembles each process's slice of a batch into global arrays split over 'data'."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
