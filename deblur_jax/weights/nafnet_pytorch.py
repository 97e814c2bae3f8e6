"""The official PyTorch NAFNet weights (github.com/megvii-research/NAFNet, e.g.
NAFNet-GoPro-width32.pth and NAFNet-GoPro-width64.pth) as Flax parameters and an
Orbax checkpoint.

The file holds {'params': state_dict} (BasicSR's layout) or a bare state dict;
the width and the NAFBlocks per level are read from its keys, and every key
and shape is checked against that architecture. The checkpoint written has the
items 'model' ({'params': ...}) and 'config' (the converted model's fields,
with TLC at the official 256 training crop) at step 0, which evaluation,
deblur_jax.predict and deblur_jax.export restore; it has no optimizer state to
resume training from.
"""

import re

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from deblur_jax import models
from deblur_jax.models import nafnet
from deblur_jax.weights import state_dicts

# The official models were trained on 256x256 crops and are evaluated with TLC there.
TLC_TRAIN_SIZE = 256
PRESETS = nafnet.PRESETS  # --model name -> the official sizes
_DEFAULT = nafnet.PRESETS['nafnet_width32']  # stands in for sizes a file does not show

# Flax module path -> PyTorch module name (see the table in models/nafnet.py).
_MODULE_NAMES = (
    (r'(encoders|decoders)_(\d+)_(\d+)/sca', r'\1.\2.\3.sca.1'),
    (r'(encoders|decoders)_(\d+)_(\d+)(/.+)?', r'\1.\2.\3\4'),
    (r'middle_blks_(\d+)/sca', r'middle_blks.\1.sca.1'),
    (r'middle_blks_(\d+)(/.+)?', r'middle_blks.\1\2'),
    (r'downs_(\d+)', r'downs.\1'),
    (r'ups_(\d+)', r'ups.\1.0'),
    (r'(intro|ending)', r'\1'),
)
_PARAM_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}
MARK_KEY = 'intro.weight'  # only NAFNet state dicts have it
_BLOCK_KEY = re.compile(r'(encoders|decoders)\.(\d+)\.(\d+)\.')
_MIDDLE_KEY = re.compile(r'middle_blks\.(\d+)\.')


def torch_key(flax_path: tuple[str, ...]) -> str:
  """The official state-dict key of a per-block Flax parameter path
  (`nafnet.unstack_blocks`'s), e.g.
  ('encoders_0_0', 'sca', 'kernel') -> 'encoders.0.0.sca.1.weight',
  ('decoders_1_0', 'norm2', 'scale') -> 'decoders.1.0.norm2.weight',
  ('ups_2', 'kernel') -> 'ups.2.0.weight'."""
  module = state_dicts.torch_module_name(flax_path, _MODULE_NAMES)
  return f'{module}.{_PARAM_NAMES.get(flax_path[-1], flax_path[-1])}'


def _torch_shape(flax_path: tuple[str, ...], shape: tuple) -> tuple:
  """The PyTorch shape of a Flax parameter: conv weights (out, in, kh, kw), beta
  and gamma (1, C, 1, 1), biases and norm weights as they are."""
  if flax_path[-1] == 'kernel':
    return state_dicts.torch_shape(shape, state_dicts.CONV_AXES)
  if flax_path[-1] in ('beta', 'gamma'):
    return (1, shape[0], 1, 1)
  return tuple(shape)


def _to_flax(flax_path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
  """A checked PyTorch tensor as the float32 Flax parameter. The depthwise conv2
  weight (2C, 1, 3, 3) becomes (3, 3, 1, 2C), feature_group_count's layout, by
  the same transpose as any conv."""
  if flax_path[-1] == 'kernel':
    return state_dicts.to_flax(value, state_dicts.CONV_AXES)
  return state_dicts.to_flax(value, None).reshape(-1)


def model_sizes(state_dict: dict) -> dict:
  """The NAFNet fields read from the keys: width (intro's output channels),
  enc_blk_nums, middle_blk_num and dec_blk_nums (1 + the highest block index
  per level, so a missing block shows as missing keys). The width32 preset
  stands in for whatever the keys do not show."""
  intro = state_dict.get('intro.weight')
  width = (intro.shape[0] if isinstance(intro, np.ndarray) and intro.ndim == 4
           else _DEFAULT['width'])
  blocks = {'encoders': {}, 'decoders': {}}
  middle = -1
  for key in map(str, state_dict):
    if match := _BLOCK_KEY.match(key):
      per_level = blocks[match.group(1)]
      level, block = int(match.group(2)), int(match.group(3))
      per_level[level] = max(per_level.get(level, 0), block + 1)
    elif match := _MIDDLE_KEY.match(key):
      middle = max(middle, int(match.group(1)))
  levels = max([1 + max(b, default=-1) for b in blocks.values()])
  if levels == 0:
    enc, dec = _DEFAULT['enc_blk_nums'], _DEFAULT['dec_blk_nums']
  else:
    enc, dec = ([per_level.get(i, 0) for i in range(levels)] for per_level in blocks.values())
  return {'width': width, 'enc_blk_nums': tuple(enc),
          'middle_blk_num': middle + 1 if middle >= 0 else _DEFAULT['middle_blk_num'],
          'dec_blk_nums': tuple(dec)}


def flax_param_shapes(sizes: dict) -> dict[tuple[str, ...], tuple]:
  """Flattened per-block Flax parameter path (`nafnet.unstack_blocks`'s, e.g.
  ('encoders_3_27', 'conv2', 'kernel')) -> shape, of NAFNet(**sizes)."""
  template = models.variables_template(nafnet.NAFNet(**sizes))['params']
  flat = traverse_util.flatten_dict(nafnet.unstack_blocks(template))
  return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def expected_torch_shapes(sizes: dict) -> dict[str, tuple]:
  """Official state-dict key -> PyTorch shape, for NAFNet(**sizes)."""
  return {torch_key(path): _torch_shape(path, shape)
          for path, shape in flax_param_shapes(sizes).items()}


def describe(sizes: dict) -> str:
  """'width 32, encoder blocks [1, 1, 1, 28], ...' of NAFNet sizes (or a model config)."""
  return (f"width {sizes['width']}, encoder blocks {list(sizes['enc_blk_nums'])}, "
          f"{sizes['middle_blk_num']} middle blocks, decoder blocks {list(sizes['dec_blk_nums'])}")


def convert_state_dict(state_dict: dict, sizes: dict, source: str) -> dict:
  """The Flax 'params' tree (float32, the blocks of each level stacked) of an
  official state dict. Raises
  InputError naming every missing, unexpected and misshapen key (non-float
  tensors count as misshapen) for NAFNet(**sizes)."""
  shapes = flax_param_shapes(sizes)
  state_dicts.check_state_dict(
      state_dict, {torch_key(p): _torch_shape(p, s) for p, s in shapes.items()},
      f'a NAFNet state dict with {describe(sizes)}', source)
  flat = {path: jnp.asarray(_to_flax(path, state_dict[torch_key(path)])) for path in shapes}
  return nafnet.stack_blocks(traverse_util.unflatten_dict(flat))


def convert(state_dict: dict, model_name: str | None, source: str) -> tuple[dict, dict, str]:
  """(Flax params, model config, the preset they match) of a checked official state
  dict. The sizes come from the keys whatever `model_name` says (the converter
  refuses other families before); TLC is on at the official 256 training crop."""
  sizes = model_sizes(state_dict)
  params = convert_state_dict(state_dict, sizes, source)
  matched = next((name for name, p in nafnet.PRESETS.items()
                  if {k: tuple(p[k]) if isinstance(p[k], (list, tuple)) else p[k]
                      for k in sizes} == sizes), 'nafnet_width32')
  config = {'name': 'nafnet', **sizes, 'enc_blk_nums': list(sizes['enc_blk_nums']),
            'dec_blk_nums': list(sizes['dec_blk_nums']), 'dropout_rate': 0.0,
            'tlc_train_size': TLC_TRAIN_SIZE}
  if model_name not in (None, matched):
    logging.warning('The weights have %s, not those of --model=%s; converting them as they '
                    'are.', describe(sizes), model_name)
  return params, config, matched
