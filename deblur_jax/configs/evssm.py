"""EVSSM (Kong et al., CVPR 2025) on GoPro.

The official recipe (options/train/GoPro.yml and
basicsr/models/image_restoration_model.py of github.com/kkkls/EVSSM): AdamW at
1e-3 with betas (0.9, 0.9) and weight decay 1e-3, cosine annealing to 1e-7 over
300k iterations without warm-up, global batch 32 (8 per GPU on 4; each GPU's
batch run as two halves of 4 whose halved losses' gradients add up, the same
gradient as one batch of 8) of 128x128 crops with flips and 90-degree rotations,
L1 + 0.1 x the L1 of the FFT's real and imaginary parts, gradients clipped to
global norm 0.01. Training scans whole crops; evaluation, predict and export scan
in the official test model's overlapping windows (config.model.windows), padding
by reflection to a multiple of 4 only (the official test script takes such sizes
only; its commented-out padding does this).

  python -m deblur_jax.main --config=configs/evssm.py --workdir=runs/evssm \
      --config.data.dir=/data/GOPRO_Large

':demo' and ':tiny' shrink the model for the embedded demo photos and for tests.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common

VARIANTS = ()


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/evssm.py', VARIANTS)
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      name='evssm',  # The registry name (deblur_jax.models.MODELS).
      dim=48,  # Channels at full resolution (2x, 4x at 1/2, 1/4).
      num_blocks=(6, 6, 12),  # EVS blocks per level, top first, encoder and decoder alike.
      ffn_expansion_factor=3.0,  # EDFFN hidden width = int(channels x this).
      use_bias=False,  # Biases in the EDFFN convs and the output conv.
      windows=True,  # The test model's overlapping scan windows, when not training.
      window_sizes=(384, 192, 96),  # The windows' sides per level, top first (official).
      remat=False,  # Recompute each block's activations in the backward pass (memory).
  ))
  config.data.crop_size = 128
  config.data.augment = 'flips_rot90'
  config.loss.name = 'mimo'  # L1 + 0.1 x FFT L1 on the one output.
  common.basicsr_adamw(config, learning_rate=1e-3, b2=0.9, weight_decay=1e-3,
                       end_learning_rate=1e-7)
  config.train.batch_size = 32
  config.train.num_train_steps = 300_000
  config.train.eval_every_steps = 10_000
  config.train.checkpoint_every_steps = 5_000
  config.eval.protocol = 'basicsr'  # uint8 outputs, as the official test script writes them.
  common.apply_short_run(config, variants)
  if set(variants) & set(common.SHORT_RUNS):
    config.model.dim = 8
    config.model.num_blocks = (1, 1, 1)
  if 'demo' in variants:
    config.model.dim = 16
    config.model.num_blocks = (2, 2, 2)
    config.optimizer.learning_rate = 1e-3
  return config
