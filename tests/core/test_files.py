"""Atomic file writes: the file appears complete or not at all."""

import os

import pytest

from deblur_jax.core import files


def test_the_content_replaces_the_file_at_the_end_of_the_block(tmp_path):
  path = tmp_path / 'new' / 'folder' / 'out.txt'  # folders are created
  with files.atomic_write(str(path), 'w') as f:
    f.write('first')
    assert not path.exists()  # nothing visible while writing
  assert path.read_text() == 'first'
  with files.atomic_write(str(path)) as f:
    f.write(b'second')
    assert path.read_text() == 'first'
  assert path.read_bytes() == b'second'
  assert os.listdir(path.parent) == ['out.txt']


def test_an_error_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
  path = tmp_path / 'out.bin'
  path.write_bytes(b'old')
  with pytest.raises(RuntimeError, match='half-way'):
    with files.atomic_write(str(path), sync=True) as f:
      f.write(b'new, partial')
      raise RuntimeError('half-way')
  assert path.read_bytes() == b'old'
  assert os.listdir(tmp_path) == ['out.bin']
  assert files.temporary_path(str(path)).startswith(f'{path}.tmp')
