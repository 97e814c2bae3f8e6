"""Adversarial training: a pure step that updates a discriminator `critic_steps`
times, then the generator on content + weighted adversarial loss (the recipe
of DeblurGAN, Kupyn et al. 2018). Both states are jitted over the same data mesh as the plain
train step, and both skip non-finite updates the same way.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from deblur_jax.parallel import sharding
from deblur_jax.training import losses, train_step
from deblur_jax.training.state import TrainState


def _disc_logits(disc: TrainState, params, images, *, rng):
  """Discriminator logits in training mode, and its updated BatchNorm statistics."""
  logits, updates = disc.apply_fn(disc.variables(params), images, train=True,
                                  rngs={'dropout': rng}, mutable=['batch_stats'])
  return logits, updates.get('batch_stats', disc.batch_stats)


def gan_train_step(gen: TrainState, disc: TrainState, batch: dict, *, content_loss_fn: Callable,
                   adversarial_loss: str, adversarial_weight: float, critic_steps: int,
                   gradient_penalty_weight: float, learning_rate_fn: optax.Schedule, rng,
                   ema_decay: float = 0.0):
  """One generator step and `critic_steps` discriminator steps on a global batch.

  The discriminator sees the sharp images as real and the generator's current
  outputs (no gradient to the generator) as fake; with 'wgan_gp' a gradient
  penalty of weight `gradient_penalty_weight` is added. The generator then
  minimises content loss + adversarial_weight x its adversarial loss against
  the updated discriminator. Returns (generator, discriminator, metrics).
  """
  disc_loss_fn, gen_adv_loss_fn = losses.get_adversarial_losses(adversarial_loss)
  step_rng = jax.random.fold_in(rng, gen.step)
  gen_rng, *critic_rngs = jax.random.split(step_rng, 1 + 2 * critic_steps)
  batch = train_step.unit_float_batch(batch)
  blur, sharp = batch['blur'], batch['sharp']

  # One generator forward serves both networks: the critic reads its outputs
  # without gradient, and the generator's gradient is pulled back through it.
  def generate(params):
    return gen.apply_fn(gen.variables(params), blur, train=True, rngs={'dropout': gen_rng},
                        mutable=['batch_stats'])

  predictions, pull_back, updates = jax.vjp(generate, gen.params, has_aux=True)
  fake = jax.lax.stop_gradient(predictions[-1])

  disc_metrics = {}
  for k in range(critic_steps):
    logits_rng, penalty_rng = critic_rngs[2 * k], critic_rngs[2 * k + 1]

    def critic_loss(params, disc=disc, logits_rng=logits_rng, penalty_rng=penalty_rng):
      both, batch_stats = _disc_logits(disc, params, jnp.concatenate([sharp, fake]),
                                       rng=logits_rng)
      real_logits, fake_logits = jnp.split(both, 2)
      loss = disc_loss_fn(real_logits, fake_logits)
      if adversarial_loss == 'wgan_gp':
        critic = lambda x: _disc_logits(disc, params, x, rng=logits_rng)[0]  # noqa: E731
        loss = loss + gradient_penalty_weight * losses.gradient_penalty(
            critic, sharp, fake, penalty_rng)
      return loss, batch_stats

    (d_loss, batch_stats), d_grads = jax.value_and_grad(critic_loss, has_aux=True)(disc.params)
    disc, d_skipped = train_step.apply_update(disc, d_grads, d_loss, batch_stats=batch_stats)
    disc_metrics = {'disc_loss': d_loss, 'disc_skipped': d_skipped}

  def generator_loss(outputs):
    content = content_loss_fn(outputs, sharp)
    both, _ = _disc_logits(disc, disc.params, jnp.concatenate([sharp, outputs[-1]]),
                           rng=gen_rng)
    real_logits, fake_logits = jnp.split(both, 2)
    adversarial = gen_adv_loss_fn(real_logits, fake_logits)
    return content + adversarial_weight * adversarial, (content, adversarial)

  (loss, (content, adversarial)), output_grads = jax.value_and_grad(
      generator_loss, has_aux=True)(predictions)
  (grads,) = pull_back(output_grads)
  new_gen, skipped = train_step.apply_update(
      gen, grads, loss, ema_decay=ema_decay,
      batch_stats=updates.get('batch_stats', gen.batch_stats))
  step_metrics = train_step.step_metrics(gen, loss=loss, predictions=predictions, blur=blur,
                                         sharp=sharp, grads=grads, skipped=skipped,
                                         learning_rate_fn=learning_rate_fn)
  return new_gen, disc, {**step_metrics, 'content_loss': content,
                         'adversarial_loss': adversarial, **disc_metrics}


def jit_gan_train_step(mesh, **kwargs):
  """`gan_train_step(gen, disc, batch)` compiled for `mesh`: both states replicated and
  donated, the batch split over 'data'."""
  step = functools.partial(gan_train_step, **kwargs)
  replicated = sharding.replicated(mesh)
  return jax.jit(step, in_shardings=(replicated, replicated, sharding.batch_sharded(mesh)),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))


def disc_checkpoint_item(disc: TrainState) -> dict:
  """The discriminator's part of the checkpoint's 'train' item."""
  return {'variables': disc.variables(), 'opt_state': disc.opt_state, 'step': disc.step}


def disc_from_checkpoint_item(template: TrainState, item: dict) -> TrainState:
  """`template` with the discriminator state of a checkpoint's 'train' item."""
  return template.replace(params=item['variables']['params'],
                          batch_stats=item['variables'].get('batch_stats', {}),
                          opt_state=item['opt_state'], step=item['step'])
