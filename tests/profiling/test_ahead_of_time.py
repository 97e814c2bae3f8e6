"""Compile-only records for the local CPU devices, and one-line errors for TPU
topologies; nothing here needs libtpu."""

import importlib.util
import re

import jax
import pytest
from jax.experimental import topologies

from deblur_jax.core.errors import InputError
from deblur_jax.profiling import ahead_of_time, benchmarks


@pytest.mark.parametrize('what', ['train', 'infer'])
def test_a_compile_only_record_has_compile_time_memory_and_flops(tiny_config, what):
  record = ahead_of_time.compile_only(tiny_config, what, batch=4, height=32, width=32,
                                      dtype='float32')
  assert record['what'] == what and record['compile_only'] and record['params'] == 88291
  assert record['platform'] == 'cpu' and record['num_devices'] == jax.device_count() == 4
  assert record['compile_s'] > 0
  assert record['gflops_per_device'] > 0 and record['gbytes_accessed_per_device'] > 0
  assert record['compiled_peak_bytes'] >= record['compiled_argument_bytes'] > 0
  assert 'device_peak_bytes' not in record  # nothing ran


def test_the_abstract_fsdp_state_compiles_to_the_program_the_bench_runs(tiny_config):
  tiny_config.train.fsdp, tiny_config.train.fsdp_min_size = True, 1024
  compiled = ahead_of_time.compile_only(tiny_config, 'train', 4, 32, 32, 'float32')
  ran = benchmarks.run_benchmark(tiny_config, 'train', 4, 32, 32, 'float32', steps=1, warmup=0)
  for key in ('compiled_argument_bytes', 'compiled_temp_bytes', 'compiled_peak_bytes'):
    assert compiled[key] == ran[key], key
  assert compiled['gflops_per_device'] == ran['gflops_per_device']
  assert ran['gflops_per_step'] == pytest.approx(4 * ran['gflops_per_device'], abs=4e-3)


def test_the_cost_is_per_device(tiny_config):
  """The program each of 4 devices runs on its quarter of the batch costs about
  a quarter of the one-device program's FLOPs."""
  one, four = (ahead_of_time.compile_only(tiny_config, 'infer', 4, 32, 32, 'float32', devices)
               ['gflops_per_device'] for devices in (jax.devices()[:1], jax.devices()))
  assert four == pytest.approx(one / 4, rel=0.05)


def test_compile_only_takes_train_or_infer(tiny_config):
  with pytest.raises(InputError, match='--what=train or --what=infer'):
    ahead_of_time.compile_only(tiny_config, 'input', 4, 32, 32, 'float32')


@pytest.mark.skipif(importlib.util.find_spec('libtpu') is not None, reason='libtpu installed')
def test_a_topology_without_libtpu_says_to_install_it(monkeypatch):
  monkeypatch.delenv('TPU_LIBRARY_PATH', raising=False)
  with pytest.raises(InputError) as error:
    ahead_of_time.topology_devices('v5e:2x2')
  assert str(error.value) == ('--topology=v5e:2x2 compiles through libtpu, which is not '
                              f"installed: `pip install '{ahead_of_time.pinned_libtpu()}'` "
                              '(no TPU needed).')


def test_the_libtpu_to_install_is_the_one_jax_tpu_pins():
  assert re.fullmatch(r'libtpu==[\d.]+\*?', ahead_of_time.pinned_libtpu())


def test_an_unknown_topology_is_one_line_naming_examples(monkeypatch, tmp_path):
  """As libtpu answers a name it does not know (simulated: no libtpu here)."""
  def unknown(name, platform):
    raise jax.errors.JaxRuntimeError(f'INVALID_ARGUMENT: Unknown topology\n  {name} ({platform})')

  monkeypatch.setattr(topologies, 'get_topology_desc', unknown)
  monkeypatch.setenv('TPU_LIBRARY_PATH', str(tmp_path / 'libtpu.so'))
  with pytest.raises(InputError) as error:
    ahead_of_time.topology_devices('v9z:3x3')
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith('--topology=v9z:3x3: libtpu cannot make this TPU topology '
                            '(INVALID_ARGUMENT: Unknown topology v9z:3x3 (tpu))')
  assert 'v5e:2x2' in message
