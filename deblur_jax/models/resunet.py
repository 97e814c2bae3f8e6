"""The UNet + ResNet hybrid deblurrer (Keras, 972,739 parameters) as a Flax linen module, NHWC.

The report lists every layer with its parameter count; this reconstruction
reproduces each count and the 972,739 total exactly (Keras counts include
BatchNorm's moving statistics, here the 1,024 entries of 'batch_stats'):

  layer               report    here
  conv2d                 448    conv_0: 3x3, 3 -> 16
  conv2d_1            11,008    conv_1: 3x3, 19 -> 64
  conv2d_2            92,288    conv_2: 3x3, 80 -> 128
  residual_block     333,184    block_0: 144 -> 128
  residual_block_1   312,704    block_1: 128 -> 128
  conv2d_transpose   147,584    up_0: 3x3 stride 2, 128 -> 128
  conv2d_transpose_1  73,792    up_1: 3x3 stride 2, 128 -> 64
  conv2d_9             1,731    out: 3x3, 64 -> 3

The input widths 19, 80 and 144 are what the counts force (no kernel size
fits 16, 64 or 128 inputs). We read them as the stem's 16 features reused by
every later stage, U-Net style: conv_1 sees [image, stem], conv_2 the
max-pooled [conv_1, stem], block_0 the max-pooled [conv_2, stem]. A residual
block (conv2d_3 to conv2d_8: three convs each) is conv3x3-BN-ReLU, conv3x3-BN,
plus a 1x1 conv projection of its input, then ReLU: 2 x 512 BatchNorm entries
per block close each count. Convs and transposed convs are followed by ReLU.

The report does not name the output activation; a sigmoid keeps the output in
the images' [0, 1] range (`sigmoid_output=False` gives the linear conv).
Kernels use Keras' glorot-uniform initialisation with zero biases, BatchNorm
Keras' momentum 0.99 and epsilon 1e-3.
"""

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from deblur_jax.models.layers import (
  ConvTranspose2x,
  check_images,
  glorot_uniform,
  image_output,
  max_pool_2x,
)


class ResidualBlock(nn.Module):
  """conv3x3-BN-ReLU, conv3x3-BN, plus a 1x1-conv projection of the input, then ReLU."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, self.features, padding='SAME', kernel_init=glorot_uniform,
                             dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.99,
                             epsilon=1e-3, use_fast_variance=False, dtype=self.dtype)
    y = nn.relu(norm(name='norm_0')(conv((3, 3), name='conv_0')(x)))
    y = norm(name='norm_1')(conv((3, 3), name='conv_1')(y))
    return nn.relu(y + conv((1, 1), name='shortcut')(x))


class ResUNet(nn.Module):
  """The hybrid's encoder (two max-pools), residual blocks and transposed-conv decoder.

  Attributes:
    base_features: the stem's channels (16 in the report); conv_1 and up_1
      have 4x, conv_2, the residual blocks and up_0 8x that.
    num_blocks: residual blocks at 1/4 resolution (2 in the report).
    sigmoid_output: a sigmoid on the output conv (the report does not say).
    global_residual: add a tanh correction to the input instead of the
      sigmoid output (`layers.image_output`; not in the report, off by default).
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1], H and W multiples of 4. Returns a
  one-element list: the restored images (N, H, W, 3), float32, in [0, 1] with
  `sigmoid_output` or `global_residual` (which replaces the sigmoid).
  """
  base_features: int = 16
  num_blocks: int = 2
  sigmoid_output: bool = True
  global_residual: bool = False
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 4  # Input height and width must divide by this.

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_images('ResUNet', images, self.size_multiple)
    b = self.base_features
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding='SAME',
                             kernel_init=glorot_uniform, dtype=self.dtype)
    x = images.astype(self.dtype)
    stem = nn.relu(conv(b, name='conv_0')(x))
    y = nn.relu(conv(4 * b, name='conv_1')(jnp.concatenate([x, stem], -1)))
    y = max_pool_2x(jnp.concatenate([y, stem], -1))
    stem = y[..., 4 * b:]
    y = nn.relu(conv(8 * b, name='conv_2')(y))
    y = max_pool_2x(jnp.concatenate([y, stem], -1))
    for i in range(self.num_blocks):
      y = ResidualBlock(8 * b, self.dtype, name=f'block_{i}')(y, train)
    for i, width in enumerate((8 * b, 4 * b)):
      y = nn.relu(ConvTranspose2x(width, 3, dtype=self.dtype, name=f'up_{i}')(y))
    return image_output(images, conv(3, name='out')(y), self.sigmoid_output,
                        self.global_residual)
