"""FFTformer (Kong et al., "Efficient Frequency Domain-based Transformers for
High-Quality Image Deblurring", CVPR 2023) as Flax linen modules, NHWC.

Follows the official PyTorch code (github.com/kkkls/FFTformer,
basicsr/models/archs/fftformer_arch.py), with its module names so that official
checkpoints map onto it by renaming (deblur_jax/weights/fftformer_pytorch.py):

  PyTorch                                     Flax
  patch_embed.proj                            patch_embed
  encoder_level{i}.{j}.{norm2,ffn}.*          encoder_level{i}_{j}/{norm2,ffn}/*
  decoder_level{i}.{j}.{norm1,attn,norm2,ffn}.*  decoder_level{i}_{j}/...
  refinement.{j}.*                            refinement_{j}/...
  down1_2.body.1, up3_2.body.1, ...           down1_2, up3_2, ...
  fuse{n}.{conv,conv2,att_channel.*}          fuse{n}/{conv,conv2,att_channel/*}
  reduce_chan_level2, output                  reduce_chan_level2, output
  *.norm*.body.{weight,bias}                  */norm*/{scale,bias}
  *.ffn.fft                                   */ffn/fft (PyTorch's shape (2H, 1, 1, 8, 5))

`reduce_chan_level2` is built by the official model but never used by its
forward pass; it is kept (unused) so that official state dicts load strictly and
the parameter count matches (16,560,474 for the defaults).

Encoder blocks have no attention (norm2 + DFFN); decoder and refinement blocks
have FSAS + DFFN. The FFTs run in float32 whatever `dtype` is, as the official
code's `.float()` does.
"""

import functools
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from deblur_jax.models.layers import (
  ChannelLayerNorm,
  Conv1x1,
  DepthwiseConv3x3,
  TorchConv,
  check_images,
  downsample_conv,
  in_plain_forms,
  torch_uniform,
  upsample_conv,
)

PATCH = 8  # the side of the patches DFFN and FSAS transform

# The official GoPro / HIDE model (options: dim 48, num_blocks [6, 6, 12, 8], 4
# refinement blocks, FFN expansion 3, no biases): 16,560,474 parameters.
PRESETS = {
    'fftformer': {'dim': 48, 'num_blocks': (6, 6, 12, 8), 'num_refinement_blocks': 4,
                  'ffn_expansion_factor': 3.0, 'use_bias': False},
}


def to_patches(x):
  """(N, H, W, C) -> (N, H / 8, 8, W / 8, 8, C)."""
  n, h, w, c = x.shape
  return x.reshape(n, h // PATCH, PATCH, w // PATCH, PATCH, c)


def from_patches(x):
  """The inverse of `to_patches`."""
  n, hp, p1, wp, p2, c = x.shape
  return x.reshape(n, hp * p1, wp * p2, c)


def patch_rfft2(x):
  """The float32 2-D real FFT of each 8x8 patch of (N, H, W, C): (N, H/8, 8, W/8, 5, C)."""
  return jnp.fft.rfft2(to_patches(x.astype(jnp.float32)), axes=(2, 4))


def patch_irfft2(spectrum):
  """The inverse of `patch_rfft2` (as torch.fft.irfft2(s=(8, 8)): the imaginary parts a
  real signal cannot have are dropped), back to (N, H, W, C) float32."""
  return from_patches(jnp.fft.irfft2(spectrum, s=(PATCH, PATCH), axes=(2, 4)))


def _dft_basis(length: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
  """cos and sin of 2 pi k n / 8 for positions k < `length` and frequencies n < `bins`."""
  angle = 2 * np.pi * np.outer(np.arange(length), np.arange(bins)) / PATCH
  return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def patch_dft(x):
  """`patch_rfft2` written as matrix products (its real and imaginary parts, each
  (N, H/8, 8, W/8, 5, C)): a real DFT along the patch columns, then a complex one
  along its rows, for runtimes without 2-D FFTs (`layers.plain_forms`)."""
  patches = to_patches(x.astype(jnp.float32))
  cos_cols, sin_cols = _dft_basis(PATCH, PATCH // 2 + 1)
  cos_rows, sin_rows = _dft_basis(PATCH, PATCH)
  real = jnp.einsum('ahmbnc,nv->ahmbvc', patches, cos_cols)
  imag = -jnp.einsum('ahmbnc,nv->ahmbvc', patches, sin_cols)
  rows = functools.partial(jnp.einsum, 'ahmbvc,mu->ahubvc')
  return (rows(real, cos_rows) + rows(imag, sin_rows),
          rows(imag, cos_rows) - rows(real, sin_rows))


def patch_idft(real, imag):
  """`patch_irfft2` of the spectrum `real` + i `imag` written as matrix products, the
  inverse of `patch_dft`: a complex inverse DFT along the rows, then the real one
  along the columns, which drops the imaginary parts of the first and the Nyquist
  column as torch.fft.irfft2 does (their sines are zero)."""
  cos_rows, sin_rows = _dft_basis(PATCH, PATCH)
  rows = functools.partial(jnp.einsum, 'ahubvc,mu->ahmbvc')
  row_real = rows(real, cos_rows) - rows(imag, sin_rows)
  row_imag = rows(imag, cos_rows) + rows(real, sin_rows)
  cos_cols, sin_cols = _dft_basis(PATCH, PATCH // 2 + 1)
  weights = np.array([1, 2, 2, 2, 1], np.float32) / (PATCH * PATCH)  # the Hermitian halves
  patches = (jnp.einsum('ahmbvc,nv->ahmbnc', row_real, cos_cols * weights)
             - jnp.einsum('ahmbvc,nv->ahmbnc', row_imag, sin_cols * weights))
  return from_patches(patches)


def patch_mask_shape(channels: int) -> tuple[int, ...]:
  """The shape of the official `fft` parameters (PyTorch's): (C, 1, 1, 8, 5)."""
  return (channels, 1, 1, PATCH, PATCH // 2 + 1)


def filter_patches(x, mask):
  """Each 8x8 patch of (N, H, W, C) (sides multiples of 8) filtered in frequency by
  the learned real `mask` (patch_mask_shape(C)): irfft2(rfft2(patch) * mask), float32."""
  mask = mask.reshape(mask.shape[0], PATCH, PATCH // 2 + 1).transpose(1, 2, 0)  # (8, 5, C)
  mask = mask[:, None, :, :]
  if in_plain_forms():
    real, imag = patch_dft(x)
    return patch_idft(real * mask, imag * mask)
  return patch_irfft2(patch_rfft2(x) * mask)


def multiply_patch_spectra(a, b):
  """irfft2(rfft2(a) * rfft2(b)) of each 8x8 patch (FSAS's product of q's and k's
  spectra, no conjugate), float32 (N, H, W, C)."""
  if in_plain_forms():
    (a_real, a_imag), (b_real, b_imag) = patch_dft(a), patch_dft(b)
    return patch_idft(a_real * b_real - a_imag * b_imag, a_real * b_imag + a_imag * b_real)
  return patch_irfft2(patch_rfft2(a) * patch_rfft2(b))


class UnusedConv1x1(nn.Module):
  """Holds the parameters of a 1x1 conv that nothing calls (the official
  `reduce_chan_level2`): kernel (1, 1, in, out) and, with `use_bias`, bias."""
  in_features: int
  features: int
  use_bias: bool = False

  @nn.compact
  def __call__(self):
    init = torch_uniform(self.in_features)
    self.param('kernel', init, (1, 1, self.in_features, self.features))
    if self.use_bias:
      self.param('bias', init, (self.features,))


class DFFN(nn.Module):
  """The official DFFN: 1x1 conv C -> 2H (H = int(C * expansion)), each 8x8 patch
  filtered in frequency by a learned real mask `fft`, depthwise 3x3, GELU gate,
  1x1 conv H -> C."""
  features: int
  expansion: float
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    hidden = int(self.features * self.expansion)
    x = Conv1x1(2 * hidden, use_bias=self.use_bias, dtype=self.dtype, name='project_in')(x)
    mask = self.param('fft', nn.initializers.ones, patch_mask_shape(2 * hidden))
    x = filter_patches(x, mask).astype(self.dtype)
    x = DepthwiseConv3x3(use_bias=self.use_bias, dtype=self.dtype, name='dwconv')(x)
    x1, x2 = jnp.split(x, 2, axis=-1)
    x = nn.gelu(x1, approximate=False) * x2
    return Conv1x1(self.features, use_bias=self.use_bias, dtype=self.dtype, name='project_out')(x)


class FSAS(nn.Module):
  """The official FSAS: 1x1 conv C -> 6C, depthwise 3x3, q, k, v (2C each); the
  patchwise product of q's and k's spectra (no conjugate) back in space,
  layer-normalised, times v; 1x1 conv 2C -> C."""
  features: int
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.features
    hidden = Conv1x1(6 * c, use_bias=self.use_bias, dtype=self.dtype, name='to_hidden')(x)
    hidden = DepthwiseConv3x3(use_bias=self.use_bias, dtype=self.dtype, name='to_hidden_dw')(hidden)
    q, k, v = jnp.split(hidden, 3, axis=-1)
    out = multiply_patch_spectra(q, k)
    out = ChannelLayerNorm(dtype=self.dtype, name='norm')(out)
    return Conv1x1(c, use_bias=self.use_bias, dtype=self.dtype, name='project_out')(v * out)


class TransformerBlock(nn.Module):
  """The official TransformerBlock: [x + FSAS(norm1(x)) if att], then x + DFFN(norm2(x))."""
  features: int
  expansion: float = 2.66
  use_bias: bool = False
  att: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.att:
      x = x + FSAS(self.features, self.use_bias, self.dtype, name='attn')(
          ChannelLayerNorm(dtype=self.dtype, name='norm1')(x))
    return x + DFFN(self.features, self.expansion, self.use_bias, self.dtype, name='ffn')(
        ChannelLayerNorm(dtype=self.dtype, name='norm2')(x))


class Fuse(nn.Module):
  """The official Fuse(n): 1x1 conv of cat([decoder, encoder skip]), a
  TransformerBlock(2n) without attention (expansion 2.66, no biases), 1x1 conv,
  and the sum of its two halves."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, dec, enc):
    n = self.features
    x = Conv1x1(2 * n, dtype=self.dtype, name='conv')(jnp.concatenate([dec, enc], axis=-1))
    x = TransformerBlock(2 * n, dtype=self.dtype, name='att_channel')(x)
    x = Conv1x1(2 * n, dtype=self.dtype, name='conv2')(x)
    e, d = jnp.split(x, 2, axis=-1)
    return e + d


class FFTformer(nn.Module):
  """The official fftformer: a three-level UNet of frequency-domain transformer
  blocks with a global residual.

  Attributes:
    dim: channels at full resolution (dim, 2 dim, 4 dim at the three levels).
    num_blocks: blocks per level, top first, for the encoder and the decoder
      alike; a fourth entry, as the official option files give, is unused.
    num_refinement_blocks: attention blocks after the decoder, at full resolution.
    ffn_expansion_factor: DFFN hidden width over its input width (Fuse's own
      blocks use 2.66, as the official code does).
    use_bias: whether the blocks' convs, the patch embedding and the output conv
      have biases (the official `bias`; the released models have none).
    dtype: compute dtype; parameters stay float32 and the FFTs run in float32.

  Call with images (N, H, W, 3), H and W multiples of 32 (pad with
  image_ops.pad_to_multiple, as the official test script pads by reflection).
  Returns [the restored images (N, H, W, 3)], float32, unclamped.
  """
  dim: int = 48
  num_blocks: Sequence[int] = (6, 6, 12, 8)
  num_refinement_blocks: int = 4
  ffn_expansion_factor: float = 3.0
  use_bias: bool = False
  dtype: Any = jnp.float32

  # Two halvings and 8x8 patches at the quarter-resolution level.
  size_multiple: ClassVar[int] = 32
  # The official test pads to size_multiple only; more padding would change the
  # output near the bottom and right borders.
  pad_only_to_multiple: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # no dropout or batch statistics
    check_images('FFTformer', x, self.size_multiple)
    dim, blocks, dtype = self.dim, self.num_blocks, self.dtype
    block = functools.partial(TransformerBlock, expansion=self.ffn_expansion_factor,
                              use_bias=self.use_bias, dtype=dtype)

    def level(z, name, features, num, att):
      for j in range(num):
        z = block(features, att=att, name=f'{name}_{j}')(z)
      return z

    down = functools.partial(downsample_conv, dtype=dtype)
    up = functools.partial(upsample_conv, dtype=dtype)

    inp = x.astype(jnp.float32)
    z = TorchConv(dim, 3, use_bias=self.use_bias, dtype=dtype, name='patch_embed')(inp)
    enc1 = level(z, 'encoder_level1', dim, blocks[0], False)
    enc2 = level(down(enc1, 'down1_2'), 'encoder_level2', 2 * dim, blocks[1], False)
    enc3 = level(down(enc2, 'down2_3'), 'encoder_level3', 4 * dim, blocks[2], False)
    z = level(enc3, 'decoder_level3', 4 * dim, blocks[2], True)
    UnusedConv1x1(4 * dim, 2 * dim, self.use_bias, name='reduce_chan_level2')()
    z = Fuse(2 * dim, dtype, name='fuse2')(up(z, 'up3_2'), enc2)
    z = level(z, 'decoder_level2', 2 * dim, blocks[1], True)
    z = Fuse(dim, dtype, name='fuse1')(up(z, 'up2_1'), enc1)
    z = level(z, 'decoder_level1', dim, blocks[0], True)
    z = level(z, 'refinement', dim, self.num_refinement_blocks, True)
    out = TorchConv(3, 3, use_bias=self.use_bias, dtype=dtype, name='output')(z)
    return [out.astype(jnp.float32) + inp]
