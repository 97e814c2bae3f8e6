"""The official PyTorch EVSSM weights (github.com/kkkls/EVSSM: net_g_GoPro.pth) as
Flax parameters of deblur_jax.models.evssm.EVSSM.

The released file holds {'params': state_dict} (test.py loads it strictly). The
sizes (width, blocks per level, FFN expansion, biases) are read from the keys, and
every key and shape is checked against that architecture. Keys map by renaming (the
table in models/evssm.py); conv kernels are transposed to HWIO, Linear weights to
(in, out) and x_conv's Conv1d weight to (7, 1, C).
"""

import re

from flax import traverse_util

from deblur_jax import models
from deblur_jax.models import evssm
from deblur_jax.weights import state_dicts

PRESETS = evssm.PRESETS  # --model name -> the official sizes
_DEFAULT = evssm.PRESETS['evssm']
# The scan's state matrix of the first block: only EVSSM state dicts have it.
MARK_KEY = 'encoder_level1.block0.attn.A_logs'

# Flax module path -> PyTorch module name, first match wins.
_MODULE_NAMES = (
    (r'patch_embed', r'patch_embed.proj'),
    (r'(down1_2|down2_3|up3_2|up2_1)', r'\1.body.1'),
    (r'((?:en|de)coder_level\d)_(\d+)(/.+)?', r'\1.block\2\3'),
    (r'output', r'output'),
)
_LEVEL_KEY = re.compile(r'encoder_level([123])\.block(\d+)\.')
# A 'kernel' of this many axes -> the transpose of its PyTorch weight: Conv2d (out, in,
# kh, kw) -> HWIO, Conv1d (C, 1, k) -> (k, 1, C), Linear (out, in) -> (in, out).
KERNEL_AXES = {4: state_dicts.CONV_AXES, 3: (2, 1, 0), 2: (1, 0)}


def torch_key(flax_path: tuple[str, ...]) -> str:
  """The official state-dict key of a Flax parameter path, e.g.
  ('encoder_level1_0', 'norm1', 'scale') -> 'encoder_level1.block0.norm1.body.weight',
  ('decoder_level3_2', 'attn', 'A_logs') -> 'decoder_level3.block2.attn.A_logs',
  ('down1_2', 'kernel') -> 'down1_2.body.1.weight'."""
  return state_dicts.layer_norm_body_key(flax_path, _MODULE_NAMES)


def model_sizes(state_dict: dict) -> dict:
  """EVSSM fields read from the keys: dim (patch_embed's output channels),
  num_blocks (encoder blocks per level), ffn_expansion_factor (one that gives every
  level's EDFFN hidden width) and use_bias (the output conv's bias). The GoPro
  preset stands in for what the keys do not show."""
  embed = state_dict.get('patch_embed.proj.weight')
  dim = embed.shape[0] if getattr(embed, 'ndim', 0) == 4 else _DEFAULT['dim']
  counts = {}
  for key in map(str, state_dict):
    if match := _LEVEL_KEY.match(key):
      level = int(match.group(1))
      counts[level] = max(counts.get(level, 0), int(match.group(2)) + 1)
  hiddens = [(dim << (level - 1), state_dict[key].shape[1]) for level in (1, 2, 3)
             if getattr(state_dict.get(key := f'encoder_level{level}.block0.ffn.project_out.'
                                              'weight'), 'ndim', 0) == 4]
  return {'dim': dim,
          'num_blocks': tuple(counts.get(level, 0) for level in (1, 2, 3)),
          'ffn_expansion_factor': state_dicts.expansion_factor(
              hiddens, _DEFAULT['ffn_expansion_factor']),
          'use_bias': 'output.bias' in state_dict}


def describe(sizes: dict) -> str:
  """'dim 48, blocks [6, 6, 12], ...' of EVSSM sizes (or a model config)."""
  return (f"dim {sizes['dim']}, blocks {list(sizes['num_blocks'])}, FFN expansion "
          f"{sizes['ffn_expansion_factor']:g}, {'with' if sizes['use_bias'] else 'no'} biases")


def params_from_state_dict(state_dict: dict, source: str = 'the state dict') -> dict:
  """The Flax 'params' tree (float32) of an official EVSSM state dict (PyTorch key
  -> NumPy array). Raises InputError naming every missing, unexpected and
  misshapen key for the architecture its keys describe."""
  sizes = model_sizes(state_dict)
  template = models.variables_template(evssm.EVSSM(**sizes))['params']
  ranks = {path: len(leaf.shape) for path, leaf in
           traverse_util.flatten_dict(template).items()}

  def axes(path):
    return KERNEL_AXES[ranks[path]] if path[-1] == 'kernel' else None

  return state_dicts.params_from_template(
      state_dict, template, torch_key, axes, f'an EVSSM state dict with {describe(sizes)}',
      source)


def convert(state_dict: dict, model_name: str | None, source: str) -> tuple[dict, dict, str]:
  """(Flax params, model config, the preset they match) of a checked official state
  dict; the sizes come from the keys whatever `model_name` says."""
  sizes = model_sizes(state_dict)
  params = params_from_state_dict(state_dict, source)
  matched = state_dicts.matching_preset(sizes, PRESETS, model_name, describe)
  return params, {'name': 'evssm', **sizes, 'num_blocks': list(sizes['num_blocks'])}, matched
