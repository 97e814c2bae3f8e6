"""The DeblurGAN-style GAN of the 2023 Keras reports: `--config=configs/gan.py[:demo|:tiny]`.

Generator: a ResNet encoder-decoder with residual blocks and a global skip
(8.1M parameters); discriminator: a 70x70 PatchGAN (strided convs, BatchNorm,
LeakyReLU) whose logits the adversarial loss reads. The report names no losses;
these are DeblurGAN-v2's: content 0.5 MSE + 0.006 VGG19 conv3_3 MSE, LSGAN weight
0.001, here all doubled so that the MSE has weight 1 (Adam does not see the
scale): MSE, LSGAN at 0.002, and the perceptual term when weights are given
(`--config.loss.extra_weights.perceptual=0.012 --config.loss.perceptual_weights=vgg19.npz`,
see `python -m deblur_jax.convert_vgg`). Adam 1e-4 with beta1 0.5 for both networks.
The report trained at 448x448. On L1 instead of MSE the generator settles on
returning its input (README, "Do they learn?").
"""

from typing import Optional

import ml_collections

from deblur_jax.configs import common


def get_config(arg: Optional[str] = None):
  variants = common.parse_arg(arg, 'configs/gan.py')
  config = common.base_config()
  config.model = ml_collections.ConfigDict(dict(
      name='gan_generator',  # The registry name (deblur_jax.models.MODELS).
      base_features=64,  # The stem's channels, doubled by each of two downsamplings.
      num_blocks=6,  # Residual blocks at 1/4 resolution.
      up_kernel_size=4,  # Kernel side of the two transposed convolutions.
      dropout_rate=0.0,  # Dropout inside the residual blocks.
  ))
  config.gan.discriminator = ml_collections.ConfigDict(dict(
      name='patchgan', base_features=64, num_layers=3))
  config.gan.loss = 'lsgan'
  config.gan.weight = 0.002
  config.loss.name = 'mse'
  config.optimizer.learning_rate = 1e-4
  config.optimizer.b1 = 0.5
  config.optimizer.schedule = 'constant'
  config.train.batch_size = 8
  config.train.num_epochs = 100.0
  config.train.eval_every_steps = 1000
  config.data.crop_size = 256
  common.apply_short_run(config, variants)
  if 'demo' in variants:
    # A tenth of DeblurGAN's steps need a larger step for the generator: at 1e-4 it is
    # still 0.18 dB below its input after 600 steps, at 1e-3 0.33 dB above (README).
    config.optimizer.learning_rate = 1e-3
    config.model.base_features = 32
    config.model.num_blocks = 3
    config.gan.discriminator.base_features = 32
  if 'tiny' in variants:
    config.model.base_features = 4
    config.model.num_blocks = 1
    config.gan.discriminator.base_features = 4
    config.gan.discriminator.num_layers = 2
  return config
