"""The BatchNorm UNet of the 2023 Keras report: `--config=configs/unet.py[:demo|:tiny]`.

The report's recipe: Adam 1e-3, MSE, images blurred with one of three Gaussian
kernels (3x3 sigma 0.3, 7x7 sigma 1.0, 11x11 sigma 1.6), ReduceLROnPlateau
and early stopping on the validation MSE, 25 epochs. The report resized its
24,000 images to 256x448; deblur_jax trains on square crops (256) and
evaluates full images padded to a multiple of 16.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/unet.py')
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      name='unet',  # The registry name (deblur_jax.models.MODELS).
      base_features=32,  # 32-64-128-256 channels, 512 at the bottleneck.
      batch_norm='report',  # BatchNorm placement giving the report's 1,664 statistics.
      global_residual=False,  # Not the report's: input + tanh correction, no sigmoid.
  ))
  config.loss.name = 'mse'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'constant'
  config.train.batch_size = 16
  config.train.num_epochs = 25.0
  config.train.monitor = 'mse'
  config.train.plateau_factor = 0.1  # Keras' defaults.
  config.train.plateau_patience = 3
  config.train.early_stop_patience = 5
  config.train.eval_every_steps = 1000
  config.data.crop_size = 256
  common.apply_short_run(config, variants)
  if 'tiny' in variants:
    config.model.base_features = 4
  return config
