"""ONNX graphs of every registered model give the library's images in ONNX Runtime
and OpenCV's DNN module, at sizes that are multiples of no model's."""

import json

import cv2
import flax.linen as nn
import jax
import numpy as np
import pytest

from deblur_jax import models
from deblur_jax.core.errors import InputError
from deblur_jax.inference import deblur, onnx_graph
from helpers import (
  TINY_MODELS,
  random_variables,
  run_tool,
  tiny_model_config,
  write_tiny_checkpoint,
)

pytest.importorskip('jax2onnx')  # the onnx extra, which .ci/run installs

# How each model exports: 'any' size, or the start of the one-line error that says why
# it cannot.
EXPORTS = {
    'mimo': 'any',
    'nafnet': 'any',
    'restormer': 'any',
    'fftformer': 'any',  # its 8x8-patch FFTs as DFT matrix products (layers.plain_forms)
    'autoencoder:tiny': 'any',
    'autoencoder:attention,tiny': 'any',
    'unet': 'any',
    'resunet': 'any',
    'gan': 'any',
    # jax2onnx sizes its windows, stacked on the batch axis, wrongly (a jnp.concatenate
    # along a symbolic axis); with that avoided, its scan's interleave is an interior
    # padding ONNX has no operation for, and a loop form gives ONNX Runtime a graph of
    # inconsistent shapes.
    'evssm': 'EVSSM cannot be written as an ONNX graph',
}
IMAGE_SIZE = (20, 28)  # 'one' size: multiples of no model's (8, 16, 32)


def key(spec):
  return spec[0] if spec[0] != 'autoencoder' else f'{spec[0]}:{spec[1]}'


def test_every_registered_model_says_how_it_exports():
  assert sorted(key(spec) for spec in TINY_MODELS) == sorted(EXPORTS)


def opencv_max_difference(path, model, variables, image_size) -> float:
  """OpenCV's DNN module against the library at onnx_graph.probe_shapes."""
  net = cv2.dnn.readNetFromONNX(str(path))
  reference = deblur.make_deblur_fn(model, variables)
  worst = 0.0
  for shape in onnx_graph.probe_shapes(model, image_size):
    images = np.random.default_rng(1).uniform(size=shape).astype(np.float32)
    net.setInput(images)
    expected = np.asarray(reference(images.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    worst = max(worst, float(np.abs(net.forward() - expected).max()))
  return worst


@pytest.mark.parametrize('spec', TINY_MODELS, ids=key)
def test_every_model_exports_and_runs_in_onnx_runtime_and_opencv_as_the_library(spec, tmp_path):
  """Batch 1 and 2 (onnx_graph.probe_shapes) within 1e-4; each model as EXPORTS says."""
  model = models.build_model(tiny_model_config(*spec))
  variables = random_variables(model)
  expected = EXPORTS[key(spec)]
  if expected != 'any':
    with pytest.raises(InputError, match=f'^{expected}'):
      onnx_graph.convert(model, variables, IMAGE_SIZE)
    return
  proto = onnx_graph.convert(model, variables)
  assert onnx_graph.check(proto, model, variables) <= 1e-4
  assert input_dims(proto) == ['batch', 3, 'height', 'width']
  path = tmp_path / 'model.onnx'
  path.write_bytes(proto.SerializeToString())
  assert opencv_max_difference(path, model, variables, None) <= 1e-4


def input_dims(proto) -> list:
  graph_input = proto.graph.input[0]
  assert graph_input.name == 'images'
  return [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]


def test_a_graph_for_one_size_takes_any_batch_and_a_graph_that_fails_the_check_is_refused():
  """--image_size: fixed height and width; `check` runs every graph before it is written
  and refuses, naming the model and the way out, one that fails at a probe size."""
  model = models.build_model(tiny_model_config('mimo', 'tiny', {}))
  variables = random_variables(model)
  proto = onnx_graph.convert(model, variables, IMAGE_SIZE)
  assert input_dims(proto) == ['batch', 3, *IMAGE_SIZE]
  assert onnx_graph.check(proto, model, variables, IMAGE_SIZE) <= 1e-4  # batch 1 and 2
  with pytest.raises(InputError, match=r'^MIMOUNet cannot be written as an ONNX graph for any '
                                       r'image size \(ONNX Runtime cannot run the graph at 21x34'
                                       r'.*; export it for one size with --image_size=HxW\.$'):
    onnx_graph.check(proto, model, variables)  # as if it were for any size


def test_the_metadata_names_the_model_its_size_config_and_padding(tmp_path):
  model = models.build_model(tiny_model_config('mimo', 'tiny', {}))
  variables = random_variables(model)
  meta = onnx_graph.metadata(onnx_graph.convert(model, variables, step=7))
  assert meta['model'] == 'MIMOUNet' and meta['step'] == '7' and meta['image_size'] == 'any'
  assert int(meta['parameters']) == sum(x.size for x in
                                        jax.tree.leaves(variables['params']))
  assert json.loads(meta['config'])['name'] == 'mimo_unet'
  assert meta['padding'].startswith('reflect-pads the bottom and right to a multiple of 4')


def test_a_float16_graph_stays_close_to_float32_or_is_refused_where_it_overflows():
  """Checked at 720p too: NAFNet's TLC sums a whole feature map, past float16's range."""
  model = models.build_model(tiny_model_config('mimo', 'tiny', {}))
  variables = random_variables(model)
  proto = onnx_graph.convert(model, variables, IMAGE_SIZE, dtype='float16')  # one size: quick
  assert any(init.data_type == 10 for init in proto.graph.initializer)  # FLOAT16 weights
  assert 1e-5 < onnx_graph.check(proto, model, variables, IMAGE_SIZE, 'float16') < 1e-2
  model = models.build_model(tiny_model_config('nafnet', 'tiny', {'tlc_train_size': 8}))
  variables = random_variables(model)
  proto = onnx_graph.convert(model, variables, dtype='float16')
  with pytest.raises(InputError, match=r'^NAFNet in float16 differs from the library by nan at '
                                       r'720x1280 .*export it in float32\.$'):
    onnx_graph.check(proto, model, variables, dtype='float16')


def test_the_export_command_writes_an_onnx_file_once(tmp_path):
  workdir = tmp_path / 'run'
  model, variables = write_tiny_checkpoint(workdir)
  output = tmp_path / 'mimo.onnx'
  proc = run_tool('deblur_jax.export', f'--workdir={workdir}', f'--output={output}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  images = np.random.default_rng(2).uniform(size=(2, 3, 13, 22)).astype(np.float32)
  np.testing.assert_allclose(
      onnx_graph.onnx_runtime_fn(str(output))(images),
      np.asarray(deblur.make_deblur_fn(model, variables)(images.transpose(0, 2, 3, 1)))
      .transpose(0, 3, 1, 2), atol=1e-4)
  written = output.read_bytes()
  for args, error in (
      ((), f"Error: --output='{output}' exists; pass --overwrite to replace it."),
      (('--dtype=bfloat16', '--overwrite'), 'Error: --dtype=bfloat16: ONNX graphs are float32 '
                                            'or float16.'),
      (('--platforms=cpu', '--overwrite'), 'Error: --platforms is for .jaxexport files, not '
                                           'ONNX graphs.')):
    proc = run_tool('deblur_jax.export', f'--workdir={workdir}', f'--output={output}', *args)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('Error:')]
    assert proc.returncode == 2 and errors == [error] and 'Traceback' not in proc.stderr
  assert output.read_bytes() == written
  proc = run_tool('deblur_jax.export', f'--workdir={workdir}',
                  f'--output={tmp_path}/missing/mimo.onnx')
  assert proc.returncode == 2 and 'missing does not exist' in proc.stderr
  assert not (tmp_path / 'missing').exists()


class PlatformBranches(nn.Module):
  """Chooses its computation by platform when lowered: nothing ONNX can hold."""
  size_multiple = 1

  @nn.compact
  def __call__(self, x, train=False):
    return [jax.lax.platform_dependent(x, cpu=lambda y: 2 * y, default=lambda y: 3 * y)]


def test_an_operation_the_converter_cannot_write_is_one_line_naming_it_and_the_model():
  with pytest.raises(InputError, match=r"^PlatformBranches uses the operation 'platform_index', "
                                       r'which the ONNX converter \(jax2onnx\) cannot express\.$'):
    onnx_graph.convert(PlatformBranches(), {})
