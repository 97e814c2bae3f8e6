"""Locating a checkpoint from the tools' --workdir, --checkpoint and --step."""

import pytest

from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError


@pytest.mark.parametrize('workdir,checkpoint,message', [
    ('runs/a', 'runs/a/checkpoints/3', 'exactly one of --workdir and --checkpoint'),
    (None, None, 'exactly one of --workdir and --checkpoint'),
    (None, 'runs/a/checkpoints', 'is not a checkpoint step directory'),
    (None, 'runs/a/3', 'is not a checkpoint step directory'),
])
def test_checkpoint_flags_that_name_no_step_folder_are_errors(workdir, checkpoint, message):
  with pytest.raises(InputError, match=message):
    checkpoints.checkpoint_location(workdir, checkpoint, None)


def test_a_step_folder_names_its_work_directory_and_step():
  assert checkpoints.checkpoint_location(None, '/runs/a/checkpoints/1600/', None) == (
      '/runs/a', 1600)
