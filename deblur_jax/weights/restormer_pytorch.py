"""The official PyTorch Restormer weights (github.com/swz30/Restormer: motion_deblurring.pth,
single_image_defocus_deblurring.pth, deraining.pth, gaussian_color_denoising_*.pth,
dual_pixel_defocus_deblurring.pth) as Flax parameters of
deblur_jax.models.restormer.Restormer.

The released files hold {'params': state_dict}. The sizes (width, blocks and
heads per level, FFN expansion, biases, LayerNorm type, dual-pixel input) are read
from the keys, and every key and shape is checked against that architecture.
Keys map by renaming (the table in models/restormer.py); conv weights (out, in,
kh, kw) become kernels (kh, kw, in, out), depthwise ones (C, 1, 3, 3) -> (3, 3, 1, C).
"""

import re

from deblur_jax import models
from deblur_jax.models import restormer
from deblur_jax.weights import state_dicts

PRESETS = restormer.PRESETS  # --model name -> the official sizes
_DEFAULT = restormer.PRESETS['restormer_motion']
# The last downsampling conv: only Restormer state dicts have it.
MARK_KEY = 'down3_4.body.0.weight'

# Flax module path -> PyTorch module name, first match wins.
_MODULE_NAMES = (
    (r'patch_embed', r'patch_embed.proj'),
    (r'(down1_2|down2_3|down3_4|up4_3|up3_2|up2_1)', r'\1.body.0'),
    (r'(encoder_level\d|latent|decoder_level\d|refinement)_(\d+)(/.+)?', r'\1.\2\3'),
    (r'(reduce_chan_level\d|skip_conv|output)', r'\1'),
)
_LEVELS = ('encoder_level1', 'encoder_level2', 'encoder_level3', 'latent')
_LEVEL_KEY = re.compile(r'(encoder_level[123]|latent|refinement)\.(\d+)\.')


def torch_key(flax_path: tuple[str, ...]) -> str:
  """The official state-dict key of a Flax parameter path, e.g.
  ('encoder_level1_0', 'norm1', 'scale') -> 'encoder_level1.0.norm1.body.weight',
  ('latent_3', 'attn', 'temperature') -> 'latent.3.attn.temperature',
  ('down1_2', 'kernel') -> 'down1_2.body.0.weight'."""
  return state_dicts.layer_norm_body_key(flax_path, _MODULE_NAMES)


def _first_dim(state_dict: dict, key: str, default: int) -> int:
  value = state_dict.get(key)
  return value.shape[0] if getattr(value, 'ndim', 0) >= 1 else default


def model_sizes(state_dict: dict) -> dict:
  """The Restormer fields read from the keys: dim (patch_embed's output channels),
  num_blocks and num_refinement_blocks (1 + the highest block index per level),
  heads (each level's first attention temperature), ffn_expansion_factor (one that
  gives every level's hidden width), use_bias (the output conv's bias),
  layernorm_type (BiasFree when the norms have no bias) and dual_pixel_task
  (skip_conv). The motion preset stands in for what the keys do not show."""
  dim = _first_dim(state_dict, 'patch_embed.proj.weight', _DEFAULT['dim'])
  counts = {}
  for key in map(str, state_dict):
    if match := _LEVEL_KEY.match(key):
      counts[match.group(1)] = max(counts.get(match.group(1), 0), int(match.group(2)) + 1)
  heads = tuple(_first_dim(state_dict, f'{level}.0.attn.temperature', default)
                for level, default in zip(_LEVELS, _DEFAULT['heads']))
  widths = {'encoder_level1': dim, 'encoder_level2': 2 * dim, 'encoder_level3': 4 * dim,
            'latent': 8 * dim, 'decoder_level1': 2 * dim, 'refinement': 2 * dim}
  hiddens = [(width, state_dict[key].shape[1]) for level, width in widths.items()
             if getattr(state_dict.get(key := f'{level}.0.ffn.project_out.weight'), 'ndim', 0)
             == 4]
  return {'dim': dim,
          'num_blocks': tuple(counts.get(level, 0) for level in _LEVELS),
          'num_refinement_blocks': counts.get('refinement', 0),
          'heads': heads,
          'ffn_expansion_factor': state_dicts.expansion_factor(
              hiddens, _DEFAULT['ffn_expansion_factor']),
          'use_bias': 'output.bias' in state_dict,
          'layernorm_type': ('WithBias' if 'encoder_level1.0.norm1.body.bias' in state_dict
                             else 'BiasFree'),
          'dual_pixel_task': 'skip_conv.weight' in state_dict}


def describe(sizes: dict) -> str:
  """'dim 48, blocks [4, 6, 6, 8], ...' of Restormer sizes (or a model config)."""
  extra = ', dual-pixel (6 input channels)' if sizes['dual_pixel_task'] else ''
  return (f"dim {sizes['dim']}, blocks {list(sizes['num_blocks'])}, "
          f"{sizes['num_refinement_blocks']} refinement blocks, heads {list(sizes['heads'])}, "
          f"FFN expansion {sizes['ffn_expansion_factor']:g}, {sizes['layernorm_type']} "
          f"LayerNorm, {'with' if sizes['use_bias'] else 'no'} biases{extra}")


def params_from_state_dict(state_dict: dict, sizes: dict, source: str) -> dict:
  """The Flax 'params' tree (float32) of an official state dict for
  Restormer(**sizes). Raises InputError naming every missing, unexpected and
  misshapen key."""
  model = restormer.Restormer(**sizes)
  template = models.variables_template(model)['params']
  return state_dicts.params_from_template(
      state_dict, template, torch_key, state_dicts.conv_axes,
      f'a Restormer state dict with {describe(sizes)}', source)


def convert(state_dict: dict, model_name: str | None, source: str) -> tuple[dict, dict, str]:
  """(Flax params, model config, the preset they match) of a checked official state
  dict. The sizes come from the keys whatever `model_name` says (a warning when
  they differ from its preset)."""
  sizes = model_sizes(state_dict)
  params = params_from_state_dict(state_dict, sizes, source)
  # The input layout decides first: a dual-pixel model is never read as an RGB one.
  same_input = {name: preset for name, preset in PRESETS.items()
                if preset['dual_pixel_task'] == sizes['dual_pixel_task'] or name == model_name}
  matched = state_dicts.matching_preset(sizes, same_input, model_name, describe)
  config = {'name': 'restormer', **sizes, 'num_blocks': list(sizes['num_blocks']),
            'heads': list(sizes['heads'])}
  return params, config, matched
