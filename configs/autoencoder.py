"""The convolutional autoencoders: report 002's plain one (`configs/autoencoder.py`)
and report 004's with a dilated bottleneck, residual connections and attention
(`configs/autoencoder.py:attention`). Append `_demo` or `_tiny` for the short
variants, e.g. `configs/autoencoder.py:attention_demo`.

Report 002: MSE, Adam with ReduceLROnPlateau, batch 32, 100 epochs. Report 004
trained at 224x224.
"""

import ml_collections

from configs import default as default_lib

MODELS = {'': 'autoencoder', 'attention': 'attention_autoencoder'}


def get_config(variant: str = ''):
  model, _, short = variant.partition('_') if variant not in ('demo', 'tiny') else ('', '', variant)
  if model not in MODELS:
    raise ValueError(f'Unknown variant {variant!r} for configs/autoencoder.py; choose one of '
                     "'', 'attention', with an optional _demo or _tiny ('demo', 'attention_demo').")
  config = default_lib.get_config()
  config.model = ml_collections.ConfigDict(dict(name=MODELS[model], base_features=64))
  config.loss.name = 'mse'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'constant'
  config.train.batch_size = 32
  config.train.num_epochs = 100.0
  config.train.monitor = 'mse'
  config.train.plateau_factor = 0.1
  config.train.plateau_patience = 5
  config.train.eval_every_steps = 1000
  config.data.crop_size = 224 if model == 'attention' else 256
  config = default_lib.apply_variant(config, short, 'configs/autoencoder.py')
  if short == 'demo':
    config.model.base_features = 32
  if short == 'tiny':
    config.model.base_features = 4
  return config
