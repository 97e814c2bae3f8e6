"""The convolutional autoencoders of the 2023 Keras reports: the plain one
(`configs/autoencoder.py`), trained with MSE, Adam with ReduceLROnPlateau,
batch 32, 100 epochs, and the one with a dilated bottleneck, residual
connections and attention (`configs/autoencoder.py:attention`), trained at
224x224. Add `demo` or `tiny` for the short variants, e.g.
`configs/autoencoder.py:attention,demo`.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common

VARIANTS = ('attention',)


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/autoencoder.py', VARIANTS)
  attention = 'attention' in variants
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      # The registry name (deblur_jax.models.MODELS): report 004's or report 002's.
      name='attention_autoencoder' if attention else 'autoencoder',
      base_features=64,  # The first conv's channels.
      global_residual=False))  # Not the reports': input + tanh correction, no sigmoid.
  config.loss.name = 'mse'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'constant'
  config.train.batch_size = 32
  config.train.num_epochs = 100.0
  config.train.monitor = 'mse'
  config.train.plateau_factor = 0.1
  config.train.plateau_patience = 5
  config.train.eval_every_steps = 1000
  config.data.crop_size = 224 if attention else 256
  common.apply_short_run(config, variants)
  if 'demo' in variants:
    config.model.base_features = 32
  if 'tiny' in variants:
    config.model.base_features = 4
  return config
