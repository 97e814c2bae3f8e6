"""The device mesh and the shardings of the data-parallel train and eval steps.

One axis, 'data', over every device of every process. Batches are split along
it; parameters and optimizer state are replicated.
"""

from typing import Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from deblur_jax.errors import InputError

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


def local_batch_size(global_batch_size: int, mesh: Mesh, field: str) -> int:
  """This process's share of a global batch, checking that it splits evenly."""
  num_devices = mesh.devices.size
  if global_batch_size <= 0 or global_batch_size % num_devices:
    raise InputError(f'{field}={global_batch_size} must be a positive multiple of the '
                     f'number of devices ({num_devices}).')
  return global_batch_size // jax.process_count()


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
