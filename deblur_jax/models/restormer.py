"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution
Image Restoration", CVPR 2022) as Flax linen modules, NHWC.

Follows the official PyTorch code (github.com/swz30/Restormer,
basicsr/models/archs/restormer_arch.py), with its module names so that official
checkpoints map onto it by renaming (deblur_jax.weights.restormer_pytorch):

  PyTorch                                   Flax
  patch_embed.proj                          patch_embed
  encoder_level{1,2,3}.{j}, latent.{j},     encoder_level{1,2,3}_{j}, latent_{j},
  decoder_level{1,2,3}.{j}, refinement.{j}  decoder_level{1,2,3}_{j}, refinement_{j}
    .norm{1,2}.body.weight, .bias             /norm{1,2}/scale, bias
    .attn.{qkv,qkv_dwconv,project_out}        /attn/{qkv,qkv_dwconv,project_out}
    .attn.temperature                         /attn/temperature (heads, 1, 1)
    .ffn.{project_in,dwconv,project_out}      /ffn/{project_in,dwconv,project_out}
  down1_2.body.0, up4_3.body.0, ...         down1_2, up4_3, ...
  reduce_chan_level{2,3}, skip_conv, output the same names

Conv weights are Flax 'kernel's (k, k, in, out), LayerNorm weights 'scale's.
Initialisation follows PyTorch's defaults (convs uniform in +-1/sqrt(fan_in),
norms one and zero, temperatures one).
"""

import functools
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deblur_jax.models.layers import (
  ChannelLayerNorm,
  Conv1x1,
  DepthwiseConv3x3,
  TorchConv,
  check_images,
)
from deblur_jax.models.nafnet import pixel_shuffle

# The released models (github.com/swz30/Restormer, */Options/*.yml): motion deblurring
# (GoPro), single-image defocus deblurring (DPDD) and deraining share one architecture
# (26,126,644 parameters); Gaussian colour denoising uses the BiasFree LayerNorm
# (26,111,668); dual-pixel defocus deblurring takes 6 channels (26,132,548).
_OFFICIAL = {'dim': 48, 'num_blocks': (4, 6, 6, 8), 'num_refinement_blocks': 4,
             'heads': (1, 2, 4, 8), 'ffn_expansion_factor': 2.66, 'use_bias': False,
             'layernorm_type': 'WithBias', 'dual_pixel_task': False}
PRESETS = {
    'restormer_motion': _OFFICIAL,
    'restormer_defocus': _OFFICIAL,
    'restormer_deraining': _OFFICIAL,
    'restormer_denoising': {**_OFFICIAL, 'layernorm_type': 'BiasFree'},
    'restormer_dual_pixel': {**_OFFICIAL, 'dual_pixel_task': True},
}


def pixel_unshuffle(x, factor: int = 2):
  """PyTorch's nn.PixelUnshuffle in NHWC: (N, r * H, r * W, C) -> (N, H, W, C * r * r).

  Input channel c at (r * h + i, r * w + j) lands on output channel c * r * r + i * r + j
  (the inverse of `pixel_shuffle`).
  """
  n, height, width, channels = x.shape
  r = factor
  x = x.reshape(n, height // r, r, width // r, r, channels)
  x = x.transpose(0, 1, 3, 5, 2, 4)  # (n, h, w, c, i, j)
  return x.reshape(n, height // r, width // r, channels * r * r)


def _l2_normalise_over_pixels(x):
  """x (N, P, heads, c) divided by its L2 norm over the pixels P (at least 1e-12,
  as torch.nn.functional.normalize), in float32."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True))
  return x / jnp.maximum(norm, 1e-12)


class Attention(nn.Module):
  """Multi-Dconv head transposed attention (MDTA): attention across channels, per
  head a (C / heads) x (C / heads) map from L2-normalised queries and keys, scaled
  by a learned temperature per head."""
  num_heads: int
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, height, width, channels = x.shape
    heads = self.num_heads
    temperature = self.param('temperature', nn.initializers.ones, (heads, 1, 1))
    qkv = Conv1x1(3 * channels, use_bias=self.use_bias, dtype=self.dtype, name='qkv')(x)
    qkv = DepthwiseConv3x3(use_bias=self.use_bias, dtype=self.dtype, name='qkv_dwconv')(qkv)
    # Channels in (head, c) order, as the official rearrange 'b (head c) h w'.
    q, k, v = (t.reshape(n, height * width, heads, channels // heads)
               for t in jnp.split(qkv, 3, axis=-1))
    q, k = _l2_normalise_over_pixels(q), _l2_normalise_over_pixels(k)
    attn = jnp.einsum('nphc,nphd->nhcd', q, k) * temperature
    attn = jax.nn.softmax(attn, axis=-1).astype(self.dtype)
    out = jnp.einsum('nhcd,nphd->nphc', attn, v, preferred_element_type=jnp.float32)
    out = out.astype(self.dtype).reshape(n, height, width, channels)
    return Conv1x1(channels, use_bias=self.use_bias, dtype=self.dtype, name='project_out')(out)


class FeedForward(nn.Module):
  """Gated-Dconv feed-forward network (GDFN): 1x1 conv to twice the hidden width,
  3x3 depthwise conv, GELU(first half) * second half, 1x1 conv back."""
  ffn_expansion_factor: float = 2.66
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    hidden = int(channels * self.ffn_expansion_factor)
    conv1x1 = functools.partial(Conv1x1, use_bias=self.use_bias, dtype=self.dtype)
    x = conv1x1(2 * hidden, name='project_in')(x)
    x1, x2 = jnp.split(DepthwiseConv3x3(use_bias=self.use_bias, dtype=self.dtype,
                                        name='dwconv')(x), 2, axis=-1)
    x = nn.gelu(x1, approximate=False) * x2
    return conv1x1(channels, name='project_out')(x)


class TransformerBlock(nn.Module):
  """x + MDTA(LayerNorm(x)), then x + GDFN(LayerNorm(x))."""
  num_heads: int
  ffn_expansion_factor: float = 2.66
  use_bias: bool = False
  layernorm_type: str = 'WithBias'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    norm = functools.partial(ChannelLayerNorm, self.layernorm_type, dtype=self.dtype)
    x = x + Attention(self.num_heads, self.use_bias, self.dtype,
                      name='attn')(norm(name='norm1')(x))
    return x + FeedForward(self.ffn_expansion_factor, self.use_bias, self.dtype,
                           name='ffn')(norm(name='norm2')(x))


class Restormer(nn.Module):
  """The official Restormer: a four-level UNet of transformer blocks.

  Attributes:
    dim: channels at full resolution, doubled at each level down (the first
      decoder level and the refinement run at 2 * dim).
    num_blocks: transformer blocks per level, top first (decoders as encoders).
    num_refinement_blocks: blocks after the decoder, at full resolution.
    heads: attention heads per level, top first (decoder level 1 and the
      refinement use heads[0]).
    ffn_expansion_factor: the GDFN hidden width is int(channels * this).
    use_bias: biases in every conv but patch_embed, down- and upsampling (the
      official `bias`).
    layernorm_type: 'WithBias' or 'BiasFree' (the official denoising models).
    dual_pixel_task: the dual-pixel defocus model: inputs (N, H, W, 6), the left
      and right views, a skip_conv from the embedded input, and no image residual.
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) (6 channels with dual_pixel_task) in [0, 1],
  H and W multiples of 8. Returns [the restored images (N, H, W, 3)], float32,
  unclamped.
  """
  dim: int = 48
  num_blocks: Sequence[int] = (4, 6, 6, 8)
  num_refinement_blocks: int = 4
  heads: Sequence[int] = (1, 2, 4, 8)
  ffn_expansion_factor: float = 2.66
  use_bias: bool = False
  layernorm_type: str = 'WithBias'
  dual_pixel_task: bool = False
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 8  # Input height and width must divide by this.
  # The attention spans the whole image: padding beyond size_multiple (as the
  # official test pads) would change every output pixel.
  pad_only_to_multiple: ClassVar[bool] = True

  @property
  def input_channels(self) -> int:
    """6 for the dual-pixel model (left and right views), else 3 (RGB)."""
    return 6 if self.dual_pixel_task else 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No dropout or batch statistics.
    check_images('Restormer', x, self.size_multiple, self.input_channels)
    if self.layernorm_type not in ('WithBias', 'BiasFree'):
      raise ValueError(f"Restormer's layernorm_type is 'WithBias' or 'BiasFree', "
                       f'got {self.layernorm_type!r}.')
    if len(self.num_blocks) != 4 or len(self.heads) != 4:
      raise ValueError(f'Restormer needs four num_blocks and heads, got '
                       f'{tuple(self.num_blocks)} and {tuple(self.heads)}.')
    conv = functools.partial(TorchConv, dtype=self.dtype)
    conv1x1 = functools.partial(Conv1x1, use_bias=self.use_bias, dtype=self.dtype)

    def blocks(z, name, num, heads):
      for j in range(num):
        z = TransformerBlock(heads, self.ffn_expansion_factor, self.use_bias,
                             self.layernorm_type, self.dtype, name=f'{name}_{j}')(z)
      return z

    def down(z, name):
      return pixel_unshuffle(conv(z.shape[-1] // 2, 3, use_bias=False, name=name)(z))

    def up(z, name):
      return pixel_shuffle(conv(2 * z.shape[-1], 3, use_bias=False, name=name)(z))

    c, (b1, b2, b3, b4), (h1, h2, h3, h4) = self.dim, self.num_blocks, self.heads
    inp = x.astype(jnp.float32)
    inp_enc_level1 = conv(c, 3, use_bias=False, name='patch_embed')(inp)
    enc1 = blocks(inp_enc_level1, 'encoder_level1', b1, h1)
    enc2 = blocks(down(enc1, 'down1_2'), 'encoder_level2', b2, h2)
    enc3 = blocks(down(enc2, 'down2_3'), 'encoder_level3', b3, h3)
    z = blocks(down(enc3, 'down3_4'), 'latent', b4, h4)
    z = jnp.concatenate([up(z, 'up4_3'), enc3], axis=-1)
    z = blocks(conv1x1(4 * c, name='reduce_chan_level3')(z), 'decoder_level3', b3, h3)
    z = jnp.concatenate([up(z, 'up3_2'), enc2], axis=-1)
    z = blocks(conv1x1(2 * c, name='reduce_chan_level2')(z), 'decoder_level2', b2, h2)
    z = jnp.concatenate([up(z, 'up2_1'), enc1], axis=-1)  # 2 * dim: no reduction
    z = blocks(z, 'decoder_level1', b1, h1)
    z = blocks(z, 'refinement', self.num_refinement_blocks, h1)
    output = conv(3, 3, use_bias=self.use_bias, name='output')
    if self.dual_pixel_task:
      z = z + conv1x1(2 * c, name='skip_conv')(inp_enc_level1)
      return [output(z).astype(jnp.float32)]
    return [output(z).astype(jnp.float32) + inp]
