"""The released PyTorch checkpoints deblur_jax converts, by `--model` name.

    convert_file('NAFNet-GoPro-width64.pth', None, 'runs/nafnet64')  # model read from the keys

Each family module (mimo_unet, nafnet, restormer, fftformer, evssm) reads its sizes from
the state dict,
checks every key and shape, and returns the Flax parameters with the config the
checkpoint records; this module finds the state dict, tells the families apart,
and writes the checkpoint (step 0, items 'model' and 'config').
"""

import os

from absl import logging

from deblur_jax import models
from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.weights import (
  evssm_pytorch,
  fftformer_pytorch,
  mimo_unet_pytorch,
  nafnet_pytorch,
  pytorch_reader,
  restormer_pytorch,
  state_dicts,
)

# --model -> (family, the config that trains and evaluates it).
MODELS = {
    'mimo_unet': ('mimo_unet', 'configs/mimo.py'),
    'mimo_unet_plus': ('mimo_unet', 'configs/mimo.py:plus'),
    'nafnet_width32': ('nafnet', 'configs/nafnet.py'),
    'nafnet_width64': ('nafnet', 'configs/nafnet.py:width64'),
    'restormer_motion': ('restormer', 'configs/restormer.py'),
    'restormer_defocus': ('restormer', 'configs/restormer.py:defocus'),
    'restormer_deraining': ('restormer', 'configs/restormer.py:deraining'),
    'restormer_denoising': ('restormer', 'configs/restormer.py:denoising'),
    'restormer_dual_pixel': ('restormer', 'configs/restormer.py:dual_pixel'),
    'fftformer': ('fftformer', 'configs/fftformer.py'),
    'fftformer_realblur': ('fftformer', 'configs/fftformer.py:realblur'),
    'evssm': ('evssm', 'configs/evssm.py'),
}
FAMILIES = {'mimo_unet': mimo_unet_pytorch, 'nafnet': nafnet_pytorch,
            'restormer': restormer_pytorch, 'fftformer': fftformer_pytorch,
            'evssm': evssm_pytorch}
_FAMILY_NAMES = {'mimo_unet': 'MIMO-UNet', 'nafnet': 'NAFNet', 'restormer': 'Restormer',
                 'fftformer': 'FFTformer', 'evssm': 'EVSSM'}


def identify(state_dict: dict) -> str | None:
  """The family whose characteristic key the state dict holds, or None."""
  return next((name for name, family in FAMILIES.items() if family.MARK_KEY in state_dict),
              None)


def _family(model_name: str | None, state_dict: dict, source: str) -> str:
  found = identify(state_dict)
  if model_name is None:
    if found is None:
      keys = sorted(map(str, state_dict))[:6]
      raise InputError(f'{source} holds none of the weights deblur_jax converts '
                       f'({", ".join(_FAMILY_NAMES.values())}; its keys begin {keys}); give '
                       '--model to have its keys checked against one.')
    return found
  family = MODELS[model_name][0]
  if found is not None and found != family:
    alike = [name for name, (f, _) in MODELS.items() if f == found]
    raise InputError(f'{source} holds {found} weights, not {family} ones as '
                     f'--model={model_name} says: use --model={alike[0]} (or one of {alike}), '
                     'or leave --model out to read it from the weights.')
  return family


def convert_file(input_path: str, model_name: str | None, output_dir: str) -> tuple[str, dict]:
  """Converts the PyTorch checkpoint `input_path` into `output_dir/checkpoints` (step 0).

  `model_name` is a key of MODELS, or None to read the family from the keys.
  Returns (the --model name the weights match, the saved config's model section).
  Never overwrites: `output_dir` must not hold checkpoints yet.
  """
  if model_name is not None:
    lookup(MODELS, model_name, '--model')
  state_dicts.check_output_dir(output_dir)
  if not os.path.isfile(input_path):
    raise InputError(f'--input={input_path} is not a file.')
  state_dict = state_dicts.find_state_dict(pytorch_reader.load(input_path), input_path)
  family = FAMILIES[_family(model_name, state_dict, input_path)]
  params, model_config, matched = family.convert(state_dict, model_name, input_path)
  config_dict = {'model': model_config, 'converted_from': os.path.abspath(input_path)}
  state_dicts.save_converted_checkpoint(output_dir, params, config_dict)
  logging.info('Converted %d parameters (%s) from %s into %s (step 0).',
               models.count_params(params), family.describe(model_config),
               input_path, checkpoints.checkpoint_dir(output_dir))
  return model_name or matched, model_config


def overrides(model_name: str, model_config: dict) -> str:
  """' --config.model.FIELD=VALUE ...' for the fields where the converted weights
  differ from the preset `model_name` (whose config file the user will run)."""
  preset = FAMILIES[MODELS[model_name][0]].PRESETS[model_name]
  flags = []
  for field, expected in preset.items():
    value = model_config.get(field, expected)
    if isinstance(value, (list, tuple)):
      if tuple(value) != tuple(expected):
        flags.append(f"'--config.model.{field}=({','.join(map(str, value))},)'")
    elif value != expected:
      flags.append(f'--config.model.{field}={value}')
  return ''.join(f' {flag}' for flag in flags)
