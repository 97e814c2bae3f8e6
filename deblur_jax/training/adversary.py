"""The discriminator of adversarial training (config.gan) and its GAN train step."""

import dataclasses
from typing import Callable, Optional

import flax.linen as nn

from deblur_jax import models
from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.data import stages
from deblur_jax.training import gan_step, init_from, losses, optimizers, state

# Where a GAN run's checkpoint keeps the discriminator's variables: the 'train' item's
# 'discriminator' (loop.LoopState.checkpoint_item), its 'variables'
# (gan_step.disc_checkpoint_item).
DISCRIMINATOR = init_from.Location('train', ('discriminator', 'variables'),
                                   'discriminator variables')


@dataclasses.dataclass
class AdversaryPlan:
  """What config.gan builds before any data is read: the discriminator, its optimizer
  (waiting for the step counts) and the GAN step's settings."""
  discriminator: nn.Module
  make_optimizer: Callable[[int, int], tuple]
  step_kwargs: dict


@dataclasses.dataclass
class Adversary:
  """The discriminator's initial state and the GAN step's settings."""
  state: state.TrainState
  step_kwargs: dict


def plan_adversary(config) -> Optional[AdversaryPlan]:
  """Checks and builds config.gan, or None without a discriminator."""
  gan = config.gan
  if not gan.discriminator.name:
    return None
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
  lookup(losses.ADVERSARIAL, gan.loss, 'config.gan.loss')
  discriminator = models.build_discriminator(gan.discriminator,
                                             models.compute_dtype(config.train.compute_dtype))
  return AdversaryPlan(discriminator, optimizers.optimizer_factory(gan.optimizer),
                       dict(adversarial_loss=gan.loss, adversarial_weight=gan.weight,
                            critic_steps=gan.critic_steps,
                            gradient_penalty_weight=gan.gradient_penalty_weight))


def build_adversary(plan: AdversaryPlan, config, mesh, total_steps: int, steps_per_epoch: int,
                    rng, load_init_from: bool = False) -> Adversary:
  """The discriminator's state for `plan`. With `load_init_from` (a run that does not
  resume), the discriminator starts from config.gan.init_from when it is set."""
  tx, _ = plan.make_optimizer(total_steps, steps_per_epoch)
  first_crop = stages.from_config(config.data, config.train.batch_size)[0].crop_size
  disc = state.create_train_state(rng, plan.discriminator, tx, first_crop, mesh)
  if load_init_from:
    disc = init_from.init_state(disc, config.gan.init_from, config.train,
                                field='config.gan.init_from', location=DISCRIMINATOR)
  return Adversary(disc, plan.step_kwargs)


def jit_step(adversary: Adversary, mesh, **step_kwargs) -> Callable:
  """The GAN step `(generator, discriminator, batch) -> (generator, discriminator, metrics)`."""
  return gan_step.jit_gan_train_step(mesh, **step_kwargs, **adversary.step_kwargs)
