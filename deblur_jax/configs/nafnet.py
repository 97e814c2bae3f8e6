"""NAFNet (Chen et al., ECCV 2022) on GoPro: width 32 (default) and `:width64`.

The official recipe (options/train/GoPro/NAFNet-width{32,64}.yml of
megvii-research/NAFNet): AdamW at 1e-3 with betas (0.9, 0.9) and weight decay
1e-3, cosine annealing to 1e-7 over 200k (width 32) or 400k (width 64)
iterations without warm-up, global batch 32 (64) of 256x256 crops with flips
and 90-degree rotations, the PSNR loss, gradients clipped to global norm 0.01.
TLC (tlc_train_size 256) pools channel attention over local windows when
evaluating, predicting and exporting; training pools globally. Scored as NAFNet
reports (config.eval.protocol='nafnet').

  python -m deblur_jax.main --config=configs/nafnet.py --workdir=runs/nafnet32 \
      --config.data.dir=/data/GOPRO_Large

':demo' and ':tiny' shrink it (width 16 / 8, fewer blocks) for the embedded demo
photos and for tests.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common

VARIANTS = ('width64',)


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/nafnet.py', VARIANTS)
  config = common.base_config()
  width64 = 'width64' in variants
  config.model = ml_collections.ConfigDict(dict(
      name='nafnet',  # The registry name (deblur_jax.models.MODELS).
      width=64 if width64 else 32,  # Channels at full resolution, doubled per level.
      enc_blk_nums=(1, 1, 1, 28),  # NAFBlocks per encoder level, top first.
      middle_blk_num=1,  # NAFBlocks at the bottom.
      dec_blk_nums=(1, 1, 1, 1),  # NAFBlocks per decoder level, bottom first.
      dropout_rate=0.0,  # The official models use none.
      # TLC: the training crop side; local channel-attention windows of 1.5x it when
      # not training. 0 = global pooling everywhere (the plain NAFNet).
      tlc_train_size=256,
  ))
  config.data.crop_size = 256
  config.data.augment = 'flips_rot90'
  config.loss.name = 'psnr'
  common.basicsr_adamw(config, learning_rate=1e-3, b2=0.9, weight_decay=1e-3,
                       end_learning_rate=1e-7)
  config.train.batch_size = 64 if width64 else 32
  config.train.num_train_steps = 400_000 if width64 else 200_000
  config.train.eval_every_steps = 5_000
  config.train.checkpoint_every_steps = 5_000
  config.eval.protocol = 'nafnet'
  common.apply_short_run(config, variants)
  if 'demo' in variants:
    config.model.width = 16
    config.model.enc_blk_nums = (1, 1, 1, 2)
    config.model.tlc_train_size = config.data.crop_size
    config.optimizer.warmup_steps = 0
  if 'tiny' in variants:
    config.model.width = 8
    config.model.enc_blk_nums = (1, 1)
    config.model.dec_blk_nums = (1, 1)
    config.model.tlc_train_size = config.data.crop_size
  return config
