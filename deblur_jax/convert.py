"""Converts official PyTorch MIMO-UNet / MIMO-UNet+ weights into an Orbax checkpoint.

  python -m deblur_jax.convert --input=MIMO-UNet.pkl --model=mimo_unet --output=DIR
  python -m deblur_jax.convert --input=MIMO-UNetPlus.pkl --model=mimo_unet_plus --output=DIR
  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR --mode=eval

Reads the file without PyTorch (deblur_jax.weights.pytorch_reader), in the legacy or
the zip serialization. The file holds {'model': state_dict, ...} or a bare
state dict; the base width and the ResBlocks per level are read from it, and
every key and shape is checked against that architecture. DIR/checkpoints gets
a checkpoint at step 0 with the items 'model' ({'params': ...}) and 'config'
(the converted model's fields), which evaluation, deblur_jax.predict and
deblur_jax.export restore; it has no optimizer state to resume training from.
"""

import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging
from flax import traverse_util

from deblur_jax import cli
from deblur_jax.errors import InputError
from deblur_jax.models import mimo_unet
from deblur_jax.training import checkpoints
from deblur_jax.weights import pytorch_reader

# --model -> the official architecture. Dropout only matters for training.
PRESETS = {
    'mimo_unet': {'base_width': 32, 'num_res': 8, 'dropout_rate': 0.0},
    'mimo_unet_plus': {'base_width': 32, 'num_res': 20, 'dropout_rate': 0.1},
}
EVAL_CONFIGS = {'mimo_unet': 'configs/mimo.py', 'mimo_unet_plus': 'configs/mimo.py:plus'}

# Flax module path -> PyTorch module name (see the table in models/mimo_unet.py).
_MODULE_NAMES = (
    (r'encoder_(\d+)/res_(\d+)/conv_(\d+)/conv', r'Encoder.\1.layers.\2.main.\3.main.0'),
    (r'decoder_(\d+)/res_(\d+)/conv_(\d+)/conv', r'Decoder.\1.layers.\2.main.\3.main.0'),
    (r'feat_extract_(\d+)/conv', r'feat_extract.\1.main.0'),
    (r'convs_(\d+)/conv', r'Convs.\1.main.0'),
    (r'convs_out_(\d+)/conv', r'ConvsOut.\1.main.0'),
    (r'fam_(\d+)/merge/conv', r'FAM\1.merge.main.0'),
    (r'scm_(\d+)/main_(\d+)/conv', r'SCM\1.main.\2.main.0'),
    (r'scm_(\d+)/out/conv', r'SCM\1.conv.main.0'),
    (r'aff_(\d+)/conv_(\d+)/conv', r'AFFs.\1.conv.\2.main.0'),
)
_PARAM_NAMES = {'kernel': 'weight', 'bias': 'bias'}
# Axes of the PyTorch weight that make the Flax kernel (kh, kw, in, out): Conv2d
# weights are (out, in, kh, kw), ConvTranspose2d weights (in, out, kh, kw).
_CONV_AXES = (2, 3, 1, 0)
_TRANSPOSED_CONV_AXES = (2, 3, 0, 1)
_TRANSPOSED_CONVS = ('feat_extract_3', 'feat_extract_4')
_FIRST_CONV = 'feat_extract.0.main.0.weight'  # (base width, 3, 3, 3)
_BLOCK_KEY = re.compile(r'Encoder\.0\.layers\.(\d+)\.')
_MAX_LISTED = 12  # keys named per kind of mismatch


def torch_key(flax_path: tuple[str, ...]) -> str:
  """The official state-dict key of a Flax parameter path, e.g.
  ('encoder_1', 'res_0', 'conv_1', 'conv', 'kernel') ->
  'Encoder.1.layers.0.main.1.main.0.weight'."""
  module = '/'.join(flax_path[:-1])
  for pattern, template in _MODULE_NAMES:
    match = re.fullmatch(pattern, module)
    if match:
      return f'{match.expand(template)}.{_PARAM_NAMES[flax_path[-1]]}'
  raise ValueError(f'No PyTorch name for the Flax parameter {"/".join(flax_path)}.')


def _torch_axes(flax_path: tuple[str, ...]):
  """How to transpose the PyTorch tensor into the Flax one; None for biases."""
  if flax_path[-1] == 'bias':
    return None
  return _TRANSPOSED_CONV_AXES if flax_path[0] in _TRANSPOSED_CONVS else _CONV_AXES


def flax_param_shapes(base_width: int, num_res: int) -> dict[tuple[str, ...], tuple]:
  """Flattened Flax parameter path -> shape of MIMOUNet(base_width, num_res)."""
  model = mimo_unet.MIMOUNet(base_width=base_width, num_res=num_res)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  flat = traverse_util.flatten_dict(variables['params'])
  return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def expected_torch_shapes(base_width: int, num_res: int) -> dict[str, tuple]:
  """Official state-dict key -> PyTorch shape, for the given sizes."""
  shapes = {}
  for path, shape in flax_param_shapes(base_width, num_res).items():
    axes = _torch_axes(path)
    shapes[torch_key(path)] = shape if axes is None else tuple(shape[a] for a in np.argsort(axes))
  return shapes


def find_state_dict(checkpoint: Any, source: str) -> dict[str, np.ndarray]:
  """The state dict in a loaded checkpoint: checkpoint['model'], or the
  checkpoint itself when it holds tensors only; a 'module.' prefix (from
  DataParallel) is removed."""
  if isinstance(checkpoint, dict) and isinstance(checkpoint.get('model'), dict):
    state_dict = checkpoint['model']
  elif isinstance(checkpoint, dict) and checkpoint and all(
      isinstance(v, np.ndarray) for v in checkpoint.values()):
    state_dict = checkpoint
  else:
    what = (f'a dict with keys {_listing(sorted(map(str, checkpoint)))}'
            if isinstance(checkpoint, dict) else f'a {type(checkpoint).__name__}')
    raise InputError(f"{source} holds {what}: neither {{'model': state_dict, ...}} nor a state "
                     'dict of tensors.')
  if state_dict and all(isinstance(k, str) and k.startswith('module.') for k in state_dict):
    state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
  return state_dict


def infer_sizes(state_dict: dict, default: tuple[int, int]) -> tuple[int, int]:
  """(base width, ResBlocks per level) read from the state dict; `default`
  stands in for a size that cannot be read (checked and reported later)."""
  first = state_dict.get(_FIRST_CONV)
  base_width = first.shape[0] if isinstance(first, np.ndarray) and first.ndim == 4 else default[0]
  blocks = {m.group(1) for k in state_dict if (m := _BLOCK_KEY.match(str(k)))}
  return base_width, len(blocks) or default[1]


def _listing(items: list) -> str:
  shown = ', '.join(map(str, items[:_MAX_LISTED]))
  more = f' and {len(items) - _MAX_LISTED} more' if len(items) > _MAX_LISTED else ''
  return f'[{shown}{more}]'


def _describe(value) -> str:
  if isinstance(value, np.ndarray):
    return f'{value.dtype} {tuple(value.shape)}'
  return type(value).__name__


def check_state_dict(state_dict: dict, base_width: int, num_res: int, source: str) -> None:
  """Raises InputError naming every missing, unexpected and misshapen key
  (non-float tensors count as misshapen) for MIMOUNet(base_width, num_res)."""
  expected = expected_torch_shapes(base_width, num_res)
  missing = sorted(set(expected) - set(state_dict))
  unexpected = sorted(map(str, set(state_dict) - set(expected)))
  misshapen = []
  for key in sorted(set(expected) & set(state_dict)):
    value = state_dict[key]
    if not (isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
            and value.shape == expected[key]):
      misshapen.append(f'{key} (expected float {expected[key]}, found {_describe(value)})')
  problems = []
  if missing:
    problems.append(f'{len(missing)} of its {len(expected)} keys are missing: '
                    f'{_listing(missing)}')
  if unexpected:
    problems.append(f'{len(unexpected)} keys are unexpected: {_listing(unexpected)}')
  if misshapen:
    problems.append(f'{len(misshapen)} keys are misshapen: {_listing(misshapen)}')
  if problems:
    raise InputError(f'{source} does not hold a MIMO-UNet state dict with base width '
                     f'{base_width} and {num_res} ResBlocks per level: ' + '; '.join(problems)
                     + '.')


def convert_state_dict(state_dict: dict, base_width: int, num_res: int, source: str) -> dict:
  """The Flax 'params' tree (float32) of a checked official state dict."""
  check_state_dict(state_dict, base_width, num_res, source)
  flat = {}
  for path in flax_param_shapes(base_width, num_res):
    value = state_dict[torch_key(path)].astype(np.float32)
    axes = _torch_axes(path)
    flat[path] = jnp.asarray(value if axes is None else value.transpose(axes))
  return traverse_util.unflatten_dict(flat)


def converted_config(model_name: str, base_width: int, num_res: int, source: str) -> dict:
  """What the converted checkpoint records as its config: the model fields
  (which evaluation compares with its --config, and predict builds from) and
  where the weights came from."""
  return {'model': {'name': 'mimo_unet', 'base_width': base_width, 'num_res': num_res,
                    'dropout_rate': PRESETS[model_name]['dropout_rate'], 'batch_norm': False},
          'converted_from': os.path.abspath(source)}


def _check_output(output_dir: str) -> None:
  """Refuses an output path that is a file or that already holds checkpoints."""
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise InputError(f'--output={output_dir} is a file; give a directory for the converted '
                     'checkpoint.')
  target = checkpoints.checkpoint_dir(output_dir)
  if os.path.exists(target) and not (os.path.isdir(target) and not os.listdir(target)):
    raise InputError(f'{target} already exists and is not an empty directory; converting '
                     'never overwrites: give a new --output directory.')


def _warn_if_not_preset(model_name: str, base_width: int, num_res: int) -> None:
  preset = PRESETS[model_name]
  if (base_width, num_res) == (preset['base_width'], preset['num_res']):
    return
  alike = [name for name, p in PRESETS.items()
           if (p['base_width'], p['num_res']) == (base_width, num_res)]
  hint = f' They look like --model={alike[0]}.' if alike else ''
  logging.warning('The weights have base width %d and %d ResBlocks per level, not the %d and '
                  '%d of --model=%s; converting them as they are.%s', base_width, num_res,
                  preset['base_width'], preset['num_res'], model_name, hint)


def convert(input_path: str, model_name: str, output_dir: str) -> dict:
  """Converts the PyTorch checkpoint `input_path` into `output_dir/checkpoints`
  (step 0). Returns the saved config's model section."""
  if model_name not in PRESETS:
    raise InputError(f'Unknown --model={model_name!r}; choose one of {sorted(PRESETS)}.')
  _check_output(output_dir)
  if not os.path.isfile(input_path):
    raise InputError(f'--input={input_path} is not a file.')
  checkpoint = pytorch_reader.load(input_path)
  state_dict = find_state_dict(checkpoint, input_path)
  preset = PRESETS[model_name]
  base_width, num_res = infer_sizes(state_dict, (preset['base_width'], preset['num_res']))
  params = convert_state_dict(state_dict, base_width, num_res, input_path)
  _warn_if_not_preset(model_name, base_width, num_res)

  config_dict = converted_config(model_name, base_width, num_res, input_path)
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise InputError(f'Cannot create --output={output_dir}: {e}') from e
  manager = checkpoints.create_manager(output_dir, keep=1)
  try:
    checkpoints.save_model(manager, 0, {'params': params}, config_dict)
  finally:
    manager.close()  # waits for the asynchronous save
  num_params = sum(x.size for x in jax.tree.leaves(params))
  logging.info('Converted %d parameters (base width %d, %d ResBlocks per level) from %s into '
               '%s (step 0).', num_params, base_width, num_res, input_path,
               checkpoints.checkpoint_dir(output_dir))
  return config_dict['model']


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only when run as a program: predict.py defines --input and --output too,
  and a test process may import both modules."""
  flags.DEFINE_string('input', None, 'The PyTorch checkpoint (.pkl/.pth/.pt) to convert.')
  flags.DEFINE_enum('model', None, list(PRESETS),
                    'Which official model the weights are for: mimo_unet or mimo_unet_plus.')
  flags.DEFINE_string('output', None, 'The work directory to write; the checkpoint goes into '
                      'OUTPUT/checkpoints, which must not exist yet or be empty.')
  flags.mark_flags_as_required(['input', 'model', 'output'])


def main(_):
  model_config = convert(FLAGS.input, FLAGS.model, FLAGS.output)
  preset = PRESETS[FLAGS.model]
  overrides = ''
  if (model_config['base_width'], model_config['num_res']) != (preset['base_width'],
                                                               preset['num_res']):
    overrides = (f' --config.model.base_width={model_config["base_width"]}'
                 f' --config.model.num_res={model_config["num_res"]}')
  print(f'Wrote {checkpoints.checkpoint_dir(FLAGS.output)}. Evaluate it with:\n'
        f'  python -m deblur_jax.main --config={EVAL_CONFIGS[FLAGS.model]}{overrides} '
        f'--workdir={FLAGS.output} --mode=eval')


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
