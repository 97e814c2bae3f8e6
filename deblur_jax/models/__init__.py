"""The model registry: every model is built by name from `config.model`."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.models import (
  autoencoder,
  evssm,
  fftformer,
  gan,
  mimo_unet,
  nafnet,
  restormer,
  resunet,
  unet,
)

# name -> linen module class. Each class's dataclass fields are its config knobs,
# and `size_multiple` is what its input height and width must divide by.
MODELS = {
    'mimo_unet': mimo_unet.MIMOUNet,
    'nafnet': nafnet.NAFNet,  # NAFNet / NAFNetLocal (TLC with tlc_train_size).
    'unet': unet.UNet,  # The BatchNorm UNet (Keras, Gaussian blurs).
    'resunet': resunet.ResUNet,  # The UNet-ResNet hybrid (972,739 params).
    'autoencoder': autoencoder.ConvAutoencoder,  # The plain conv autoencoder.
    'attention_autoencoder': autoencoder.AttentionAutoencoder,  # Dilated + attention.
    'gan_generator': gan.ResnetGenerator,  # DeblurGAN-style ResNet generator.
    'restormer': restormer.Restormer,  # Restormer (motion, defocus, deraining, denoising).
    'fftformer': fftformer.FFTformer,  # FFTformer (GoPro, RealBlur).
    'evssm': evssm.EVSSM,  # EVSSM (GoPro), Mamba's selective scan in JAX.
}


# config.train.compute_dtype -> the dtype models compute in (parameters stay float32).
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str):
  """The dtype named by config.train.compute_dtype."""
  return lookup(COMPUTE_DTYPES, name, 'config.train.compute_dtype')


# name -> discriminator class, for adversarial training (config.gan.discriminator).
DISCRIMINATORS = gan.DISCRIMINATORS


def model_knobs(module_class) -> set[str]:
  """The config fields `module_class` takes (its dataclass fields, less flax's own)."""
  hidden = {'parent', 'name', 'dtype'}
  return {f.name for f in dataclasses.fields(module_class) if f.init and f.name not in hidden}


def _build(registry: dict, module_config, field: str, dtype: Any) -> nn.Module:
  """Builds `registry[module_config.name]` with the config's other fields as attributes."""
  module_class = lookup(registry, module_config.name, f'{field}.name')
  kwargs = {k: v for k, v in module_config.items() if k != 'name'}
  unknown = sorted(set(kwargs) - model_knobs(module_class))
  if unknown:
    raise InputError(f'{field} has fields {unknown} that model {module_config.name!r} '
                     f'does not take; it takes {sorted(model_knobs(module_class))}.')
  return module_class(**kwargs, dtype=dtype)


def count_params(params) -> int:
  """The number of scalars in a pytree of arrays (a model's parameters)."""
  return sum(x.size for x in jax.tree.leaves(params))


def model_config(model: nn.Module) -> dict:
  """The config a model was built from: its registered name and knobs."""
  name = next(key for key, value in MODELS.items() if value is type(model))
  return {'name': name, **{knob: getattr(model, knob) for knob in sorted(model_knobs(type(model)))}}


def get_model_class(name: str):
  return lookup(MODELS, name, 'config.model.name')


def adversarial_generators() -> list[str]:
  """The models that train with a discriminator."""
  return sorted(n for n, c in MODELS.items() if getattr(c, 'supports_adversarial', False))


def build_model(model_config, dtype: Any = jnp.float32) -> nn.Module:
  """Builds `config.model` as a linen module computing in `dtype`.

  Every field of `model_config` except `name` must be an attribute of the
  model class; a field the model does not have is an error naming it.
  """
  return _build(MODELS, model_config, 'config.model', dtype)


def build_discriminator(disc_config, dtype: Any = jnp.float32) -> nn.Module:
  """Builds `config.gan.discriminator` like `build_model`."""
  return _build(DISCRIMINATORS, disc_config, 'config.gan.discriminator', dtype)


def input_channels(model: nn.Module) -> int:
  """The channels the model's input images have: 3 (RGB) unless the model says
  otherwise (`input_channels`, e.g. 6 for Restormer's dual-pixel model)."""
  return getattr(model, 'input_channels', 3)


def check_rgb_model(model: nn.Module, reader: str) -> None:
  """Raises an InputError unless `model` takes RGB images, which `reader` (the
  tool or data source) gives it."""
  channels = input_channels(model)
  if channels != 3:
    raise InputError(f'{type(model).__name__} with these settings takes {channels}-channel '
                     f'images, but {reader} reads RGB ones; use it from Python '
                     f'(deblur_jax.models.build_model) on {channels}-channel arrays.')


def dummy_images(model: nn.Module, image_size: int = 16):
  """Zero images (1, S, S, channels) to initialise `model` with: S is `image_size`
  rounded up to the model's size multiple (1 for a model without one, such as the
  GAN's discriminator)."""
  multiple = getattr(model, 'size_multiple', 1)
  side = -(-image_size // multiple) * multiple
  return jnp.zeros((1, side, side, input_channels(model)), jnp.float32)


def variables_template(model: nn.Module, sharding: Any = None, image_size: int = 16) -> dict:
  """The variables of `model` as jax.ShapeDtypeStructs (nothing is computed), from
  a square dummy input of `image_size` (rounded up to the model's size multiple);
  with `sharding`, each leaf carries it, as checkpoint restores and converters need."""
  dummy = dummy_images(model, image_size)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(0)}
  template = jax.eval_shape(lambda: model.init(rngs, dummy, train=False))
  if sharding is None:
    return template
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      template)
