"""A checkpoint's model as an ONNX graph, converted by jax2onnx and checked in ONNX Runtime.

The graph takes what the PyTorch ecosystem's ONNX models take: float32 N x 3 x H x W,
RGB in [0, 1] (OpenCV's `blobFromImage(..., swapRB=True)`), and returns the
deblurred images in the same layout, clamped to [0, 1] (the finest scale of the
multi-scale models). The model's own padding (reflect to its size multiple, crop
back) is inside the graph. Batch, height and width are dynamic where the converter
writes the model's size arithmetic (`image_size=None`); otherwise, and for models
laid out by the image size (EVSSM), the graph is for one height and width, any
batch. Every graph is run in ONNX Runtime against the library before it is
returned (`check`), so a graph that computes something else is never written.

Needs the `onnx` extra: pip install 'deblur_jax[onnx]'.
"""

import json
import logging as python_logging
import re

import jax
import jax.numpy as jnp
import numpy as np

from deblur_jax import models
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import eval_step
from deblur_jax.inference import deblur, serialize
from deblur_jax.models import layers

OPSET = 20  # ONNX Runtime 1.24+ and OpenCV 5 read it; DFT, Gelu and reflect Pad are in it.
INPUT_NAME, OUTPUT_NAME = 'images', 'deblurred'
# ONNX Runtime against the library, float32 graph (the suite's bound).
TOLERANCE = 1e-4
# A float16 graph against the float32 library: float16 keeps 11 significant bits, and
# deep networks add up many roundings. Measured differences are in docs/deployment.md.
FLOAT16_TOLERANCE = 0.05
DTYPES = ('float32', 'float16')


def _require_packages():
  try:
    import jax2onnx  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    import onnxruntime  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise InputError(f'ONNX export needs the onnx extra ({e.name} is missing): '
                     "pip install 'deblur_jax[onnx]'.") from e


def padding_rule(model) -> str:
  """The model's padding, as the file's metadata says it."""
  multiple = model.size_multiple
  if multiple == 1:
    return 'none outside the model: it pads internally and crops back'
  return (f'reflect-pads the bottom and right to a multiple of {multiple} (repeats rows and '
          'columns where the image is shorter than the padding), crops the output back')


def _nchw_deblur_fn(model, variables):
  def deblur_nchw(images):
    nhwc = jnp.transpose(images, (0, 2, 3, 1))
    deblurred = eval_step.deblur_images(model.apply, variables, nhwc, model.size_multiple)
    return jnp.transpose(deblurred, (0, 3, 1, 2))

  return deblur_nchw


def _input_spec(model, image_size) -> jax.ShapeDtypeStruct:
  """(batch, 3, height, width): symbolic height and width, or `image_size`."""
  serialize.check_image_size(model, image_size)
  if image_size is None:
    return jax.ShapeDtypeStruct(jax.export.symbolic_shape('batch, 3, height, width'),
                                jnp.float32)
  height, width = image_size
  return jax.ShapeDtypeStruct(jax.export.symbolic_shape(f'batch, 3, {height}, {width}'),
                              jnp.float32)


def _converter_error(model, error: Exception, image_size) -> InputError:
  """One line naming the model and the operation jax2onnx could not write."""
  name = type(model).__name__
  message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  message = message if len(message) <= 240 else message[:240] + '...'
  primitive = re.search(r"primitive '([^']+)'", message)
  if primitive:
    return InputError(f'{name} uses the operation {primitive.group(1)!r}, which the ONNX '
                      'converter (jax2onnx) cannot express.')
  if image_size is None:
    return InputError(f'{name} cannot be written as an ONNX graph for any image size '
                      f'({message}); export it for one size with --image_size=HxW.')
  return InputError(f'{name} cannot be written as an ONNX graph: {message}')


def convert(model, variables, image_size=None, dtype: str = 'float32', step: int | None = None):
  """The model as an onnx.ModelProto (see the module docstring), with metadata.

  `image_size` (H, W) fixes the height and width (any batch); models laid out by the
  image size need it. dtype 'float16' stores weights and computes in float16 with
  float32 input and output (onnxconverter-common). Raises an InputError, naming the
  model, if the converter cannot write it."""
  _require_packages()
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top

  if dtype not in DTYPES:
    raise InputError(f'--dtype={dtype}: ONNX graphs are float32 or float16.')
  spec = _input_spec(model, image_size)
  # jax2onnx logs every optional plugin it cannot import (equinox, dm_pix) and onnx_ir
  # every intermediate shape it leaves untyped as warnings: not the user's concern.
  quiet = [python_logging.getLogger(name) for name in ('jax2onnx', 'onnx_ir')]
  levels = [logger.level for logger in quiet]
  for logger in quiet:
    logger.setLevel(python_logging.ERROR)
  try:
    with layers.plain_forms():
      proto = to_onnx(_nchw_deblur_fn(model, variables), [spec], opset=OPSET,
                      model_name=type(model).__name__, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME])
  except (NotImplementedError, ValueError, TypeError, AttributeError, KeyError,
          jax.errors.InconclusiveDimensionOperation) as e:
    raise _converter_error(model, e, image_size) from e
  finally:
    for logger, level in zip(quiet, levels):
      logger.setLevel(level)
  if dtype == 'float16':
    proto = _to_float16(proto)
  metadata = {
      'model': type(model).__name__,
      'parameters': str(models.count_params(variables['params'])),
      'config': json.dumps(models.model_config(model), default=str),
      'padding': padding_rule(model),
      'input': f'{INPUT_NAME}: float32 N x 3 x H x W, RGB in [0, 1]',
      'output': f'{OUTPUT_NAME}: float32 N x 3 x H x W, RGB in [0, 1]',
      'image_size': 'any' if image_size is None else f'{image_size[0]}x{image_size[1]}',
      'dtype': dtype,
      'producer': 'deblur_jax (jax2onnx)',
  }
  if step is not None:
    metadata['step'] = str(step)
  for key, value in metadata.items():
    proto.metadata_props.add(key=key, value=value)
  return proto


def _to_float16(proto):
  """`proto` with float16 weights and compute, float32 input and output
  (onnxconverter-common). The model's own casts to float32 (of integer window sizes,
  say) become casts to float16, which the converter leaves as they are."""
  from onnx import TensorProto  # pylint: disable=g-import-not-at-top
  from onnxconverter_common import float16  # pylint: disable=g-import-not-at-top

  own_casts = {node.name for node in proto.graph.node if node.op_type == 'Cast'}
  proto = float16.convert_float_to_float16(proto, keep_io_types=True)
  outputs = {output.name for output in proto.graph.output}
  for node in proto.graph.node:
    if node.name in own_casts and not outputs.intersection(node.output):
      for attribute in node.attribute:
        if attribute.name == 'to' and attribute.i == TensorProto.FLOAT:
          attribute.i = TensorProto.FLOAT16
  return proto


def runtime_version() -> str:
  import onnxruntime  # pylint: disable=g-import-not-at-top
  return onnxruntime.__version__


def metadata(proto) -> dict:
  """The file's metadata as a dict."""
  return {p.key: p.value for p in proto.metadata_props}


def onnx_runtime_fn(proto_or_path):
  """`images (N, 3, H, W) float32 -> deblurred` in ONNX Runtime's CPU provider."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  source = proto_or_path if isinstance(proto_or_path, str) else proto_or_path.SerializeToString()
  options = onnxruntime.SessionOptions()
  options.log_severity_level = 3  # errors only: not its shape-merging warnings
  session = onnxruntime.InferenceSession(source, options, providers=['CPUExecutionProvider'])
  return lambda images: session.run(None, {INPUT_NAME: np.asarray(images, np.float32)})[0]


# Where float16 graphs are checked too: sums over a whole frame (NAFNet's TLC integral
# image) can pass float16's largest value, 65504, at sizes tiny probes never reach.
FLOAT16_PROBE_SIZE = (720, 1280)


def probe_shapes(model, image_size=None, dtype: str = 'float32') -> list[tuple[int, ...]]:
  """NCHW shapes a graph is checked at: batch 1 and 2, sides that are not multiples
  of the model's (nor of 16), or `image_size`; a float16 graph for any size also at
  FLOAT16_PROBE_SIZE."""
  if image_size is not None:
    return [(1, 3, *image_size), (2, 3, *image_size)]
  low = serialize.min_side(model)
  shapes = [(1, 3, low + 17, low + 30), (2, 3, low + 3, low + 9)]
  return shapes + [(1, 3, *FLOAT16_PROBE_SIZE)] if dtype == 'float16' else shapes


def check(proto, model, variables, image_size=None, dtype: str = 'float32') -> float:
  """The largest difference between ONNX Runtime's output and the library's (float32)
  at `probe_shapes`; an InputError if the graph fails to load or run, or is further
  off than TOLERANCE (FLOAT16_TOLERANCE for a float16 graph; NaN counts as off)."""
  tolerance = FLOAT16_TOLERANCE if dtype == 'float16' else TOLERANCE
  reference = deblur.make_deblur_fn(model, variables)
  rng = np.random.default_rng(0)
  worst, failing = 0.0, 'load the graph'
  try:
    run_onnx = onnx_runtime_fn(proto)
    for shape in probe_shapes(model, image_size, dtype):
      failing = f'run the graph at {shape[2]}x{shape[3]}'
      images = rng.uniform(size=shape).astype(np.float32)
      expected = np.asarray(reference(images.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
      difference = float(np.abs(run_onnx(images) - expected).max())
      worst = difference if np.isnan(difference) else max(worst, difference)
      if not worst <= tolerance:
        break
  except Exception as e:  # pylint: disable=broad-except  (ONNX Runtime's own errors)
    first = str(e).strip().splitlines()[0][:300]
    raise _converter_error(model, RuntimeError(
        f'ONNX Runtime cannot {failing}: {first}'), image_size) from e
  if not worst <= tolerance:
    if dtype == 'float16':
      raise InputError(f'{type(model).__name__} in float16 differs from the library by '
                       f'{worst:.3g} at {shape[2]}x{shape[3]} (more than {tolerance:g}; nan: '
                       'a value beyond float16\'s range): export it in float32.')
    raise _converter_error(model, RuntimeError(
        f'ONNX Runtime differs from the library by {worst:.3g} at {shape[2]}x{shape[3]}, '
        f'more than {tolerance:g}'), image_size)
  return worst
