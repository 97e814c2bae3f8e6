"""A tiny MIMO-UNet that trains for a few steps in seconds: for tests and smoke runs."""

from configs import default as default_lib


def get_config():
  config = default_lib.apply_variant(default_lib.get_config(), 'tiny', 'configs/tiny.py')
  config.model.base_width = 8
  config.model.num_res = 1
  config.optimizer.learning_rate = 1e-3
  return config
