"""Exported inference programs give the same images as the library, at any size."""

import json

import jax
import numpy as np
import pytest

from deblur_jax import export
from deblur_jax.inference import deblur
from helpers import run_tool, write_tiny_checkpoint


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  model, variables = write_tiny_checkpoint(workdir)
  return workdir, model, variables


def images(*shape):
  return np.random.default_rng(0).uniform(size=shape).astype(np.float32)


def test_jax_export_round_trip_for_any_batch_and_size(tiny_model):
  _, model, variables = tiny_model
  deblurred = jax.export.deserialize(export.export(model, variables).serialize())
  reference = deblur.make_deblur_fn(model, variables)
  for shape in ((2, 20, 28, 3), (1, 21, 30, 3), (1, 5, 7, 3)):
    x = images(*shape)
    out = np.asarray(deblurred.call(x))
    assert out.shape == shape
    np.testing.assert_allclose(out, reference(x), atol=1e-6)


def test_tensorflow_saved_model_round_trip(tiny_model, tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  _, model, variables = tiny_model
  export.write_saved_model(model, variables, str(tmp_path / 'saved'))
  serve = tf.saved_model.load(str(tmp_path / 'saved')).signatures['serving_default']
  x = images(1, 19, 26, 3)
  (out,) = serve(images=tf.constant(x)).values()
  np.testing.assert_allclose(out.numpy(), deblur.make_deblur_fn(model, variables)(x),
                             atol=1e-5)


def test_export_command_writes_a_loadable_file(tiny_model, tmp_path):
  workdir, model, variables = tiny_model
  proc = run_tool('deblur_jax.export', f'--workdir={workdir}', f'--output={tmp_path}/m.jaxexport')
  assert proc.returncode == 0, proc.stderr[-2000:]
  loaded = jax.export.deserialize((tmp_path / 'm.jaxexport').read_bytes())
  x = images(1, 12, 16, 3)
  np.testing.assert_allclose(loaded.call(x), deblur.make_deblur_fn(model, variables)(x),
                             atol=1e-6)
  proc = run_tool('deblur_jax.export', f'--workdir={workdir}', f'--output={tmp_path}')
  assert proc.returncode == 2 and 'is a folder; give a file name' in proc.stderr


@pytest.mark.parametrize('what,unit', [('train', 'crops'), ('infer', 'frames')])
def test_bench_prints_one_sane_json_line(what, unit):
  proc = run_tool('deblur_jax.bench', '--config=configs/tiny.py', f'--what={what}', '--size=32',
                  '--steps=2', '--warmup=1')
  assert proc.returncode == 0, proc.stderr[-2000:]
  record = json.loads(proc.stdout.strip().splitlines()[-1])
  assert record['what'] == what and record['params'] == 88291
  assert record['height'] == record['width'] == 32
  assert 0 < record['step_ms_min'] <= record['step_ms_median']
  assert record['items_per_s'] == pytest.approx(record['batch'] / record['step_ms_median'] * 1e3,
                                                rel=1e-2), unit
  assert record['compile_s'] > 0 and record['gflops_per_step'] > 0
  assert record['compiled_peak_bytes'] > 0
  assert record['peak_fraction'] is None  # no known peak for a CPU


def test_bench_shards_the_state_with_fsdp_and_reports_it():
  """On 4 devices FSDP splits the large arrays of the parameters and of Adam's
  moments (68% of this model's parameters): each device's compiled step takes
  about half the bytes of the replicated state."""
  args_bytes = {}
  for fsdp in (False, True):
    proc = run_tool('deblur_jax.bench', '--config=configs/tiny.py', '--what=train', '--size=32',
                    '--steps=1', '--warmup=0', '--config.model.base_width=32',
                    f'--config.train.fsdp={fsdp}', num_devices=4)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record['fsdp'] is fsdp and record['num_devices'] == 4
    args_bytes[fsdp] = record['compiled_argument_bytes']
  assert args_bytes[False] > 3 * 4 * record['params']  # parameters, mu, nu in float32
  assert args_bytes[True] < 0.6 * args_bytes[False]
