"""Checks of every config field the training loop and the evaluation read, run
before any data is read: a typo fails in a second, not after the training set
is decoded. Fields whose builders check them (the loss, the plateau, the
model) are built before the data too."""

import os

import jax.numpy as jnp

from deblur_jax import models
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline
from deblur_jax.evaluation import protocols
from deblur_jax.parallel import sharding
from deblur_jax.training import losses, optimizers, validation_monitor

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

_POSITIVE_TRAIN_FIELDS = ('batch_size', 'log_every_steps', 'eval_every_steps',
                          'checkpoint_every_steps', 'keep_checkpoints', 'max_nonfinite_steps')


def compute_dtype(train_config):
  """The dtype of config.train.compute_dtype."""
  name = train_config.compute_dtype
  if name not in COMPUTE_DTYPES:
    raise InputError(f'Unknown config.train.compute_dtype {name!r}; choose one of '
                     f'{sorted(COMPUTE_DTYPES)}.')
  return COMPUTE_DTYPES[name]


def _check_positive(section: str, config_section, fields) -> None:
  for name in fields:
    if config_section[name] <= 0:
      raise InputError(f'config.{section}.{name}={config_section[name]} must be positive.')


def _check_length(train_config) -> None:
  if train_config.num_train_steps <= 0 and train_config.num_epochs <= 0:
    raise InputError('Set config.train.num_train_steps or config.train.num_epochs to a '
                     'positive value.')


def _check_averaging_and_stopping(train_config) -> None:
  if not 0 <= train_config.ema_decay < 1:
    raise InputError(f'config.train.ema_decay={train_config.ema_decay} must lie in [0, 1) '
                     '(0 = no EMA).')
  if train_config.early_stop_patience < 0 or train_config.early_stop_min_delta < 0:
    raise InputError('config.train.early_stop_patience and early_stop_min_delta must be >= 0.')
  validation_monitor.check_monitor(train_config.monitor)
  validation_monitor.build_plateau(train_config)


def _check_gan(config) -> None:
  gan = config.gan
  if not gan.discriminator.name:
    return
  if not getattr(models.get_model_class(config.model.name), 'supports_adversarial', False):
    raise InputError(f'config.gan.discriminator.name={gan.discriminator.name!r} is set, '
                     f'but config.model.name={config.model.name!r} is not a GAN generator; '
                     f'adversarial training takes one of {models.adversarial_generators()}. '
                     "Set --config.gan.discriminator.name='' to train without a discriminator.")
  if config.train.fsdp:
    raise InputError('config.train.fsdp=True is not supported with a discriminator '
                     '(config.gan.discriminator.name); GAN models are small enough to replicate.')
  if gan.critic_steps < 1:
    raise InputError(f'config.gan.critic_steps={gan.critic_steps} must be at least 1.')
  losses.get_adversarial_losses(gan.loss)
  optimizers.check_optimizer_config(gan.optimizer)


def _check_init_from(config) -> None:
  """The fine-tuning fields: what the checkpoints hold is checked when they are read."""
  for field, path in (('config.train.init_from', config.train.init_from),
                      ('config.gan.init_from', config.gan.init_from)):
    if path and not os.path.isdir(path):
      raise InputError(f'{field}={path!r} is not a directory: give a work directory or '
                       'one of its checkpoint step folders (WORKDIR/checkpoints/STEP).')
  if config.train.init_from_step < -1:
    raise InputError(f'config.train.init_from_step={config.train.init_from_step} must be a '
                     'step (>= 0) or -1 for the latest.')
  if config.gan.init_from and not config.gan.discriminator.name:
    raise InputError(f'config.gan.init_from={config.gan.init_from!r} is set, but there is no '
                     "discriminator (config.gan.discriminator.name is ''); leave it empty.")


def check_evaluation_config(config, mesh) -> None:
  """The fields evaluation reads: compute dtype, the evaluation batch, the metric
  protocol and the data fields that need no data to check."""
  compute_dtype(config.train)
  protocols.from_config(config.eval)
  pipeline.check_config(config.data)
  _check_positive('eval', config.eval, ('batch_size_per_device',))
  if config.eval.page_images < 0:
    raise InputError(f'config.eval.page_images={config.eval.page_images} must be >= 0 '
                     '(0 = a results page without image comparisons).')
  sharding.check_batch_divisible(config.eval.batch_size_per_device * mesh.devices.size, mesh,
                                 'config.eval.batch_size_per_device x devices')


def check_training_config(config, mesh) -> None:
  """Every field `train_and_evaluate` reads but the loss and model fields (which
  their builders check, also before any data is read)."""
  _check_positive('train', config.train, _POSITIVE_TRAIN_FIELDS)
  _check_length(config.train)
  sharding.check_batch_divisible(config.train.batch_size, mesh, 'config.train.batch_size')
  _check_averaging_and_stopping(config.train)
  optimizers.check_optimizer_config(config.optimizer)
  _check_gan(config)
  _check_init_from(config)
  check_evaluation_config(config, mesh)


def check_crop_size(config, model) -> None:
  """Training crops must be a multiple of what the model's downsampling needs."""
  multiple = model.size_multiple
  if config.data.crop_size % multiple:
    raise InputError(f'config.data.crop_size={config.data.crop_size} must be a multiple of '
                     f'{multiple} for model {config.model.name!r}.')
