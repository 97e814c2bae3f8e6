"""Restormer (Zamir et al., CVPR 2022): motion deblurring on GoPro (default), and the
variants `:defocus` (single-image defocus deblurring, DPDD), `:deraining`
(Rain13K), `:denoising` (Gaussian colour denoising, BiasFree LayerNorm) and
`:dual_pixel` (dual-pixel defocus deblurring).

The official recipe (*/Options/*.yml of github.com/swz30/Restormer, the same for
every task): AdamW at 3e-4 with betas (0.9, 0.999) and weight decay 1e-4; 300k
iterations, the learning rate held at 3e-4 for 92k, then cosine to 1e-6 over
208k; L1 loss; gradients clipped to global norm 0.01; flips and 90-degree
rotations; progressive patches (config.data.stages): 128, 160, 192, 256, 320 and
384 pixels at global batches 64, 40, 32, 16, 8 and 8 (8 GPUs) for 92k, 64k, 48k,
36k, 36k and 24k iterations. Evaluation pads by reflection to a multiple of 8
only, as the official test scripts do.

  python -m deblur_jax.main --config=configs/restormer.py --workdir=runs/restormer \
      --config.data.dir=/data/GOPRO_Large

The dual-pixel model takes 6-channel inputs (the left and right views), which
deblur_jax's data sources and predict do not read: its variant describes the
model, for converted weights used from Python. ':demo' and ':tiny' shrink the
model for the embedded demo photos and for tests.
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common

VARIANTS = ('defocus', 'deraining', 'denoising', 'dual_pixel')
# (steps, crop side, global batch) of the official progressive training.
PROGRESSIVE_STAGES = ((92_000, 128, 64), (64_000, 160, 40), (48_000, 192, 32),
                      (36_000, 256, 16), (36_000, 320, 8), (24_000, 384, 8))


def model_config() -> ml_collections.ConfigDict:
  """config.model of the official Restormer (the motion-deblurring sizes)."""
  return ml_collections.ConfigDict(dict(
      name='restormer',  # The registry name (deblur_jax.models.MODELS).
      dim=48,  # Channels at full resolution, doubled per level down.
      num_blocks=(4, 6, 6, 8),  # Transformer blocks per level, top first (then the latent).
      num_refinement_blocks=4,  # Blocks after the decoder, at full resolution.
      heads=(1, 2, 4, 8),  # Attention heads per level, top first.
      ffn_expansion_factor=2.66,  # GDFN hidden width = int(channels x this).
      use_bias=False,  # Biases in the blocks' convs.
      layernorm_type='WithBias',  # or 'BiasFree' (the denoising models).
      dual_pixel_task=False,  # 6-channel input (left and right views), no image residual.
  ))


def _set_data(config, variants) -> None:
  """Each task's training data, as the official scripts lay it out."""
  if 'defocus' in variants or 'dual_pixel' in variants:
    # DPDD: train/{inputC,target}/*.png (and inputL, inputR for the dual-pixel model).
    config.data.blur_folder = 'inputC'
    config.data.sharp_folder = 'target'
  elif 'deraining' in variants:
    # Rain13K: train/{input,target}/*.png; scored on the Y channel, as the paper.
    config.data.blur_folder = 'input'
    config.data.sharp_folder = 'target'
    config.eval.y_channel = True
  elif 'denoising' in variants:
    # Clean images under dir/train (e.g. DFWF: DIV2K, Flickr2K, WED, BSD400) with
    # Gaussian noise of a standard deviation drawn in [0, 50/255] per crop.
    config.data.source = 'synthetic'
    config.data.synthetic.kernels = 'identity'
    config.data.synthetic.noise_sigma = '0,0.19608'


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/restormer.py', VARIANTS)
  config = common.base_config()
  config.model = model_config()
  config.model.layernorm_type = 'BiasFree' if 'denoising' in variants else 'WithBias'
  config.model.dual_pixel_task = 'dual_pixel' in variants
  config.data.stages = PROGRESSIVE_STAGES
  config.data.crop_size = PROGRESSIVE_STAGES[0][1]  # The first stage's, for bench and init.
  config.data.augment = 'flips_rot90'
  config.loss.name = 'l1'
  common.basicsr_adamw(config, learning_rate=3e-4, b2=0.999, weight_decay=1e-4,
                       end_learning_rate=1e-6, hold_steps=92_000)
  config.train.batch_size = PROGRESSIVE_STAGES[0][2]
  config.train.num_train_steps = 300_000
  config.train.eval_every_steps = 10_000
  config.train.checkpoint_every_steps = 5_000
  config.eval.protocol = 'basicsr'  # uint8 outputs, as the official test scripts write them
  _set_data(config, variants)
  common.apply_short_run(config, variants)
  if set(variants) & set(common.SHORT_RUNS):
    config.data.stages = ()
    config.optimizer.hold_steps = 0
    config.model.dim = 8
    config.model.num_blocks = (1, 1, 1, 1)
    config.model.num_refinement_blocks = 1
    config.model.heads = (1, 1, 2, 2)
  if 'demo' in variants:
    config.model.dim = 16
    config.model.num_blocks = (1, 1, 2, 2)
    # Two progressive stages, as the recipe: 48x48 crops, then 64x64 at half the batch.
    config.data.stages = ((400, 48, 16), (200, 64, 8))
    config.optimizer.learning_rate = 1e-3
  if 'tiny' in variants:
    config.model.num_blocks = (1, 1, 1, 0)
    config.model.num_refinement_blocks = 0
  return config
