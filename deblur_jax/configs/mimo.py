"""MIMO-UNet (default) and MIMO-UNet+ (`--config=configs/mimo.py:plus`) on GoPro.

The paper's recipe: Adam 1e-4, batch 4, 256x256 crops with horizontal flips,
3000 epochs with the learning rate halved every 500, multi-scale L1 + 0.1 FFT
L1. Point it at the data with `--config.data.dir=/path/to/GOPRO_Large`.

':demo' is README command 1: a MIMO-UNet of width 16 with one ResBlock per level
(348,035 parameters) that learns to deblur the embedded demo photos in about eight
minutes on 2 CPU cores: 1600 steps of 16 crops of twelve scikit-image photos blurred
on the fly (the three Gaussians of the 2023 Keras UNet report, and random linear
motion for a fifth of the crops), evaluated on two held-out photos (gauss7, gauss11,
motion) against the blurred input. ':tiny' (width 8) trains 3 steps for tests.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common

VARIANTS = ('plus',)


def model_config(plus: bool = False) -> ml_collections.ConfigDict:
  """config.model of MIMO-UNet (`plus`: MIMO-UNet+)."""
  model = ml_collections.ConfigDict()
  model.name = 'mimo_unet'  # The registry name (deblur_jax.models.MODELS).
  model.base_width = 32  # Channels at full resolution (2x, 4x at 1/2, 1/4).
  model.num_res = 20 if plus else 8  # ResBlocks per encoder/decoder level.
  model.dropout_rate = 0.1 if plus else 0.0  # Channel dropout on the AFF outputs.
  # BatchNorm after every conv (the first, BatchNorm, variant of the MIMO-UNet reproduction).
  model.batch_norm = False
  # Recompute ResBlock activations in the backward pass: less memory, ~1/3 more compute.
  model.remat = False
  return model


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/mimo.py', VARIANTS)
  config = common.base_config()
  config.model = model_config(plus='plus' in variants)
  common.apply_short_run(config, variants)
  if 'demo' in variants:
    # Base width 16 with one ResBlock per level: on a CPU the most deblurring per
    # minute among the sizes tried (BENCHMARKS.md, "How the demo's settings were chosen").
    config.model.base_width = 16
    config.model.num_res = 1
    config.optimizer.learning_rate = 2e-3
    config.optimizer.warmup_steps = 100
    config.train.num_train_steps = 1600
    config.train.eval_every_steps = 800
    config.train.checkpoint_every_steps = 400
    # The retina photo's crops are nearly flat (a dark disc) and teach little; six grey
    # photos of edges and texture take its place.
    config.data.demo.train_photos = ('astronaut,rocket,motorcycle_left,motorcycle_right,'
                                     'immunohistochemistry,hubble_deep_field,'
                                     'camera,grass,gravel,brick,coins,clock')
  if 'tiny' in variants:
    config.model.base_width = 8
    config.model.num_res = 1
    config.optimizer.learning_rate = 1e-3
  return config
