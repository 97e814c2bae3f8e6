"""The data mesh: batch rows per process, batch checks and the FSDP layout."""

import jax
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.parallel import sharding


def test_a_single_process_supplies_every_row_of_the_batch():
  mesh = sharding.create_mesh()
  assert sharding.process_batch_rows(8, mesh) == range(0, 8)


@pytest.mark.parametrize('batch', [6, 0])
def test_a_batch_that_does_not_split_over_the_devices_is_an_error(batch):
  mesh = sharding.create_mesh()
  assert sharding.check_batch_divisible(8, mesh, 'config.train.batch_size') is None
  with pytest.raises(InputError, match=rf'config\.train\.batch_size={batch} must be a positive '
                                       r'multiple of the number of devices \(4\)'):
    sharding.check_batch_divisible(batch, mesh, 'config.train.batch_size')


def test_fsdp_splits_large_arrays_on_an_axis_that_divides():
  mesh = sharding.create_mesh(jax.devices()[:4])
  assert sharding.fsdp_sharding((3, 3, 64, 128), mesh).spec == jax.sharding.PartitionSpec(
      None, None, None, 'data')
  assert sharding.fsdp_sharding((3, 3, 3, 30), mesh).is_fully_replicated  # small
  assert sharding.fsdp_sharding((257, 259), mesh, min_size=1).is_fully_replicated  # no axis


def test_replicated_or_fsdp_places_every_leaf():
  mesh = sharding.create_mesh(jax.devices()[:4])
  tree = {'big': jax.ShapeDtypeStruct((256, 256), 'float32'),
          'small': jax.ShapeDtypeStruct((3,), 'float32')}
  replicated = sharding.replicated_or_fsdp(tree, mesh, fsdp=False)
  assert all(s.is_fully_replicated for s in jax.tree.leaves(replicated))
  fsdp = sharding.replicated_or_fsdp(tree, mesh, fsdp=True)
  assert fsdp['big'].spec == jax.sharding.PartitionSpec('data', None)
  assert fsdp['small'].is_fully_replicated
