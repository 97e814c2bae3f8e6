"""Shared test set-up: 4 CPU devices, tiny configs and generated PNG datasets."""

import os
import tempfile

from helpers import xla_flags  # noqa: E402  (imports nothing heavy)

# Before jax is imported anywhere: every in-process test sees 4 CPU devices, so
# the sharded steps really split batches; the tools' CPU kernels; fast compiles.
os.environ['XLA_FLAGS'] = xla_flags(4, os.environ.get('XLA_FLAGS', ''))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# The tests compile the same tiny programs many times, here and in the
# subprocesses they start (which inherit this environment): a persistent XLA
# cache shared by all of them compiles each program once. Only compilation is
# skipped; every program still runs.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    tempfile.gettempdir(), f'deblur_jax_tests_xla_cache_{os.getuid()}'))

import sys  # noqa: E402

import pytest  # noqa: E402

from helpers import REPO, make_pair_tree  # noqa: E402

if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))  # `from configs import ...` in config files.


@pytest.fixture
def pair_tree(tmp_path):
  return make_pair_tree(tmp_path / 'data')


@pytest.fixture
def tiny_config():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  return tiny.get_config()


def pytest_collection_modifyitems(config, items):
  """tf.test.TestCase's session helper `test_session` (inherited by the TFDS builder
  test) is not a test: pytest would report it as skipped every run."""
  del config
  items[:] = [item for item in items if item.name != 'test_session']
