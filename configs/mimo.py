"""MIMO-UNet (default) and MIMO-UNet+ (`--config=configs/mimo.py:plus`) on GoPro.

The paper's recipe: Adam 1e-4, batch 4, 256x256 crops with horizontal flips,
3000 epochs with the learning rate halved every 500, multi-scale L1 + 0.1 FFT
L1. Point it at the data with `--config.data.dir=/path/to/GOPRO_Large`.
"""

from configs import default as default_lib

VARIANTS = ('', 'plus')


def get_config(variant: str = ''):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown variant {variant!r} for configs/mimo.py; choose one of {VARIANTS}.')
  config = default_lib.get_config()
  if variant == 'plus':
    config.model.num_res = 20
    config.model.dropout_rate = 0.1
  return config
