"""The jitted GAN step: critic updates per generator update, WGAN-GP, shared step metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deblur_jax import models
from deblur_jax.configs import gan
from deblur_jax.parallel import sharding
from deblur_jax.training import gan_step, losses, optimizers
from deblur_jax.training.state import create_train_state

CROP = 32
LEARNING_RATE = 1e-4


def one_gan_step(penalty_weight: float, critic_steps: int = 2):
  """(generator, discriminator, metrics) after one WGAN-GP step from the same start,
  with the generator's plateau scale at 0.5."""
  config = gan.get_config('tiny')
  mesh = sharding.create_mesh(jax.devices()[:4])
  tx, schedule = optimizers.build_optimizer(config.optimizer, 10, 1)
  plateau = optax.contrib.reduce_on_plateau(factor=0.5)
  gen = create_train_state(jax.random.key(0), models.build_model(config.model), tx, CROP, mesh,
                           plateau=plateau)
  gen = gen.replace(plateau=gen.plateau._replace(scale=jnp.asarray(0.5)))
  disc_tx, _ = optimizers.build_optimizer(config.gan.optimizer, 10, 1)
  disc = create_train_state(jax.random.key(1), models.build_discriminator(
      config.gan.discriminator), disc_tx, CROP, mesh)
  step = gan_step.jit_gan_train_step(
      mesh, content_loss_fn=losses.build_loss_fn(config.loss), adversarial_loss='wgan_gp',
      adversarial_weight=0.01, critic_steps=critic_steps, gradient_penalty_weight=penalty_weight,
      learning_rate_fn=schedule, rng=jax.random.key(2))
  rng = np.random.default_rng(0)
  sharp = rng.uniform(size=(4, CROP, CROP, 3)).astype(np.float32)
  batch = {'blur': np.clip(sharp + rng.normal(0, 0.1, sharp.shape), 0, 1).astype(np.float32),
           'sharp': sharp}
  return step(gen, disc, sharding.make_global_batch(batch, mesh))


@pytest.fixture(scope='module')
def penalised():
  return one_gan_step(penalty_weight=10.0)


def test_the_critic_is_updated_critic_steps_times_per_generator_step(penalised):
  gen, disc, metrics = penalised
  assert int(gen.step) == 1
  assert int(disc.step) == 2
  adam_counts = [int(x) for x in jax.tree.leaves(disc.opt_state) if jnp.ndim(x) == 0]
  assert adam_counts and set(adam_counts) == {2}
  assert float(metrics['disc_skipped']) == 0.0 and float(metrics['skipped']) == 0.0


def test_the_gradient_penalty_changes_the_critic_loss(penalised):
  _, _, with_penalty = penalised
  _, _, without = one_gan_step(penalty_weight=0.0)
  assert abs(float(with_penalty['disc_loss']) - float(without['disc_loss'])) > 1e-3
  # The content loss sees the same generator outputs either way.
  assert float(with_penalty['content_loss']) == pytest.approx(float(without['content_loss']))


def test_gan_step_reports_the_plain_step_metrics_with_the_plateau_scaled_rate(penalised):
  _, _, metrics = penalised
  assert set(metrics) == {'loss', 'psnr', 'psnr_gain', 'grad_norm', 'learning_rate', 'skipped',
                          'content_loss', 'adversarial_loss', 'disc_loss', 'disc_skipped'}
  assert float(metrics['learning_rate']) == pytest.approx(0.5 * LEARNING_RATE)
  assert float(metrics['loss']) == pytest.approx(
      float(metrics['content_loss']) + 0.01 * float(metrics['adversarial_loss']), rel=1e-5)
