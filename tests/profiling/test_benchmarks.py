"""Benchmark records: timings, FLOPs and memory of the compiled programs, on 4 CPU devices."""

import types

import jax
import numpy as np
import pytest

from deblur_jax.data import pipeline
from deblur_jax.profiling import benchmarks


def bench(config, what, **kwargs):
  args = {'batch': 4, 'height': 32, 'width': 32, 'dtype': 'float32', 'steps': 2, 'warmup': 1}
  return benchmarks.run_benchmark(config, what, **{**args, **kwargs})


@pytest.mark.parametrize('what,unit', [('train', 'crops'), ('infer', 'frames')])
def test_a_record_has_sane_times_flops_and_memory(tiny_config, what, unit):
  record = bench(tiny_config, what)
  assert record['what'] == what and record['params'] == 88291
  assert record['height'] == record['width'] == 32
  assert record['num_devices'] == jax.device_count() == 4
  assert 0 < record['step_ms_min'] <= record['step_ms_median']
  assert record['items_per_s'] == pytest.approx(record['batch'] / record['step_ms_median'] * 1e3,
                                                rel=1e-2), unit
  assert record['compile_s'] > 0 and record['gflops_per_step'] > 0
  assert record['compiled_peak_bytes'] > 0
  assert record['peak_fraction'] is None  # no known peak for a CPU


def test_the_onnx_bench_times_onnx_runtime_and_xla_on_the_same_frames(tiny_config):
  pytest.importorskip('jax2onnx')
  record = bench(tiny_config, 'onnx', height=20, width=28)
  assert record['what'] == 'onnx' and record['runtime'].startswith('onnxruntime ')
  assert 0 < record['step_ms_min'] <= record['step_ms_median'] and record['xla_step_ms_median'] > 0
  assert record['onnx_bytes'] > 4 * record['params']  # float32 weights inside
  assert 0 <= record['max_abs_difference_from_xla'] < 1e-4
  assert record['opencv_step_ms_median'] > 0 and record['max_abs_difference_opencv_from_xla'] < 1e-4


def test_fsdp_shards_the_state_and_the_record_says_so(tiny_config):
  """On 4 devices FSDP splits the large arrays of the parameters and of Adam's
  moments: each device's compiled step takes about half the bytes of the
  replicated state."""
  tiny_config.train.fsdp_min_size = 1024
  args_bytes = {}
  for fsdp in (False, True):
    tiny_config.train.fsdp = fsdp
    record = bench(tiny_config, 'train', steps=1, warmup=0)
    assert record['fsdp'] is fsdp and record['num_devices'] == 4
    args_bytes[fsdp] = record['compiled_argument_bytes']
  assert args_bytes[False] > 3 * 4 * record['params']  # parameters, mu, nu in float32
  assert args_bytes[True] < 0.6 * args_bytes[False]


def test_peak_flops_by_device_kind_and_dtype():
  h100 = types.SimpleNamespace(device_kind='NVIDIA H100 80GB HBM3')
  assert benchmarks.peak_flops(h100, 'bfloat16') == 989e12
  assert benchmarks.peak_flops(h100, 'float32') == 494e12
  assert benchmarks.peak_flops(jax.devices()[0], 'float32') is None  # a CPU


def test_time_calls_times_steps_calls_after_the_warmup():
  calls = []
  times = benchmarks.time_calls(lambda: calls.append(1), steps=3, warmup=2)
  assert len(calls) == 5 and len(times) == 3 and min(times) >= 0


def test_input_bench_reports_crops_per_cpu_second_and_per_core(tiny_config, pair_tree, tmp_path):
  tiny_config.data.dir = str(pair_tree)
  tiny_config.data.cache_dir = str(tmp_path / 'cache')  # cache 'auto': a file cache here
  record = benchmarks.run_benchmark(tiny_config, 'input', batch=4, height=32, width=32,
                                    dtype='float32', steps=3, warmup=1)
  assert record['cache'] == 'file' and record['train_images'] == 6
  assert record['batch_dtype'] == 'uint8'
  assert record['cores'] == pipeline.usable_cpus() == record['threads']
  assert record['items_per_s'] > 0 and record['cpu_s'] > 0
  # 3 timed batches of 4 crops; cpu_s is rounded to 0.1 ms, about 1% of it here.
  assert record['crops_per_cpu_s'] == pytest.approx(3 * 4 / record['cpu_s'], rel=0.05)
  assert record['crops_per_s_per_core'] == pytest.approx(record['items_per_s'] / record['cores'],
                                                         rel=1e-2)


def test_input_bench_of_the_demo_source_reports_float_batches_and_no_cache(tiny_config):
  record = benchmarks.run_benchmark(tiny_config, 'input', batch=4, height=32, width=32,
                                    dtype='float32', steps=1, warmup=1)
  assert record['cache'] == 'none' and record['batch_dtype'] == np.dtype(np.float32).name


def test_process_cpu_seconds_counts_this_processs_work():
  start = benchmarks.process_cpu_seconds()
  np.linalg.svd(np.random.default_rng(0).standard_normal((300, 300)))
  assert benchmarks.process_cpu_seconds() > start
