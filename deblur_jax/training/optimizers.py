"""The Optax chain and learning-rate schedule built from `config.optimizer`."""

import functools
import math
from typing import Callable

import optax

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup


def build_schedule(opt_config, num_train_steps: int, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate as a function of the step.

  'multistep' multiplies by `decay_factor` every `decay_every_steps` steps, or
  every `decay_every_epochs` epochs of `steps_per_epoch` steps (the paper
  halves every 500 epochs); 'cosine' warms up linearly for `warmup_steps`,
  holds the peak for `hold_steps`, then decays to `end_learning_rate` at
  `num_train_steps`.
  """
  lr = opt_config.learning_rate
  name = opt_config.schedule
  if name == 'constant':
    return optax.constant_schedule(lr)
  if name == 'multistep':
    every = opt_config.decay_every_steps or max(
        1, round(opt_config.decay_every_epochs * steps_per_epoch))
    return optax.exponential_decay(lr, transition_steps=every,
                                   decay_rate=opt_config.decay_factor, staircase=True)
  warmup = opt_config.warmup_steps  # 'cosine'
  hold = opt_config.get('hold_steps', 0)
  if not 0 <= warmup < num_train_steps:
    raise InputError(f'config.optimizer.warmup_steps={warmup} must lie in '
                     f'[0, num_train_steps={num_train_steps}).')
  if not 0 <= hold < num_train_steps - warmup:
    raise InputError(f'config.optimizer.hold_steps={hold} must lie in [0, num_train_steps - '
                     f'warmup_steps={num_train_steps - warmup}).')
  decay = optax.cosine_decay_schedule(lr, decay_steps=num_train_steps - warmup - hold,
                                      alpha=opt_config.end_learning_rate / lr)
  pieces, boundaries = [], []
  if warmup:
    pieces, boundaries = [optax.linear_schedule(0.0, lr, warmup)], [warmup]
  if hold:
    pieces, boundaries = pieces + [optax.constant_schedule(lr)], boundaries + [warmup + hold]
  return optax.join_schedules(pieces + [decay], boundaries)


SCHEDULES = ('constant', 'cosine', 'multistep')


def check_optimizer_config(opt_config) -> None:
  """Raises an InputError naming the field of a bad `config.optimizer` (or
  config.gan.optimizer) value that needs no step count to judge."""
  lookup(OPTIMIZERS, opt_config.name, 'config.optimizer.name')
  lookup(SCHEDULES, opt_config.schedule, 'config.optimizer.schedule')
  if opt_config.schedule == 'multistep' and not (
      opt_config.decay_every_steps > 0 or opt_config.decay_every_epochs > 0):
    raise InputError('config.optimizer.schedule="multistep" needs decay_every_steps > 0 or '
                     'decay_every_epochs > 0.')
  if opt_config.name == 'sgd' and opt_config.nesterov and not opt_config.momentum:
    raise InputError('config.optimizer.nesterov=True needs config.optimizer.momentum > 0.')
  if opt_config.learning_rate <= 0:
    raise InputError(f'config.optimizer.learning_rate={opt_config.learning_rate} must be '
                     'positive.')


def _adam(cfg, lr):
  return optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)


def _adamw(cfg, lr):
  return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)


def _rmsprop(cfg, lr):
  # eps outside the square root, as PyTorch and Keras have it.
  return optax.rmsprop(lr, decay=cfg.rho, eps=cfg.eps, eps_in_sqrt=False)


def _sgd(cfg, lr):
  return optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)


# name -> builder(config.optimizer, learning-rate schedule) of the update rule.
OPTIMIZERS = {'adam': _adam, 'adamw': _adamw, 'rmsprop': _rmsprop, 'sgd': _sgd}


def optimizer_factory(opt_config) -> Callable[[int, int], tuple]:
  """Checks `config.optimizer` (or config.gan.optimizer) now, before any data is read,
  and returns `make(num_train_steps, steps_per_epoch)` -> `build_optimizer`'s pair, for
  when the data has told the step counts."""
  check_optimizer_config(opt_config)
  return functools.partial(_build_optimizer, opt_config)


def build_optimizer(opt_config, num_train_steps: int, steps_per_epoch: int):
  """`optimizer_factory(opt_config)(num_train_steps, steps_per_epoch)`."""
  return optimizer_factory(opt_config)(num_train_steps, steps_per_epoch)


def _build_optimizer(opt_config, num_train_steps: int, steps_per_epoch: int):
  """Returns (optax transformation, learning-rate schedule) for `config.optimizer`.

  The chain: optional global-norm clipping, optional L2 penalty on the
  gradients (PyTorch's `weight_decay`; 'adamw' decays decoupled instead), then
  the update rule with the schedule.
  """
  schedule = build_schedule(opt_config, num_train_steps, steps_per_epoch)
  chain = []
  if opt_config.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(opt_config.grad_clip_norm))
  if opt_config.weight_decay > 0 and opt_config.name != 'adamw':
    chain.append(optax.add_decayed_weights(opt_config.weight_decay))
  chain.append(OPTIMIZERS[opt_config.name](opt_config, schedule))
  return optax.chain(*chain), schedule


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Steps in one pass over `num_examples` (the last partial batch counts)."""
  return max(1, math.ceil(num_examples / batch_size))
