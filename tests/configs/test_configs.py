"""Every config file loads, builds its model and trains (at tiny size)."""

import pytest

from configs import autoencoder, default, demo, gan, mimo, resunet, tiny, unet
from deblur_jax.training import loop


@pytest.mark.parametrize('get_config', [
    default.get_config, demo.get_config, tiny.get_config, mimo.get_config,
    lambda: mimo.get_config('plus'), unet.get_config, resunet.get_config,
    autoencoder.get_config, lambda: autoencoder.get_config('attention_demo'), gan.get_config])
def test_configs_are_locked_data_with_every_section(get_config):
  config = get_config()
  assert set(config) == {'seed', 'model', 'data', 'loss', 'optimizer', 'train', 'eval', 'gan'}
  config.lock()
  with pytest.raises(AttributeError):
    config.train.batch_sizes = 8


def test_unknown_mimo_variant_is_an_error():
  with pytest.raises(ValueError, match="Unknown variant 'huge'.*'plus'"):
    mimo.get_config('huge')


def test_demo_config_trains_two_steps_on_the_embedded_photos(tmp_path):
  config = demo.get_config()
  config.train.num_train_steps = 2
  config.optimizer.warmup_steps = 1
  config.train.batch_size = 4
  config.data.max_eval_images = 1
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary['num_images'] == 1
  assert summary['input_psnr'] > 25  # a visible blur of a held-out photo
  assert (tmp_path / 'demo_data' / 'test' / 'gauss11' / 'sharp' / 'chelsea.png').exists()
