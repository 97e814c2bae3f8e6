"""The discriminator of adversarial training (config.gan) and its GAN train step."""

import dataclasses
from typing import Callable, Optional

from deblur_jax import models
from deblur_jax.training import config_checks, gan_step, init_from, optimizers, state

# Where a GAN run's checkpoint keeps the discriminator's variables: the 'train' item's
# 'discriminator' (loop.LoopState.checkpoint_item), its 'variables'
# (gan_step.disc_checkpoint_item).
DISCRIMINATOR = init_from.Location('train', ('discriminator', 'variables'),
                                   'discriminator variables')


@dataclasses.dataclass
class Adversary:
  """The discriminator's initial state and the GAN step's settings."""
  state: state.TrainState
  step_kwargs: dict


def build_adversary(config, mesh, total_steps: int, steps_per_epoch: int, rng,
                    load_init_from: bool = False) -> Optional[Adversary]:
  """The discriminator and its optimizer for config.gan, or None without one
  (config_checks has checked the fields). With `load_init_from` (a run that does not
  resume), the discriminator starts from config.gan.init_from when it is set."""
  if not config.gan.discriminator.name:
    return None
  discriminator = models.build_discriminator(config.gan.discriminator,
                                             config_checks.compute_dtype(config.train))
  tx, _ = optimizers.build_optimizer(config.gan.optimizer, total_steps, steps_per_epoch)
  disc = state.create_train_state(rng, discriminator, tx, config.data.crop_size, mesh)
  if load_init_from:
    disc = init_from.init_state(disc, config.gan.init_from, config.train,
                                field='config.gan.init_from', location=DISCRIMINATOR)
  return Adversary(disc, dict(adversarial_loss=config.gan.loss,
                              adversarial_weight=config.gan.weight,
                              critic_steps=config.gan.critic_steps,
                              gradient_penalty_weight=config.gan.gradient_penalty_weight))


def jit_step(adversary: Adversary, mesh, **step_kwargs) -> Callable:
  """The GAN step `(generator, discriminator, batch) -> (generator, discriminator, metrics)`."""
  return gan_step.jit_gan_train_step(mesh, **step_kwargs, **adversary.step_kwargs)
