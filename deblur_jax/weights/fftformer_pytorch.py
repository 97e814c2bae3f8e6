"""The official PyTorch FFTformer weights (github.com/kkkls/FFTformer: fftformer_GoPro.pth)
as Flax parameters of deblur_jax.models.fftformer.FFTformer.

The released file is a bare state dict (no 'params' entry). The sizes (width,
blocks per level, refinement blocks, FFN expansion, biases) are read from the
keys, and every key and shape is checked against that architecture, the unused
`reduce_chan_level2` included (the official model builds it; a strict load needs
it). Keys map by renaming (the table in models/fftformer.py).
"""

import re

from deblur_jax import models
from deblur_jax.models import fftformer
from deblur_jax.weights import state_dicts

PRESETS = fftformer.PRESETS  # --model name -> the official sizes
_DEFAULT = fftformer.PRESETS['fftformer']
# The first Fuse's input conv: only FFTformer state dicts have it.
MARK_KEY = 'fuse1.conv.weight'

# Flax module path -> PyTorch module name, first match wins.
_MODULE_NAMES = (
    (r'patch_embed', r'patch_embed.proj'),
    (r'(down1_2|down2_3|up3_2|up2_1)', r'\1.body.1'),
    (r'(encoder_level\d|decoder_level\d|refinement)_(\d+)(/.+)?', r'\1.\2\3'),
    (r'(fuse\d|reduce_chan_level2|output)(/.+)?', r'\1\2'),
)
_LEVEL_KEY = re.compile(r'(encoder_level[123]|refinement)\.(\d+)\.')


def torch_key(flax_path: tuple[str, ...]) -> str:
  """The official state-dict key of a Flax parameter path, e.g.
  ('encoder_level1_0', 'norm2', 'scale') -> 'encoder_level1.0.norm2.body.weight',
  ('down1_2', 'kernel') -> 'down1_2.body.1.weight',
  ('decoder_level3_0', 'ffn', 'fft') -> 'decoder_level3.0.ffn.fft'."""
  return state_dicts.layer_norm_body_key(flax_path, _MODULE_NAMES)


def model_sizes(state_dict: dict) -> dict:
  """FFTformer fields read from the keys: dim (patch_embed's output channels),
  num_blocks (the fourth entry, which the model never uses, as the preset's),
  num_refinement_blocks, ffn_expansion_factor (one that gives every level's DFFN
  hidden width) and use_bias. The GoPro preset stands in for what the keys do not
  show."""
  embed = state_dict.get('patch_embed.proj.weight')
  dim = embed.shape[0] if getattr(embed, 'ndim', 0) == 4 else _DEFAULT['dim']
  counts = {}
  for key in map(str, state_dict):
    if match := _LEVEL_KEY.match(key):
      counts[match.group(1)] = max(counts.get(match.group(1), 0), int(match.group(2)) + 1)
  widths = {'encoder_level1': dim, 'encoder_level2': 2 * dim, 'encoder_level3': 4 * dim}
  hiddens = [(width, state_dict[key].shape[1]) for level, width in widths.items()
             if getattr(state_dict.get(key := f'{level}.0.ffn.project_out.weight'), 'ndim', 0)
             == 4]
  return {'dim': dim,
          'num_blocks': tuple(counts.get(f'encoder_level{i}', 0) for i in (1, 2, 3))
                        + tuple(_DEFAULT['num_blocks'][3:]),
          'num_refinement_blocks': counts.get('refinement', 0),
          'ffn_expansion_factor': state_dicts.expansion_factor(
              hiddens, _DEFAULT['ffn_expansion_factor']),
          'use_bias': 'patch_embed.proj.bias' in state_dict}


def describe(sizes: dict) -> str:
  """'dim 48, blocks [6, 6, 12], ...' of FFTformer sizes (or a model config)."""
  return (f"dim {sizes['dim']}, blocks {list(sizes['num_blocks'])[:3]}, "
          f"{sizes['num_refinement_blocks']} refinement blocks, FFN expansion "
          f"{sizes['ffn_expansion_factor']:g}, {'with' if sizes['use_bias'] else 'no'} biases")


def params_from_state_dict(state_dict: dict, source: str = 'the state dict') -> dict:
  """The Flax 'params' tree (float32) of an official FFTformer state dict (PyTorch
  key -> NumPy array). Raises InputError naming every missing, unexpected and
  misshapen key for the architecture its keys describe."""
  sizes = model_sizes(state_dict)
  template = models.variables_template(fftformer.FFTformer(**sizes))['params']
  return state_dicts.params_from_template(
      state_dict, template, torch_key, state_dicts.conv_axes,
      f'an FFTformer state dict with {describe(sizes)}', source)


def convert(state_dict: dict, model_name: str | None, source: str) -> tuple[dict, dict, str]:
  """(Flax params, model config, the preset they match) of a checked official state
  dict; the sizes come from the keys whatever `model_name` says."""
  sizes = model_sizes(state_dict)
  params = params_from_state_dict(state_dict, source)
  matched = state_dicts.matching_preset(sizes, PRESETS, model_name, describe)
  return params, {'name': 'fftformer', **sizes, 'num_blocks': list(sizes['num_blocks'])}, \
      matched
