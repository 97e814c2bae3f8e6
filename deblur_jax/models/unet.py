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

The stride-2 transposed conv the model zoo shares lives here too.
"""

import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deblur_jax.errors import InputError

glorot_uniform = nn.initializers.glorot_uniform()

# config.model.batch_norm values -> (level, conv) pairs of encoder convs without BatchNorm.
BATCH_NORM_PLACEMENTS = {'report': {(2, 1)}, 'encoder': set(), 'none': None}


def check_images(model_name: str, x, size_multiple: int) -> None:
  """Raises ValueError unless `x` is NHWC RGB with sides divisible by `size_multiple`."""
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'{model_name} expects NHWC RGB images, got shape {x.shape}.')
  if x.shape[1] % size_multiple or x.shape[2] % size_multiple:
    raise ValueError(f'{model_name} needs height and width divisible by {size_multiple}, got '
                     f'{x.shape[1]}x{x.shape[2]}; pad with image_ops.pad_to_multiple.')


def _subpixel_taps(kernel_size: int) -> tuple[np.ndarray, int]:
  """Which transposed-conv tap feeds each tap of the equivalent stride-1 conv.

  Output 2m + r reads input m + d through tap t = r + p - 2d, p = (k - 1) // 2.
  Returns taps (phase r, window offset d - d_min, tap t) and d_min.
  """
  k, p = kernel_size, (kernel_size - 1) // 2
  pairs = [(r, d, r + p - 2 * d) for r in (0, 1) for d in range(-k, k + 1)
           if 0 <= r + p - 2 * d < k]
  d_min = min(d for _, d, _ in pairs)
  d_max = max(d for _, d, _ in pairs)
  taps = np.zeros((2, d_max - d_min + 1, k), np.float32)
  for r, d, t in pairs:
    taps[r, d - d_min, t] = 1
  return taps, d_min


class ConvTranspose2x(nn.Module):
  """A stride-2 transposed conv: (N, H, W, C) -> (N, 2H, 2W, features).

  Input pixel i adds x[i] * kernel[t] to output 2i + t - (k - 1) // 2 on each
  axis: PyTorch's ConvTranspose2d(k, stride=2, padding=(k - 1) // 2,
  output_padding=k % 2), and Keras' Conv2DTranspose(k, strides=2, 'same') for
  k = 2 and 4 (for k = 3 Keras writes input i to 2i..2i+2, one pixel later). The kernel is
  stored (k, k, in, out) like `nn.ConvTranspose`'s. It is evaluated as one
  stride-1 conv producing the four output phases, then a pixel shuffle: the
  same numbers, but XLA computes transposed convs (and their gradients) far
  more slowly.
  """
  features: int
  kernel_size: int = 2
  use_bias: bool = True
  kernel_init: Callable = glorot_uniform
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, in_features = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', self.kernel_init, (k, k, in_features, self.features))
    taps_np, d_min = _subpixel_taps(k)
    taps = jnp.asarray(taps_np, kernel.dtype)
    window = taps.shape[1]
    phases = jnp.einsum('ayk,bxl,klio->yxiabo', taps, taps, kernel)
    phases = phases.reshape(window, window, in_features, 4 * self.features).astype(self.dtype)
    x = x.astype(self.dtype)
    if window == 1:
      # XLA's CPU backend runs 1x1 convolutions several times slower than this matmul.
      y = jnp.einsum('nhwi,io->nhwo', x, phases[0, 0])
    else:
      pad = (-d_min, window - 1 + d_min)
      y = jax.lax.conv_general_dilated(x, phases, (1, 1), (pad, pad),
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    n, h, w, _ = y.shape
    y = y.reshape(n, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, 2 * h, 2 * w, self.features)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,)).astype(self.dtype)
    return y


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
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1], H and W multiples of 16. Returns a
  one-element list: the restored images (N, H, W, 3) in (0, 1), float32.
  """
  base_features: int = 32
  batch_norm: str = 'report'
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 16  # Input height and width must divide by this.

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_images('UNet', x, self.size_multiple)
    if self.batch_norm not in BATCH_NORM_PLACEMENTS:
      raise InputError(f'Unknown config.model.batch_norm={self.batch_norm!r} for unet; choose '
                       f'one of {sorted(BATCH_NORM_PLACEMENTS)}.')
    unnormalized = BATCH_NORM_PLACEMENTS[self.batch_norm]
    block = functools.partial(ConvBlock, dtype=self.dtype)
    skips = []
    for level in range(4):
      norms = tuple(unnormalized is not None and (level, j) not in unnormalized for j in (0, 1))
      x = block(self.base_features * 2**level, norms, name=f'encoder_{level}')(x, train)
      skips.append(x)
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = block(self.base_features * 16, name='bottleneck')(x, train)
    for level in reversed(range(4)):
      skip = skips[level]
      x = ConvTranspose2x(skip.shape[-1], 2, dtype=self.dtype, name=f'up_{level}')(x)
      x = block(skip.shape[-1], name=f'decoder_{level}')(jnp.concatenate([x, skip], -1), train)
    x = nn.Conv(3, (1, 1), kernel_init=glorot_uniform, dtype=self.dtype, name='out')(x)
    return [nn.sigmoid(x.astype(jnp.float32))]
