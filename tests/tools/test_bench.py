"""`python -m deblur_jax.bench` prints one JSON line naming its config."""

import json

from helpers import run_tool


def test_bench_command_prints_one_json_line_with_the_flags_defaults():
  proc = run_tool('deblur_jax.bench', '--config=configs/mimo.py:tiny', '--what=infer', '--steps=1',
                  '--warmup=0')
  assert proc.returncode == 0, proc.stderr[-2000:]
  [line] = proc.stdout.strip().splitlines()
  record = json.loads(line)
  assert next(iter(record)) == 'config' and record['config'] == 'configs/mimo.py:tiny'
  assert record['what'] == 'infer' and record['num_devices'] == 1
  assert record['batch'] == 1  # --what=infer: one image per device
  assert record['height'] == record['width'] == 32  # config.data.crop_size
  assert record['dtype'] == 'float32'  # config.train.compute_dtype


def test_bench_compile_only_prints_the_compiled_record_without_running():
  proc = run_tool('deblur_jax.bench', '--config=configs/mimo.py:tiny', '--what=infer',
                  '--compile_only')
  assert proc.returncode == 0, proc.stderr[-2000:]
  [line] = proc.stdout.strip().splitlines()
  record = json.loads(line)
  assert record['config'] == 'configs/mimo.py:tiny' and record['compile_only']
  assert record['topology'] is None and record['platform'] == 'cpu'
  assert record['compile_s'] > 0 and record['gflops_per_device'] > 0
  assert record['compiled_peak_bytes'] > 0 and 'step_ms_median' not in record
