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
# The folders source's default file cache (config.data.cache 'auto', cache_dir '') lives
# under $XDG_CACHE_HOME: a temporary one here and in the subprocesses, not ~/.cache.
os.environ['XDG_CACHE_HOME'] = os.path.join(tempfile.gettempdir(),
                                            f'deblur_jax_tests_cache_{os.getuid()}')
# Every program, also those compiling in under a second (JAX's default threshold):
# the small evaluation and metric programs recur in many tests.
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import pytest  # noqa: E402

from helpers import make_pair_tree  # noqa: E402


@pytest.fixture
def pair_tree(tmp_path):
  return make_pair_tree(tmp_path / 'data')


@pytest.fixture
def tiny_config():
  from deblur_jax.configs import mimo  # pylint: disable=g-import-not-at-top
  return mimo.get_config('tiny')


# The files that take longest (each over a minute of CPU on 2 cores, mostly
# compiling): run first, so that with `-n N --dist loadfile` the last minutes are
# not one worker finishing a long file alone. The first three compile different
# programs; the later ones reuse the tiny config's loop programs that
# training/test_loop.py leaves in the persistent cache, instead of all workers
# compiling those at once.
SLOW_FIRST = ('parallel/test_distributed.py', 'configs/test_model_configs.py',
              'models/test_evssm.py', 'configs/test_evssm_training.py',
              'training/test_loop.py', 'training/test_train_step.py',
              'training/test_preemption.py', 'training/test_init_from.py', 'tools/test_main.py',
              'evaluation/test_results_page.py', 'configs/test_configs.py')


def pytest_collection_modifyitems(config, items):
  """Slow files first (SLOW_FIRST); tf.test.TestCase's session helper `test_session`
  (inherited by the TFDS builder test) is not a test: pytest would report it as
  skipped every run."""
  del config

  def rank(item):
    path = item.path.as_posix()
    return next((i for i, name in enumerate(SLOW_FIRST) if path.endswith(name)),
                len(SLOW_FIRST))

  kept = [item for item in items if item.name != 'test_session']
  items[:] = sorted(kept, key=rank)  # stable: the rest keep their order
