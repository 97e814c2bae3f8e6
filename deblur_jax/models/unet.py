"""The BatchNorm UNet deblurrer (Keras, 7,763,491 parameters) as a Flax linen module, NHWC.

The report gives the layer types and two numbers: 7,763,491 parameters of
which 1,664 are non-trainable. This reconstruction matches both exactly:

- Encoder: four levels of two 3x3 convs + ReLU (32, 64, 128, 256 channels),
  each level followed by 2x2 max-pooling; bottleneck: two 3x3 convs + ReLU
  (512). Decoder: per level a 2x2 stride-2 transposed conv to the skip's
  width, concatenation with the skip, two 3x3 convs + ReLU. Output: a 1x1
  conv to RGB and a sigmoid. Without normalisation this classic UNet has
  7,760,163 parameters. A search over its family (widths 8-64, 2-6 levels,
  1-3 convs per block, 2x2/3x3/4x4 transposed convs, 1x1/3x3 output conv)
  finds no other layout with exactly that count, bar two that move convs
  between encoder and decoder blocks (3 + 1 or 1 + 3 instead of 2 + 2).
- The remainder, 3,328 = 4 x 832, is BatchNorm (scale, offset, moving mean and
  variance) over 832 channels; Keras' 1,664 non-trainable parameters are the
  moving statistics. The report puts BatchNorm after the encoder convs' ReLU.
  After every encoder conv would be 960 channels; no uniform placement gives
  832, so `batch_norm='report'` guesses that one 128-channel BatchNorm was
  left out of a hand-written model, and omits the one after the second conv
  of the third level. `batch_norm='encoder'` puts it back.

Kernels use Keras' default glorot-uniform initialisation with zero biases, and
BatchNorm Keras' momentum 0.99 and epsilon 1e-3.
"""

import functools
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deblur_jax.core.lookup import lookup
from deblur_jax.models.layers import (
  ConvTranspose2x,
  check_images,
  glorot_uniform,
  image_output,
  max_pool_2x,
)

# config.model.batch_norm values -> (level, conv) pairs of encoder convs without BatchNorm.
BATCH_NORM_PLACEMENTS = {'report': {(2, 1)}, 'encoder': set(), 'none': None}


class ConvBlock(nn.Module):
  """3x3 convs + ReLU, each optionally followed by BatchNorm (Keras defaults)."""
  features: int
  batch_norm: Sequence[bool] = (False, False)  # One entry per conv.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for j, norm in enumerate(self.batch_norm):
      x = nn.relu(nn.Conv(self.features, (3, 3), padding='SAME', kernel_init=glorot_uniform,
                          dtype=self.dtype, name=f'conv_{j}')(x))
      if norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                         use_fast_variance=False, dtype=self.dtype, name=f'norm_{j}')(x)
    return x


class UNet(nn.Module):
  """The BatchNorm UNet: four pooling levels, transposed-conv decoder, sigmoid output.

  Attributes:
    base_features: channels at full resolution (32 in the report); 2x, 4x, 8x
      that at the lower levels and 16x in the bottleneck.
    batch_norm: 'report' (after every encoder conv but the second of the third
      level: the report's 832 channels), 'encoder' (after every encoder conv)
      or 'none'.
    global_residual: add a tanh correction to the input instead of the
      sigmoid output (`layers.image_output`; not in the report, off by default).
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1], H and W multiples of 16. Returns a
  one-element list: the restored images (N, H, W, 3) in [0, 1], float32.
  """
  base_features: int = 32
  batch_norm: str = 'report'
  global_residual: bool = False
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 16  # Input height and width must divide by this.

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_images('UNet', images, self.size_multiple)
    unnormalized = lookup(BATCH_NORM_PLACEMENTS, self.batch_norm, 'config.model.batch_norm')
    block = functools.partial(ConvBlock, dtype=self.dtype)
    x = images
    skips = []
    for level in range(4):
      norms = tuple(unnormalized is not None and (level, j) not in unnormalized for j in (0, 1))
      x = block(self.base_features * 2**level, norms, name=f'encoder_{level}')(x, train)
      skips.append(x)
      x = max_pool_2x(x)
    x = block(self.base_features * 16, name='bottleneck')(x, train)
    for level in reversed(range(4)):
      skip = skips[level]
      x = ConvTranspose2x(skip.shape[-1], 2, dtype=self.dtype, name=f'up_{level}')(x)
      x = block(skip.shape[-1], name=f'decoder_{level}')(jnp.concatenate([x, skip], -1), train)
    x = nn.Conv(3, (1, 1), kernel_init=glorot_uniform, dtype=self.dtype, name='out')(x)
    return image_output(images, x, global_residual=self.global_residual)
