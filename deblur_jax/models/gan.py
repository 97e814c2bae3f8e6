"""A DeblurGAN-style GAN (Kupyn et al., CVPR 2018) as Flax linen modules, NHWC.

Generator ('gan_generator' in the model registry): DeblurGAN's ResNet
generator (Kupyn et al. 2018, after Johnson et al.'s and CycleGAN's). A 7x7
conv, two 3x3 stride-2 convs (b -> 2b -> 4b), residual blocks at 1/4
resolution, two stride-2 transposed convs back, a 7x7 conv and tanh; instance
norm (no affine parameters) and ReLU after every inner conv, reflection
padding around the 7x7 and residual-block convs, and a global residual: the
output is the input plus the tanh. The report's 8.1M parameters fit 6
residual blocks with 4x4 transposed convs (8,124,419); DeblurGAN's 9 blocks
with 3x3 ones have 11,378,179, 6 blocks with 3x3 ones 7,837,699.

Discriminators (`DISCRIMINATORS`, not generators: they take images and
return logits):
- 'patchgan': pix2pix's and DeblurGAN's 70x70 PatchGAN, one logit per
  overlapping 70x70 patch.
- 'dcgan': the report's "convs + BatchNorm + LeakyReLU + sigmoid", one logit
  per image.
Both return raw logits; the report's final sigmoid is the adversarial loss's
job (deblur_jax.training.losses applies it where the objective needs it).

All modules take images in [0, 1] and compute in DeblurGAN's [-1, 1] range.
Initialisation is DeblurGAN's (and DCGAN's): kernels N(0, 0.02), zero biases.
"""

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from deblur_jax.models.layers import ConvTranspose2x, check_images, image_output, reflect_pad

_init = nn.initializers.normal(0.02)


class ReflectConv(nn.Module):
  """A k x k conv over a reflection-padded input: same height and width out."""
  features: int
  kernel_size: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    return nn.Conv(self.features, (k, k), padding='VALID', kernel_init=_init, dtype=self.dtype,
                   name='conv')(reflect_pad(x, k // 2))


def _instance_norm(dtype, name):
  # PyTorch's InstanceNorm2d defaults: no scale or offset, epsilon 1e-5.
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype, name=name)


class ResnetBlock(nn.Module):
  """conv3x3-IN-ReLU, optional dropout, conv3x3-IN, plus the input."""
  features: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    y = ReflectConv(self.features, 3, self.dtype, name='conv_0')(x)
    y = nn.relu(_instance_norm(self.dtype, 'norm_0')(y))
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    y = ReflectConv(self.features, 3, self.dtype, name='conv_1')(y)
    return x + _instance_norm(self.dtype, 'norm_1')(y)


class ResnetGenerator(nn.Module):
  """DeblurGAN's generator: restores x as x + tanh(network(x)), clipped.

  Attributes:
    base_features: b, the full-resolution channels (64); 4b in the blocks.
    num_blocks: residual blocks at 1/4 resolution (6 fits the report's 8.1M;
      DeblurGAN has 9).
    up_kernel_size: kernel of the two stride-2 transposed convs (4 here,
      DeblurGAN's 3).
    dropout_rate: dropout inside each residual block (DeblurGAN 0.5, report
      not stated).
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1], H and W multiples of 4. Returns a
  one-element list: the restored images (N, H, W, 3) in [0, 1], float32.
  """
  base_features: int = 64
  num_blocks: int = 6
  up_kernel_size: int = 4
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 4  # Input height and width must divide by this.
  # The smallest image side before padding to size_multiple: its features at a quarter
  # of the padded size are reflection-padded by one pixel, which needs two pixels there
  # (PyTorch's ReflectionPad2d refuses one); 5 pads to 8.
  min_side: ClassVar[int] = 5
  supports_adversarial: ClassVar[bool] = True  # Trains with a discriminator.

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_images('ResnetGenerator', x, self.size_multiple)
    b = self.base_features
    x = x.astype(jnp.float32)
    y = ReflectConv(b, 7, self.dtype, name='stem')(2.0 * x - 1.0)
    y = nn.relu(_instance_norm(self.dtype, 'stem_norm')(y))
    for i in range(2):
      y = nn.Conv(b * 2**(i + 1), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                  kernel_init=_init, dtype=self.dtype, name=f'down_{i}')(y)
      y = nn.relu(_instance_norm(self.dtype, f'down_{i}_norm')(y))
    for i in range(self.num_blocks):
      y = ResnetBlock(4 * b, self.dropout_rate, self.dtype, name=f'block_{i}')(y, train)
    for i in range(2):
      y = ConvTranspose2x(b * 2**(1 - i), self.up_kernel_size, kernel_init=_init,
                          dtype=self.dtype, name=f'up_{i}')(y)
      y = nn.relu(_instance_norm(self.dtype, f'up_{i}_norm')(y))
    return image_output(x, ReflectConv(3, 7, self.dtype, name='out')(y), global_residual=True)


def _conv_norm_lrelu(x, features, stride, norm, train, dtype, name):
  """4x4 conv (padding 1), optional BatchNorm (PyTorch defaults), LeakyReLU(0.2)."""
  x = nn.Conv(features, (4, 4), strides=(stride, stride), padding=((1, 1), (1, 1)),
              use_bias=not norm, kernel_init=_init, dtype=dtype, name=name)(x)
  if norm:
    # PyTorch momentum 0.1 is Flax momentum 0.9.
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     use_fast_variance=False, dtype=dtype, name=f'{name}_norm')(x)
  return nn.leaky_relu(x, 0.2)


def _strided_trunk(x, base_features: int, num_layers: int, layer):
  """Both discriminators' trunk: images in [0, 1] mapped to [-1, 1], then
  `num_layers` stride-2 conv blocks of b, 2b, 4b, ... (at most 8b) channels,
  BatchNorm on all but the first."""
  x = 2.0 * x.astype(jnp.float32) - 1.0
  for i in range(num_layers):
    x = layer(x, base_features * min(2**i, 8), 2, i > 0, name=f'conv_{i}')
  return x


class PatchGANDiscriminator(nn.Module):
  """pix2pix's and DeblurGAN's PatchGAN: a logit per overlapping patch.

  `num_layers` 4x4 stride-2 convs (b, 2b, 4b, ... channels, at most 8b), a
  4x4 stride-1 conv, and a 4x4 stride-1 conv to one channel; BatchNorm on all
  but the first and last, LeakyReLU(0.2) after all but the last. With 3
  layers each logit sees a 70x70 patch; 2,765,633 parameters at b = 64.

  Attributes:
    base_features: b, the first conv's channels.
    num_layers: stride-2 convs; 3 gives 70x70 patches.
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1]. Returns float32 logits
  (N, H', W', 1), H' = H / 2^num_layers - 2 for H divisible by 2^num_layers.
  """
  base_features: int = 64
  num_layers: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    layer = functools.partial(_conv_norm_lrelu, train=train, dtype=self.dtype)
    x = _strided_trunk(x, self.base_features, self.num_layers, layer)
    x = layer(x, self.base_features * min(2**self.num_layers, 8), 1, True,
              name=f'conv_{self.num_layers}')
    x = nn.Conv(1, (4, 4), padding=((1, 1), (1, 1)), kernel_init=_init, dtype=self.dtype,
                name='out')(x)
    return x.astype(jnp.float32)


class DCGANDiscriminator(nn.Module):
  """A GoPro GAN's discriminator: strided convs + BatchNorm + LeakyReLU, one logit
  per image.

  `num_layers` 4x4 stride-2 convs (b, 2b, 4b, ... channels, at most 8b) with
  BatchNorm on all but the first and LeakyReLU(0.2), then a global average
  pool and a dense layer to one logit, so any image size works. 2,757,953
  parameters at b = 64.

  Attributes:
    base_features: b, the first conv's channels.
    num_layers: stride-2 convs.
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1]. Returns float32 logits (N, 1).
  """
  base_features: int = 64
  num_layers: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    layer = functools.partial(_conv_norm_lrelu, train=train, dtype=self.dtype)
    x = _strided_trunk(x, self.base_features, self.num_layers, layer)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(1, kernel_init=_init, name='out')(x)


# name -> discriminator class; dataclass fields are config.gan.discriminator's knobs.
DISCRIMINATORS = {
    'patchgan': PatchGANDiscriminator,
    'dcgan': DCGANDiscriminator,
}
