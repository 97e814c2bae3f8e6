"""Every seed model's config trains at tiny size; GAN training changes both networks
and resumes exactly; bad model and adversarial settings are clear errors."""

import importlib

import jax
import numpy as np
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.training import loop
from helpers import saved_item


def tiny(config_name, variant='tiny'):
  return importlib.import_module(f'deblur_jax.configs.{config_name}').get_config(variant)


@pytest.mark.parametrize('config_name,variant', [
    ('unet', 'tiny'), ('resunet', 'tiny'), ('autoencoder', 'tiny'),
    ('autoencoder', 'attention,tiny'), ('nafnet', 'tiny'), ('restormer', 'tiny'),
    ('fftformer', 'tiny')])
def test_each_seed_config_trains_two_steps(config_name, variant, tmp_path):
  config = tiny(config_name, variant)
  config.train.num_train_steps = 2
  config.data.max_eval_images = 1  # one image size: one evaluation program to compile
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(summary['psnr']) and summary['num_images'] == 1


def test_report_recipes_are_in_the_configs():
  unet = tiny('unet', '')
  assert (unet.model.name, unet.loss.name, unet.optimizer.learning_rate) == ('unet', 'mse', 1e-3)
  assert unet.train.monitor == 'mse' and unet.train.plateau_factor > 0
  assert unet.train.early_stop_patience > 0
  resunet = tiny('resunet', '')
  assert (resunet.optimizer.name, resunet.optimizer.rho, resunet.loss.name) == (
      'rmsprop', 0.9, 'l1')
  assert tiny('autoencoder', 'attention').model.name == 'attention_autoencoder'
  with pytest.raises(ValueError, match='Unknown variant'):
    tiny('autoencoder', 'huge')


def test_gan_steps_change_both_networks_and_resume_exactly(tmp_path):
  config = tiny('gan')
  config.train.num_train_steps = 3
  config.train.checkpoint_every_steps = 1
  config.train.eval_every_steps = 100
  config.train.keep_checkpoints = 5
  loop.train_and_evaluate(config, str(tmp_path / 'straight'))
  first, last = (saved_item(tmp_path / 'straight', s, 'train') for s in (1, 3))
  for a, b in ((saved_item(tmp_path / 'straight', 1, 'model'),
                saved_item(tmp_path / 'straight', 3, 'model')),
               (first['discriminator']['variables'], last['discriminator']['variables'])):
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  config.train.num_train_steps = 1
  loop.train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.train.num_train_steps = 3
  loop.train_and_evaluate(config, str(tmp_path / 'resumed'))
  for item in ('model', 'train'):
    jax.tree.map(np.testing.assert_array_equal, saved_item(tmp_path / 'straight', 3, item),
                 saved_item(tmp_path / 'resumed', 3, item))


@pytest.mark.parametrize('change,message', [
    (lambda c: setattr(c.model, 'name', 'unet3d'), r"Unknown config\.model\.name 'unet3d'"),
    (lambda c: setattr(c.gan, 'loss', 'hinge'), r"config\.gan\.loss 'hinge'"),
    (lambda c: setattr(c.gan.discriminator, 'name', 'stylegan'),
     r"Unknown config\.gan\.discriminator\.name 'stylegan'"),
    (lambda c: setattr(c.data, 'crop_size', 36), r'crop_size=36 must be a multiple of 8'),
])
def test_bad_model_and_adversarial_settings_name_the_field(tmp_path, change, message):
  config = tiny('gan') if 'gan' in message or 'stylegan' in message else tiny('autoencoder')
  change(config)
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path))


def test_a_discriminator_on_a_model_that_is_not_a_gan_is_an_error(tmp_path):
  config = tiny('unet')
  config.gan.discriminator.name = 'patchgan'
  with pytest.raises(InputError, match=r"config\.model\.name='unet' is not a GAN generator.*"
                                       r"gan_generator"):
    loop.train_and_evaluate(config, str(tmp_path))
