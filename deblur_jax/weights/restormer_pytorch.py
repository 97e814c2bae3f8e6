"""Official PyTorch Restormer state dicts (github.com/swz30/Restormer) as Flax
parameters of deblur_jax.models.restormer.Restormer.

Keys map by renaming (the table in models/restormer.py): block indices join
their level's name (encoder_level1.0 -> encoder_level1_0), the wrappers
patch_embed.proj, norm*.body and down/up*.body.0 drop their inner names, conv
weights (out, in, kh, kw) become kernels (kh, kw, in, out) (depthwise ones
(C, 1, 3, 3) -> (3, 3, 1, C)), LayerNorm weights 'scale's.

Not yet: reading .pth files, checking keys and shapes against a model, presets
from the keys, and writing a checkpoint (see weights/nafnet_pytorch.py).
"""

import re

import numpy as np
from flax import traverse_util

from deblur_jax.weights import state_dicts

_BLOCK = re.compile(r'^(encoder_level[123]|latent|decoder_level[123]|refinement)\.(\d+)\.')
_WRAPPERS = (('patch_embed.proj.', 'patch_embed.'), ('.body.0.', '.'), ('.body.', '.'))


def flax_path(key: str, ndim: int) -> tuple[str, ...]:
  """The Flax parameter path of an official state-dict key, e.g.
  'encoder_level1.0.attn.qkv.weight' (4-D) -> ('encoder_level1_0', 'attn', 'qkv', 'kernel'),
  'latent.3.norm2.body.weight' (1-D) -> ('latent_3', 'norm2', 'scale'),
  'down1_2.body.0.weight' -> ('down1_2', 'kernel')."""
  name = _BLOCK.sub(r'\1_\2.', key)
  for old, new in _WRAPPERS:
    name = name.replace(old, new)
  *modules, param = name.split('.')
  if param == 'weight':
    param = 'kernel' if ndim == 4 else 'scale'
  return (*modules, param)


def params_from_state_dict(state_dict: dict) -> dict:
  """The Flax 'params' tree (float32 NumPy arrays) of an official Restormer state
  dict (name -> array). Shapes are not checked here: compare the tree with the
  model's `jax.eval_shape(model.init, ...)` to do so."""
  flat = {}
  for key, value in state_dict.items():
    value = np.asarray(value)
    axes = state_dicts.CONV_AXES if value.ndim == 4 else None
    flat[flax_path(key, value.ndim)] = state_dicts.to_flax(value, axes)
  return traverse_util.unflatten_dict(flat)
