"""FFTformer (Kong et al., CVPR 2023) on GoPro (default) and `:realblur`.

The official recipe (options/train/GoPro.yml of github.com/kkkls/FFTformer):
AdamW at 1e-3 with betas (0.9, 0.9) and weight decay 1e-3, cosine annealing to
1e-7 over 300k iterations without warm-up, global batch 64 (8 per GPU on 8) of
128x128 crops with flips and 90-degree rotations, L1 + 0.1 x the L1 of the FFT's
real and imaginary parts (MIMO-UNet's loss on one output), gradients clipped to
global norm 0.01. `:realblur` (options/train/Realblur.yml): 256x256 crops, global
batch 16, 4e-4. Evaluation pads by reflection to a multiple of 32 only, as the
official test script does.

  python -m deblur_jax.main --config=configs/fftformer.py --workdir=runs/fftformer \
      --config.data.dir=/data/GOPRO_Large

':demo' and ':tiny' shrink the model for the embedded demo photos and for tests.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common

VARIANTS = ('realblur',)


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/fftformer.py', VARIANTS)
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      name='fftformer',  # The registry name (deblur_jax.models.MODELS).
      dim=48,  # Channels at full resolution (2x, 4x at 1/2, 1/4).
      # Blocks per level, top first, encoder and decoder alike; the 4th entry is unused,
      # as in the official options.
      num_blocks=(6, 6, 12, 8),
      num_refinement_blocks=4,  # Attention blocks after the decoder, at full resolution.
      ffn_expansion_factor=3.0,  # DFFN hidden width = int(channels x this).
      use_bias=False,  # Biases in the blocks' convs, the embedding and the output conv.
  ))
  realblur = 'realblur' in variants
  config.data.crop_size = 256 if realblur else 128
  config.data.augment = 'flips_rot90'
  if realblur:
    # RealBlur's lists (RealBlur_J_train_list.txt: ground truth first) under its root.
    config.data.train_pairs_file = 'RealBlur_J_train_list.txt'
    config.data.eval_pairs_file = 'RealBlur_J_test_list.txt'
    config.data.pairs_file_order = 'sharp_blur'
  config.loss.name = 'mimo'
  common.basicsr_adamw(config, learning_rate=4e-4 if realblur else 1e-3, b2=0.9,
                       weight_decay=1e-3, end_learning_rate=1e-7)
  config.train.batch_size = 16 if realblur else 64
  config.train.num_train_steps = 300_000
  config.train.eval_every_steps = 10_000
  config.train.checkpoint_every_steps = 5_000
  # RealBlur: the official evaluation's alignment; GoPro: uint8 outputs, as the official
  # test script writes them.
  config.eval.protocol = 'realblur' if realblur else 'basicsr'
  common.apply_short_run(config, variants)
  if set(variants) & set(common.SHORT_RUNS):
    config.model.dim = 8
    config.model.num_blocks = (1, 1, 1, 1)
    config.model.num_refinement_blocks = 1
  if 'demo' in variants:
    config.model.dim = 16
    config.optimizer.learning_rate = 1e-3
  return config
