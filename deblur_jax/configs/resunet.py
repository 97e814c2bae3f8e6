"""The UNet-ResNet hybrid of the 2023 Keras reports: `--config=configs/resunet.py[:demo|:tiny]`.

Its grid search picked RMSprop (lr 1e-3, rho 0.9) with MAE. Its Sobel,
Fourier and perceptual losses are available by weight, for example
`--config.loss.extra_weights.sobel=0.1 --config.loss.extra_weights.fft=0.01`.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/resunet.py')
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      name='resunet',  # The registry name (deblur_jax.models.MODELS).
      base_features=16,  # The stem's channels (the report's 3->16 conv).
      num_blocks=2,  # Residual blocks at the bottleneck.
      sigmoid_output=True,  # A sigmoid on the output, as the report's head.
      global_residual=False,  # Not the report's: input + tanh correction, no sigmoid.
  ))
  config.loss.name = 'l1'
  config.optimizer.name = 'rmsprop'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.rho = 0.9
  config.optimizer.eps = 1e-7  # Keras' RMSprop epsilon.
  config.optimizer.schedule = 'constant'
  config.train.batch_size = 16
  config.train.num_epochs = 50.0
  config.train.eval_every_steps = 1000
  config.data.crop_size = 256
  common.apply_short_run(config, variants)
  if 'tiny' in variants:
    config.model.base_features = 4
  return config
