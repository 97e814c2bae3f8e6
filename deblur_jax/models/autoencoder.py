"""Two convolutional deblurring autoencoders as Flax linen modules, NHWC.

Two registry names, since the two share no layers: 'autoencoder' (a plain
autoencoder trained with MSE and Adam with ReduceLROnPlateau on 350 pairs) and
'attention_autoencoder' (a GoPro autoencoder with a dilated bottleneck and
attention). Neither report lists its layers; these are small designs that
follow their descriptions. Both are fully convolutional (any size divisible
by 8), end in a sigmoid since both reports scale images to [0, 1], and use
Keras' glorot-uniform kernels with zero biases. Neither has BatchNorm or
dropout.
"""

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from deblur_jax.models.layers import ConvTranspose2x, check_images, glorot_uniform, image_output

_conv = functools.partial(nn.Conv, kernel_size=(3, 3), kernel_init=glorot_uniform)


class ConvAutoencoder(nn.Module):
  """The plain autoencoder: strided-conv encoder, transposed-conv decoder.

  Three 3x3 stride-2 convs + ReLU (b, 2b, 4b channels) compress to 1/8
  resolution; three 3x3 stride-2 transposed convs + ReLU (4b, 2b, b) expand
  back; a 3x3 conv and a sigmoid give RGB. 1,331,459 parameters at b = 64.

  Attributes:
    base_features: b, the first conv's channels.
    global_residual: add a tanh correction to the input instead of the
      sigmoid output (`layers.image_output`; not in the report, off by default).
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1], H and W multiples of 8. Returns a
  one-element list: the restored images (N, H, W, 3) in [0, 1], float32.
  """
  base_features: int = 64
  global_residual: bool = False
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 8  # Input height and width must divide by this.

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_images('ConvAutoencoder', images, self.size_multiple)
    x = images
    conv = functools.partial(_conv, dtype=self.dtype)
    widths = [self.base_features * 2**i for i in range(3)]
    for i, width in enumerate(widths):
      # Symmetric padding (PyTorch's, not 'SAME') so the code sits on the pixel grid.
      x = nn.relu(conv(width, strides=(2, 2), padding=((1, 1), (1, 1)), name=f'down_{i}')(x))
    for i, width in enumerate(reversed(widths)):
      x = nn.relu(ConvTranspose2x(width, 3, dtype=self.dtype, name=f'up_{i}')(x))
    x = conv(3, padding='SAME', name='out')(x)
    return image_output(images, x, global_residual=self.global_residual)


class AttentionGate(nn.Module):
  """Additive attention (Oktay et al., Attention U-Net) on a skip connection.

  Weighs each pixel of `skip` by sigmoid(psi(ReLU(W_x skip + W_g gate))), a
  map in (0, 1) computed from both: the decoder learns where the skip helps.
  """
  features: int  # Width of the intermediate map.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, skip, gate):
    conv = functools.partial(nn.Conv, kernel_size=(1, 1), kernel_init=glorot_uniform,
                             dtype=self.dtype)
    q = nn.relu(conv(self.features, name='skip_proj')(skip)
                + conv(self.features, use_bias=False, name='gate_proj')(gate))
    return skip * nn.sigmoid(conv(1, name='psi')(q))


class AttentionAutoencoder(nn.Module):
  """The GoPro autoencoder (10.3M parameters in its report): progressive
  downsampling, dilated bottleneck, residual attention decoder.

  Encoder: two 3x3 convs at full resolution (b), then per level a 3x3 stride-2
  conv and a 3x3 conv (2b at 1/2, 4b at 1/4). Bottleneck: a stride-2 conv to
  8b at 1/8, then 3x3 convs with growing dilation (2, 4) for a wide receptive
  field. Decoder, per level: a 2x2 stride-2 transposed conv to the skip's
  width, an attention gate on the skip, a 3x3 conv over both concatenated,
  and a 3x3 conv whose output is added to the upsampled features (the
  residual connection). Every conv is followed by ReLU except where the
  residual is added (ReLU after the sum). A 3x3 conv and a sigmoid give RGB.
  10,145,286 parameters at b = 64, against the report's 10.3M.

  Attributes:
    base_features: b, the full-resolution channels.
    dilations: dilation of each bottleneck conv.
    global_residual: add a tanh correction to the input instead of the
      sigmoid output (`layers.image_output`; not in the report, off by default).
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1], H and W multiples of 8. Returns a
  one-element list: the restored images (N, H, W, 3) in [0, 1], float32.
  """
  base_features: int = 64
  dilations: tuple[int, ...] = (2, 4)
  global_residual: bool = False
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 8  # Input height and width must divide by this.

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_images('AttentionAutoencoder', images, self.size_multiple)
    x = images
    conv = functools.partial(_conv, padding='SAME', dtype=self.dtype)
    down = functools.partial(_conv, strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype)
    b = self.base_features
    x = nn.relu(conv(b, name='stem_0')(x))
    x = nn.relu(conv(b, name='stem_1')(x))
    skips = [x]
    for level in (1, 2):
      x = nn.relu(down(b * 2**level, name=f'down_{level}')(x))
      x = nn.relu(conv(b * 2**level, name=f'encoder_{level}')(x))
      skips.append(x)
    x = nn.relu(down(8 * b, name='down_3')(x))
    for i, rate in enumerate(self.dilations):
      # 'SAME' written out ((rate, rate) for a 3x3 kernel): ONNX's converter pads a
      # dilated 'SAME' conv wrongly for symbolic sizes.
      x = nn.relu(_conv(8 * b, kernel_dilation=(rate, rate), padding=((rate, rate), (rate, rate)),
                        dtype=self.dtype, name=f'dilated_{i}')(x))
    for level in (2, 1, 0):
      skip = skips[level]
      width = skip.shape[-1]
      up = nn.relu(ConvTranspose2x(width, 2, dtype=self.dtype, name=f'up_{level}')(x))
      gated = AttentionGate(width // 2, self.dtype, name=f'attention_{level}')(skip, up)
      y = nn.relu(conv(width, name=f'decoder_{level}_conv_0')(jnp.concatenate([up, gated], -1)))
      x = nn.relu(up + conv(width, name=f'decoder_{level}_conv_1')(y))
    x = conv(3, name='out')(x)
    return image_output(images, x, global_residual=self.global_residual)
