"""torchvision's ImageNet VGG16 / VGG19 weights as the .npz the perceptual loss reads.

The torchvision state dict (or {'model': state_dict}) holds the conv weights
`features.{i}.weight` (out, in, 3, 3) and `features.{i}.bias`; they are checked
against the network and saved as float32 Flax arrays `features_{i}/kernel`
(3, 3, in, out) and `features_{i}/bias`; the classifier is dropped.
`load_vgg_params` reads the file back as `models.vgg.VGGFeatures` parameters.
"""

import os
import zipfile
from typing import Any

import jax.numpy as jnp
import numpy as np

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.models import vgg as vgg_model
from deblur_jax.weights import pytorch_reader, state_dicts

_PARAM_NAMES = {'kernel': 'weight', 'bias': 'bias'}


def torch_key(flax_key: str) -> str:
  """'features_14/kernel' -> 'features.14.weight'."""
  module, name = flax_key.split('/')
  return f"{module.replace('_', '.')}.{_PARAM_NAMES[name]}"


def _torch_axes(flax_key: str):
  return None if flax_key.endswith('/bias') else state_dicts.CONV_AXES


def convert_state_dict(state_dict: dict, network: str, source: str) -> dict[str, np.ndarray]:
  """Flat Flax parameters {'features_0/kernel': HWIO float32, ...} of a torchvision
  `network` state dict. Raises InputError naming missing and misshapen keys, and
  `features.*` keys the network does not have (another VGG variant)."""
  lookup(vgg_model.BLOCKS, network, '--network')
  shapes = vgg_model.param_shapes(network)
  expected = {torch_key(k): state_dicts.torch_shape(s, _torch_axes(k)) for k, s in shapes.items()}
  state_dicts.check_state_dict(
      state_dict, expected, f"torchvision's {network} weights (without batch norm)", source,
      ignore_unexpected=lambda key: not key.startswith('features.'))
  return {k: state_dicts.to_flax(state_dict[torch_key(k)], _torch_axes(k)) for k in shapes}


def convert_file(input_path: str, network: str, output_path: str) -> int:
  """Converts the torchvision checkpoint `input_path` into `output_path` (.npz);
  returns the number of parameters written. Never overwrites a file."""
  if not output_path.endswith('.npz'):
    raise InputError(f'--output={output_path} must end with .npz.')
  if os.path.exists(output_path):
    raise InputError(f'--output={output_path} already exists; converting never overwrites: '
                     'give a new file name.')
  if not os.path.isfile(input_path):
    url = vgg_model.TORCHVISION_FILES.get(network, vgg_model.TORCHVISION_FILES['vgg19'])
    raise InputError(f'--input={input_path} is not a file; download it from {url}.')
  state_dict = state_dicts.find_state_dict(pytorch_reader.load(input_path), input_path)
  flat = convert_state_dict(state_dict, network, input_path)
  try:
    with open(output_path, 'xb') as file:
      np.savez(file, **flat)
  except OSError as e:
    raise InputError(f'Cannot write --output={output_path}: {e}') from e
  return sum(value.size for value in flat.values())


def unflatten(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """{'features_0/kernel': a, ...} -> {'features_0': {'kernel': a, ...}, ...}."""
  params: dict[str, dict[str, Any]] = {}
  for key, value in flat.items():
    module, name = key.split('/')
    params.setdefault(module, {})[name] = value
  return params


def how_to_convert(network: str) -> str:
  """Advice for an error message: where the weights come from and the command."""
  url = vgg_model.TORCHVISION_FILES[network]
  return (f"download torchvision's {network} weights ({url}) and convert them with "
          f'python -m deblur_jax.convert_vgg --input={os.path.basename(url)} '
          f'--network={network} --output={network}.npz')


def load_vgg_params(path: str, network: str, layer: str | None = None) -> dict:
  """The Flax 'params' of `network` (float32) from an .npz written by deblur_jax.convert_vgg.

  Every conv of `network` must be in the file with its shape (so a VGG19 file
  is not taken for VGG16); only those `layer` needs are returned (all when
  None). Raises InputError naming the file and what is wrong with it.
  """
  lookup(vgg_model.BLOCKS, network, 'VGG network')
  if layer is not None and layer not in vgg_model.layer_names(network):
    raise InputError(f'{network} has no layer {layer!r}; choose one of '
                     f'{vgg_model.layer_names(network)}.')
  if not os.path.isfile(path):
    raise InputError(f'The VGG weights file {path!r} does not exist: '
                     f'{how_to_convert(network)}.')
  try:
    with np.load(path, allow_pickle=False) as archive:
      flat = {key: archive[key] for key in archive.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise InputError(f'{path} is not an .npz file of VGG weights ({e}); '
                     f'{how_to_convert(network)}.') from e
  problems = state_dicts.key_problems(vgg_model.param_shapes(network), flat)
  if problems:
    others = [n for n in vgg_model.BLOCKS
              if n != network and set(vgg_model.param_shapes(n)) == set(flat)]
    hint = f' It looks like {others[0]} weights.' if others else ''
    raise InputError(f'{path} does not hold {network} weights: ' + '; '.join(problems)
                     + f'.{hint} To make one, {how_to_convert(network)}.')
  needed = vgg_model.param_shapes(network, layer)
  return unflatten({key: jnp.asarray(flat[key], jnp.float32) for key in needed})
