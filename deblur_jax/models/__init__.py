"""The model registry: every model is built by name from `config.model`."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deblur_jax.errors import InputError
from deblur_jax.models import mimo_unet

# name -> linen module class. Each class's dataclass fields are its config knobs,
# and `size_multiple` is what its input height and width must divide by.
MODELS = {
    'mimo_unet': mimo_unet.MIMOUNet,
}


def _knobs(module_class) -> set[str]:
  hidden = {'parent', 'name', 'dtype'}
  return {f.name for f in dataclasses.fields(module_class) if f.init and f.name not in hidden}


def get_model_class(name: str):
  if name not in MODELS:
    raise InputError(f'Unknown model {name!r} in config.model.name; choose one of '
                     f'{sorted(MODELS)}.')
  return MODELS[name]


def build_model(model_config, dtype: Any = jnp.float32) -> nn.Module:
  """Builds `config.model` as a linen module computing in `dtype`.

  Every field of `model_config` except `name` must be an attribute of the
  model class; a field the model does not have is an error naming it.
  """
  module_class = get_model_class(model_config.name)
  kwargs = {k: v for k, v in model_config.items() if k != 'name'}
  unknown = sorted(set(kwargs) - _knobs(module_class))
  if unknown:
    raise InputError(f'config.model has fields {unknown} that model {model_config.name!r} '
                     f'does not take; it takes {sorted(_knobs(module_class))}.')
  return module_class(**kwargs, dtype=dtype)
