"""Official PyTorch FFTformer state dicts (github.com/kkkls/FFTformer) as Flax
parameters of `deblur_jax.models.fftformer.FFTformer`.

Minimal for now: the sizes are read from the keys, every key and shape is
checked, and the tensors are renamed and transposed (see the table in
models/fftformer.py). No checkpoint writing or registry wiring yet.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from deblur_jax.models import fftformer
from deblur_jax.weights import state_dicts

MARK_KEY = 'patch_embed.proj.weight'
_DEFAULT = fftformer.PRESETS['fftformer']

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
  name = state_dicts.torch_module_name(flax_path, _MODULE_NAMES)
  if re.search(r'(^|\.)norm\d?$', name):  # LayerNorm's WithBias_LayerNorm body
    name += '.body'
  param = {'kernel': 'weight', 'scale': 'weight'}.get(flax_path[-1], flax_path[-1])
  return f'{name}.{param}'


def _axes(flax_path: tuple[str, ...]):
  """The transpose from the PyTorch tensor to the Flax parameter (None: as it is)."""
  return state_dicts.CONV_AXES if flax_path[-1] == 'kernel' else None


def model_sizes(state_dict: dict) -> dict:
  """FFTformer fields read from the keys: dim, num_blocks (the fourth entry, which
  the model never uses, as the preset's), num_refinement_blocks,
  ffn_expansion_factor and bias."""
  dim = state_dict[MARK_KEY].shape[0]
  counts = {}
  for key in map(str, state_dict):
    if match := _LEVEL_KEY.match(key):
      counts[match.group(1)] = max(counts.get(match.group(1), 0), int(match.group(2)) + 1)
  hidden = state_dict['encoder_level1.0.ffn.project_out.weight'].shape[1]
  return {'dim': dim,
          'num_blocks': tuple(counts.get(f'encoder_level{i}', 0) for i in (1, 2, 3))
                        + tuple(_DEFAULT['num_blocks'][3:]),
          'num_refinement_blocks': counts.get('refinement', 0),
          'ffn_expansion_factor': hidden / dim,
          'bias': 'patch_embed.proj.bias' in state_dict}


def params_from_state_dict(state_dict: dict, source: str = 'the state dict') -> dict:
  """The Flax 'params' tree (float32) of an official FFTformer state dict (PyTorch
  key -> NumPy array). Raises InputError naming every missing, unexpected and
  misshapen key for the architecture its keys describe."""
  sizes = model_sizes(state_dict)
  model = fftformer.FFTformer(**sizes)
  template = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32)))['params']
  shapes = {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(template).items()}
  expected = {torch_key(path): state_dicts.torch_shape(shape, _axes(path))
              for path, shape in shapes.items()}
  state_dicts.check_state_dict(state_dict, expected, f'an FFTformer state dict with {sizes}',
                               source)
  flat = {path: jnp.asarray(state_dicts.to_flax(np.asarray(state_dict[torch_key(path)]),
                                                _axes(path)))
          for path in shapes}
  return traverse_util.unflatten_dict(flat)
