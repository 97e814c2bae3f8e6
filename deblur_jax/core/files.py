"""Writing files that appear complete or not at all.

  with files.atomic_write(path) as f:       # binary; mode='w' for text
    Image.fromarray(pixels).save(f, format='PNG')

The content goes to a temporary file beside `path` (`path`.tmpPID), renamed
onto `path` when the block ends without an error and removed otherwise, so a
reader, or a run that crashed half-way, never sees a partial file.
"""

import contextlib
import os
from typing import IO, Iterator


def temporary_path(path: str) -> str:
  """The temporary name `atomic_write` writes `path` under, in the same folder."""
  return f'{path}.tmp{os.getpid()}'


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb', *, sync: bool = False) -> Iterator[IO]:
  """Yields a file opened with `mode` ('wb' or 'w') whose content replaces `path`
  at the end of the block. Creates `path`'s folder if needed. With `sync` the
  data reaches the disk before the rename (for files a crash must not lose)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = temporary_path(path)
  try:
    with open(tmp, mode) as f:
      yield f
      if sync:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
