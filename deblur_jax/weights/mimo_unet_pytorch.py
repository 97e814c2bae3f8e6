"""The official PyTorch MIMO-UNet / MIMO-UNet+ weights (github.com/chosj95/MIMO-UNet) as
Flax parameters and an Orbax checkpoint.

The file holds {'model': state_dict, ...} or a bare state dict; the base width
and the ResBlocks per level are read from it, and every key and shape is
checked against that architecture. The checkpoint written has the items
'model' ({'params': ...}) and 'config' (the converted model's fields) at step 0,
which evaluation, deblur_jax.predict and deblur_jax.export restore; it has no
optimizer state to resume training from.
"""

import re

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from deblur_jax import models
from deblur_jax.weights import state_dicts

# --model -> the official architecture. Dropout only matters for training.
PRESETS = {
    'mimo_unet': {'base_width': 32, 'num_res': 8, 'dropout_rate': 0.0},
    'mimo_unet_plus': {'base_width': 32, 'num_res': 20, 'dropout_rate': 0.1},
}

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
_TRANSPOSED_CONVS = ('feat_extract_3', 'feat_extract_4')
# The first conv, (base width, 3, 3, 3): only MIMO-UNet state dicts have it.
MARK_KEY = 'feat_extract.0.main.0.weight'
_BLOCK_KEY = re.compile(r'Encoder\.0\.layers\.(\d+)\.')


def torch_key(flax_path: tuple[str, ...]) -> str:
  """The official state-dict key of a Flax parameter path, e.g.
  ('encoder_1', 'res_0', 'conv_1', 'conv', 'kernel') ->
  'Encoder.1.layers.0.main.1.main.0.weight'."""
  module = state_dicts.torch_module_name(flax_path, _MODULE_NAMES)
  return f'{module}.{_PARAM_NAMES[flax_path[-1]]}'


def _torch_axes(flax_path: tuple[str, ...]):
  """How to transpose the PyTorch tensor into the Flax one; None for biases."""
  if flax_path[-1] == 'bias':
    return None
  if flax_path[0] in _TRANSPOSED_CONVS:
    return state_dicts.TRANSPOSED_CONV_AXES
  return state_dicts.CONV_AXES


def flax_param_shapes(base_width: int, num_res: int) -> dict[tuple[str, ...], tuple]:
  """Flattened Flax parameter path -> shape of MIMOUNet(base_width, num_res)."""
  model = models.mimo_unet.MIMOUNet(base_width=base_width, num_res=num_res)
  flat = traverse_util.flatten_dict(models.variables_template(model)['params'])
  return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def expected_torch_shapes(base_width: int, num_res: int) -> dict[str, tuple]:
  """Official state-dict key -> PyTorch shape, for the given sizes."""
  return {torch_key(path): state_dicts.torch_shape(shape, _torch_axes(path))
          for path, shape in flax_param_shapes(base_width, num_res).items()}


def infer_sizes(state_dict: dict, default: tuple[int, int]) -> tuple[int, int]:
  """(base width, ResBlocks per level) read from the state dict; `default`
  stands in for a size that cannot be read (checked and reported later)."""
  first = state_dict.get(MARK_KEY)
  base_width = first.shape[0] if isinstance(first, np.ndarray) and first.ndim == 4 else default[0]
  blocks = {m.group(1) for k in state_dict if (m := _BLOCK_KEY.match(str(k)))}
  return base_width, len(blocks) or default[1]


def convert_state_dict(state_dict: dict, base_width: int, num_res: int, source: str) -> dict:
  """The Flax 'params' tree (float32) of an official state dict. Raises
  InputError naming every missing, unexpected and misshapen key (non-float
  tensors count as misshapen) for MIMOUNet(base_width, num_res)."""
  state_dicts.check_state_dict(
      state_dict, expected_torch_shapes(base_width, num_res),
      f'a MIMO-UNet state dict with base width {base_width} and {num_res} ResBlocks per level',
      source)
  flat = {path: jnp.asarray(state_dicts.to_flax(state_dict[torch_key(path)], _torch_axes(path)))
          for path in flax_param_shapes(base_width, num_res)}
  return traverse_util.unflatten_dict(flat)


def model_config(model_name: str, base_width: int, num_res: int) -> dict:
  """The model fields the converted checkpoint records (which evaluation compares
  with its --config, and predict builds from)."""
  return {'name': 'mimo_unet', 'base_width': base_width, 'num_res': num_res,
          'dropout_rate': PRESETS[model_name]['dropout_rate'], 'batch_norm': False}


def describe(config: dict) -> str:
  return f"base width {config['base_width']}, {config['num_res']} ResBlocks per level"


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


def convert(state_dict: dict, model_name: str | None, source: str) -> tuple[dict, dict, str]:
  """(Flax params, model config, the preset they match) of a checked official state
  dict; `model_name` (a PRESETS key, or None for the sizes found) is what the user
  said the weights are."""
  preset = PRESETS[model_name or 'mimo_unet']
  base_width, num_res = infer_sizes(state_dict, (preset['base_width'], preset['num_res']))
  params = convert_state_dict(state_dict, base_width, num_res, source)
  if model_name is not None:
    _warn_if_not_preset(model_name, base_width, num_res)
  matched = next((name for name, p in PRESETS.items()
                  if (p['base_width'], p['num_res']) == (base_width, num_res)),
                 model_name or 'mimo_unet')
  return params, model_config(model_name or matched, base_width, num_res), matched
