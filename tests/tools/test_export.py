"""`python -m deblur_jax.export` end to end on a tiny checkpoint."""

import jax
import numpy as np

from deblur_jax.inference import deblur
from helpers import run_tool, write_tiny_checkpoint


def test_export_command_writes_a_loadable_file_and_refuses_a_folder(tmp_path):
  workdir = tmp_path / 'run'
  model, variables = write_tiny_checkpoint(workdir)
  proc = run_tool('deblur_jax.export', f'--workdir={workdir}', f'--output={tmp_path}/m.jaxexport',
                  '--platforms=cpu,cuda,tpu')
  assert proc.returncode == 0, proc.stderr[-2000:]
  loaded = jax.export.deserialize((tmp_path / 'm.jaxexport').read_bytes())
  assert loaded.platforms == ('cpu', 'cuda', 'tpu')
  x = np.random.default_rng(0).uniform(size=(1, 12, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(loaded.call(x), deblur.make_deblur_fn(model, variables)(x),
                             atol=1e-6)
  proc = run_tool('deblur_jax.export', f'--workdir={workdir}', f'--output={tmp_path}')
  assert proc.returncode == 2 and 'is a folder; give a file name' in proc.stderr


def test_an_unknown_platform_is_one_error_line(tmp_path):
  proc = run_tool('deblur_jax.export', f'--workdir={tmp_path}', f'--output={tmp_path}/m.jaxexport',
                  '--platforms=cpu,gpu')
  errors = [line for line in proc.stderr.splitlines() if line.startswith('Error:')]
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr
  assert errors == ["Error: Unknown --platforms='gpu'; choose one of ['cpu', 'cuda', 'rocm', "
                    "'tpu']."]
