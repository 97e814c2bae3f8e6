"""MIMO-UNet (default) and MIMO-UNet+ (`--config=configs/mimo.py:plus`) on GoPro.

The paper's recipe: Adam 1e-4, batch 4, 256x256 crops with horizontal flips,
3000 epochs with the learning rate halved every 500, multi-scale L1 + 0.1 FFT
L1. Point it at the data with `--config.data.dir=/path/to/GOPRO_Large`.
':demo' and ':tiny' shrink it to width 16 (8), one ResBlock per level, for
the embedded demo photos (configs/demo.py trains it longer) and tests.
"""

from typing import Optional

from configs import default as default_lib

VARIANTS = ('plus',)


def get_config(arg: Optional[str] = None):
  variants = default_lib.parse_variants(arg, 'configs/mimo.py', VARIANTS)
  config = default_lib.get_config()
  if 'plus' in variants:
    config.model.num_res = 20
    config.model.dropout_rate = 0.1
  default_lib.apply_short_variant(config, variants)
  if 'demo' in variants:
    # Base width 16 with one ResBlock per level (0.35M parameters): on a CPU the
    # most deblurring per minute among the sizes tried (see README).
    config.model.base_width = 16
    config.model.num_res = 1
    config.optimizer.learning_rate = 2e-3
  if 'tiny' in variants:
    config.model.base_width = 8
    config.model.num_res = 1
    config.optimizer.learning_rate = 1e-3
  return config
