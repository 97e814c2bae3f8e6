"""MIMO-UNet and MIMO-UNet+ (Cho et al., ICCV 2021) as Flax linen modules, NHWC.

The module tree mirrors the official PyTorch code one to one so that official
checkpoints map onto it by renaming alone:

  PyTorch                                   Flax
  Encoder.{i}.layers.{r}.main.{j}.main.0    encoder_{i}/res_{r}/conv_{j}/conv
  Decoder.{i}.layers.{r}.main.{j}.main.0    decoder_{i}/res_{r}/conv_{j}/conv
  feat_extract.{i}.main.0                   feat_extract_{i}/conv
  Convs.{i}.main.0, ConvsOut.{i}.main.0     convs_{i}/conv, convs_out_{i}/conv
  FAM{k}.merge.main.0                       fam_{k}/merge/conv
  SCM{k}.main.{j}.main.0, SCM{k}.conv.main.0  scm_{k}/main_{j}/conv, scm_{k}/out/conv
  AFFs.{i}.conv.{j}.main.0                  aff_{i}/conv_{j}/conv

Initialisation follows PyTorch's defaults (uniform in +-1/sqrt(fan_in) for
kernels and biases), so training from scratch starts where the paper's did.
"""

import functools
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deblur_jax.models import image_ops
from deblur_jax.models.layers import ConcatConv1x1, ConvTranspose2x, TorchConv, torch_uniform


class BasicConv(nn.Module):
  """Conv (or 4x4 stride-2 transposed conv), optional BatchNorm, optional ReLU.

  The official `BasicConv`: padding k // 2 on both sides (PyTorch pads stride-2
  convs symmetrically, unlike 'SAME'), or `ConvTranspose2d(k=4, s=2, p=1)`.
  With `batch_norm` the conv has no bias, as in the official `norm=True`.
  A 1x1 conv also takes, instead of one map, the (map, nearest-upsampling factor)
  parts of the official code's `torch.cat` of (upsampled) maps, and then computes
  it without the concatenation (`ConcatConv1x1`).
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  relu: bool = True
  transpose: bool = False
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    k = self.kernel_size
    if isinstance(x, (tuple, list)):
      if (k, self.stride, self.transpose) != (1, 1, False):
        raise ValueError(f'Only a 1x1 stride-1 conv takes concatenated parts, got {k}x{k} '
                         f'stride {self.stride}{" transposed" if self.transpose else ""}.')
      x = ConcatConv1x1(self.features, use_bias=not self.batch_norm, dtype=self.dtype,
                        name='conv')(x)
    elif self.transpose:
      if (k, self.stride) != (4, 2):
        raise ValueError(f'Only 4x4 stride-2 transposed convs are supported, got {k}x{k} '
                         f'stride {self.stride}.')
      # PyTorch's ConvTranspose2d(4, stride=2, padding=1), whose init takes its
      # fan_in from the output features.
      init = torch_uniform(self.features * 16)
      x = ConvTranspose2x(self.features, kernel_size=4, use_bias=not self.batch_norm,
                          kernel_init=init, bias_init=init, dtype=self.dtype, name='conv')(x)
    else:
      x = TorchConv(self.features, k, self.stride, use_bias=not self.batch_norm,
                    dtype=self.dtype, name='conv')(x)
    if self.batch_norm:
      # PyTorch momentum 0.1 is Flax momentum 0.9.
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                       use_fast_variance=False,
                       dtype=self.dtype, name='norm')(x)
    if self.relu:
      x = nn.relu(x)
    return x


class ResBlock(nn.Module):
  """conv3x3 + ReLU, conv3x3, plus the input (no ReLU after the sum)."""
  features: int
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(BasicConv, self.features, 3, batch_norm=self.batch_norm,
                             dtype=self.dtype)
    y = conv(relu=True, name='conv_0')(x, train)
    y = conv(relu=False, name='conv_1')(y, train)
    return y + x


class ResStack(nn.Module):
  """`num_res` ResBlocks in sequence: the official EBlock and DBlock. With
  `remat`, each block's activations are recomputed in the backward pass
  instead of stored (same parameters and numbers, less memory)."""
  features: int
  num_res: int
  batch_norm: bool = False
  remat: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    # static_argnums counts self as 0: `train` is a Python bool.
    block = nn.remat(ResBlock, static_argnums=(2,)) if self.remat else ResBlock
    for r in range(self.num_res):
      x = block(self.features, self.batch_norm, self.dtype, name=f'res_{r}')(x, train)
    return x


class SCM(nn.Module):
  """Shallow convolutional module: features of a downscaled RGB input.

  Four convs 3 -> P/4 -> P/2 -> P/2 -> P-3 with ReLU, the RGB input
  concatenated back (P channels), then a 1x1 conv without ReLU.
  """
  features: int
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    p = self.features
    conv = functools.partial(BasicConv, batch_norm=self.batch_norm, dtype=self.dtype)
    y = x
    for j, (width, k) in enumerate(((p // 4, 3), (p // 2, 1), (p // 2, 3), (p - 3, 1))):
      y = conv(width, k, name=f'main_{j}')(y, train)
    return conv(p, 1, relu=False, name='out')(((x, 1), (y, 1)), train)


class FAM(nn.Module):
  """Feature attention module: x1 + conv3x3(x1 * x2)."""
  features: int
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x1, x2, train: bool = False):
    merged = BasicConv(self.features, 3, relu=False, batch_norm=self.batch_norm,
                       dtype=self.dtype, name='merge')(x1 * x2, train)
    return x1 + merged


class AFF(nn.Module):
  """Asymmetric feature fusion: concat of three scales, 1x1 conv + ReLU, 3x3 conv.

  Called with the three scales' (map, nearest-upsampling factor) parts.
  """
  features: int
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, parts: Sequence[tuple[jax.Array, int]], train: bool = False):
    conv = functools.partial(BasicConv, self.features, batch_norm=self.batch_norm,
                             dtype=self.dtype)
    x = conv(kernel_size=1, relu=True, name='conv_0')(parts, train)
    return conv(kernel_size=3, relu=False, name='conv_1')(x, train)


class MIMOUNet(nn.Module):
  """Multi-input multi-output UNet.

  Attributes:
    base_width: channels at full resolution (32 in the paper); 2x and 4x that
      at 1/2 and 1/4 resolution.
    num_res: ResBlocks per encoder and decoder level (8 for MIMO-UNet, 20 for
      MIMO-UNet+).
    dropout_rate: channel dropout (Dropout2d) on the two AFF outputs (0.1 for
      MIMO-UNet+, 0 for MIMO-UNet).
    batch_norm: BatchNorm after every conv (a modification some MIMO-UNet users add;
      the official model has none).
    remat: recompute the ResBlocks' activations in the backward pass instead
      of storing them (less training memory, about a third more compute).
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1], H and W multiples of 4. Returns the
  restored images at 1/4, 1/2 and full resolution, in that order, as float32.
  """
  base_width: int = 32
  num_res: int = 8
  dropout_rate: float = 0.0
  batch_norm: bool = False
  remat: bool = False
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 4  # Input height and width must divide by this.

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'MIMOUNet expects NHWC RGB images, got shape {x.shape}.')
    if x.shape[1] % self.size_multiple or x.shape[2] % self.size_multiple:
      raise ValueError(f'MIMOUNet needs height and width divisible by {self.size_multiple}, got '
                       f'{x.shape[1]}x{x.shape[2]}; pad with image_ops.pad_to_multiple.')
    w = self.base_width
    common = dict(batch_norm=self.batch_norm, dtype=self.dtype)
    conv = functools.partial(BasicConv, **common)
    stack = functools.partial(ResStack, num_res=self.num_res, remat=self.remat, **common)
    dropout = functools.partial(nn.Dropout, self.dropout_rate, broadcast_dims=(1, 2),
                                deterministic=not train)

    # The residuals are added to the float32 input, so a bfloat16 compute dtype
    # does not round the image itself.
    x = x.astype(jnp.float32)
    x_2 = image_ops.nearest_downsample_2x(x)
    x_4 = image_ops.nearest_downsample_2x(x_2)
    # The three RGB residual convs never get BatchNorm: it would start training
    # from unit-variance noise instead of near the identity.
    to_rgb = functools.partial(BasicConv, 3, 3, relu=False, dtype=self.dtype)
    z2 = SCM(2 * w, name='scm_2', **common)(x_2, train)
    z4 = SCM(4 * w, name='scm_1', **common)(x_4, train)

    res1 = stack(w, name='encoder_0')(conv(w, 3, name='feat_extract_0')(x, train), train)
    z = conv(2 * w, 3, stride=2, name='feat_extract_1')(res1, train)
    z = FAM(2 * w, name='fam_2', **common)(z, z2, train)
    res2 = stack(2 * w, name='encoder_1')(z, train)
    z = conv(4 * w, 3, stride=2, name='feat_extract_2')(res2, train)
    z = FAM(4 * w, name='fam_1', **common)(z, z4, train)
    z = stack(4 * w, name='encoder_2')(z, train)

    # The official AFF inputs: res1 halved, res2, z doubled; res1, res2 doubled,
    # z quadrupled (nearest), each concatenated before its 1x1 conv.
    z12 = image_ops.nearest_downsample_2x(res1)
    fused_2 = AFF(2 * w, name='aff_1', **common)(((z12, 1), (res2, 1), (z, 2)), train)
    res1 = AFF(w, name='aff_0', **common)(((res1, 1), (res2, 2), (z, 4)), train)
    res2 = dropout(name='dropout_2')(fused_2)
    res1 = dropout(name='dropout_1')(res1)

    z = stack(4 * w, name='decoder_0')(z, train)
    out_4 = to_rgb(name='convs_out_0')(z) + x_4
    z = conv(2 * w, 4, stride=2, transpose=True, name='feat_extract_3')(z, train)
    z = conv(2 * w, 1, name='convs_0')(((z, 1), (res2, 1)), train)
    z = stack(2 * w, name='decoder_1')(z, train)
    out_2 = to_rgb(name='convs_out_1')(z) + x_2
    z = conv(w, 4, stride=2, transpose=True, name='feat_extract_4')(z, train)
    z = conv(w, 1, name='convs_1')(((z, 1), (res1, 1)), train)
    z = stack(w, name='decoder_2')(z, train)
    out_1 = to_rgb(name='feat_extract_5')(z) + x
    return out_4, out_2, out_1
