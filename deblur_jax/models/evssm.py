"""EVSSM (Kong et al., "Efficient Visual State Space Model for Image Deblurring",
CVPR 2025) as Flax linen modules, NHWC, with Mamba's selective scan in JAX.

Follows the official PyTorch code (github.com/kkkls/EVSSM: models/EVSSM.py, the
test-time model, and basicsr/models/archs/EVSSM_arch.py, the training one, which
has the same parameters), with its module names so that the released checkpoint
maps onto it by renaming (deblur_jax/weights/evssm_pytorch.py):

  PyTorch                                        Flax
  patch_embed.proj                               patch_embed
  {encoder,decoder}_level{i}.block{j}.{...}      {encoder,decoder}_level{i}_{j}/{...}
  *.norm{1,2}.body.{weight,bias}                 */norm{1,2}/{scale,bias}
  *.attn.{in_proj,out_proj}.weight (out, in)     */attn/{in_proj,out_proj}/kernel (in, out)
  *.attn.conv2d, *.ffn.{project_in,dwconv,project_out}   the same names, conv kernels
  *.attn.x_conv.weight (C, 1, 7)                 */attn/x_conv/kernel (7, 1, C)
  *.attn.{x_proj_weight,dt_projs_weight,dt_projs_bias,A_logs,Ds}, *.ffn.fft   as they are
  down1_2.body.1, up3_2.body.1, ..., output      down1_2, up3_2, ..., output

The official selective scan is Mamba's CUDA kernel (`selective_scan_fn`), which
runs on NVIDIA GPUs only; here it is `selective_scan`, a chunked scan in JAX that
runs on any backend, checked against the sequential definition (mamba's
`selective_scan_ref`), `selective_scan_sequential`.

Test-time windows: at evaluation the official test model runs each block's scan
in overlapping windows (384, 192 and 96 pixels at the three levels) and averages
the overlaps; training runs it over whole crops. `windows` (on by default) does
the same when `train` is False, as NAFNet's TLC does.
"""

import functools
import math
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deblur_jax.models import image_ops
from deblur_jax.models.fftformer import PATCH, filter_patches, patch_mask_shape
from deblur_jax.models.layers import (
  ChannelLayerNorm,
  Conv1x1,
  DepthwiseConv3x3,
  TorchConv,
  check_images,
  downsample_conv,
  per_platform,
  pixelwise_matmul,
  torch_uniform,
  upsample_conv,
)

# The official GoPro model (options/train/GoPro.yml; EVSSM()'s defaults): 17,129,472
# parameters.
PRESETS = {
    'evssm': {'dim': 48, 'num_blocks': (6, 6, 12), 'ffn_expansion_factor': 3.0,
              'use_bias': False},
}
WINDOWS = (384, 192, 96)  # The official test model's window per level, top first.
D_STATE = 8  # SS2D's state size N.
SCAN_CHUNK = 256  # Steps per rematerialised chunk of `selective_scan`.


# The selective scan. Shapes: u, delta (B, L, D); A (D, N); Bs, Cs (B, L, N); D (D,).
# h_t = exp(delta_t A) h_{t-1} + delta_t Bs_t u_t (h_0 = 0), y_t = sum_n h_t Cs_t + D u_t.

def _scan_step(A, h, inputs):
  u, delta, b, c = inputs  # (B, D), (B, D), (B, N), (B, N)
  h = jnp.exp(delta[..., None] * A) * h + (delta * u)[..., None] * b[:, None, :]
  return h, jnp.einsum('bdn,bn->bd', h, c)


def _time_major(x):
  return jnp.moveaxis(x, 1, 0)


def _sequential_chunk(A, h, u, delta, Bs, Cs):
  """(last state, y without the skip) of one chunk, one step at a time."""
  h, y = jax.lax.scan(functools.partial(_scan_step, A), h,
                      tuple(map(_time_major, (u, delta, Bs, Cs))))
  return h, _time_major(y)


def _combine(earlier, later):
  """Two consecutive spans' (decay, input) composed: h -> a2 (a1 h + b1) + b2."""
  return earlier[0] * later[0], later[0] * earlier[1] + later[1]


def _associative_chunk(A, h, u, delta, Bs, Cs):
  """As _sequential_chunk, in log-depth parallel form (lax.associative_scan over the
  chunk's (B, T, D, N) decays and inputs): the form for GPUs and TPUs, where one
  step at a time leaves the device idle."""
  decay = jnp.exp(delta[..., None] * A)
  inputs = (delta * u)[..., None] * Bs[:, :, None, :]
  decay, inputs = jax.lax.associative_scan(_combine, (decay, inputs), axis=1)
  states = decay * h[:, None] + inputs
  return states[:, -1], jnp.einsum('btdn,btn->btd', states, Cs)


def selective_scan_sequential(u, delta, A, Bs, Cs, D):
  """The selective scan as defined (mamba's selective_scan_ref): one lax.scan step
  per position, float32. Its gradient keeps every step's (B, D, N) state."""
  u, delta, A, Bs, Cs, D = (x.astype(jnp.float32) for x in (u, delta, A, Bs, Cs, D))
  h = jnp.zeros((u.shape[0], u.shape[2], A.shape[1]), jnp.float32)
  _, y = _sequential_chunk(A, h, u, delta, Bs, Cs)
  return y + u * D


def selective_scan(u, delta, A, Bs, Cs, D, chunk: int = SCAN_CHUNK, chunk_fn=None):
  """The selective scan in chunks of `chunk` positions: a lax.scan over chunks
  carrying the (B, D, N) state, each chunk rematerialised in the gradient, so that
  memory holds one state per chunk instead of one per position. Within a chunk:
  `chunk_fn` (default: one step at a time on CPUs, the log-depth associative form
  elsewhere, chosen when lowered). The same numbers as selective_scan_sequential up
  to float rounding. float32."""
  u, delta, A, Bs, Cs, D = (x.astype(jnp.float32) for x in (u, delta, A, Bs, Cs, D))
  if chunk_fn is None:
    return per_platform(
        u, delta, A, Bs, Cs, D,
        cpu=functools.partial(selective_scan, chunk=chunk, chunk_fn=_sequential_chunk),
        default=functools.partial(selective_scan, chunk=chunk, chunk_fn=_associative_chunk))
  batch, length, channels = u.shape
  chunk = min(chunk, length)
  pad = -length % chunk  # Zero steps: delta 0 keeps the state, their outputs are dropped.
  count = (length + pad) // chunk

  def chunks(x):
    x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
    return _time_major(x.reshape(batch, count, chunk, x.shape[-1]))

  body = functools.partial(chunk_fn, A)

  @jax.checkpoint
  def step(h, inputs):
    return body(h, *inputs)

  h = jnp.zeros((batch, channels, A.shape[1]), jnp.float32)
  _, y = jax.lax.scan(step, h, tuple(map(chunks, (u, delta, Bs, Cs))))
  y = _time_major(y).reshape(batch, length + pad, channels)[:, :length]
  return y + u * D


# Test-time windows (models/EVSSM.py's EVS.grids and grids_inverse).

def window_starts(size: int, window: int) -> list[int]:
  """Where the official test model's windows of `window` start along a side of
  `size`: n = (size - 1) // k + 1 windows of k = min(size, window), every step
  ceil((size - k) / (n - 1) - 1e-8), the last one moved back to end at the border."""
  k = min(size, window)
  n = (size - 1) // k + 1
  step = k if n == 1 else math.ceil((size - k) / (n - 1) - 1e-8)
  starts, i = [], 0
  while i < size:
    if i + k >= size:
      starts.append(size - k)
      break
    starts.append(i)
    i += step
  return starts


def window_partition(x, window: int):
  """(windows stacked on the batch axis, window-major, their (top, left) corners)."""
  _, h, w, _ = x.shape
  corners = [(i, j) for i in window_starts(h, window) for j in window_starts(w, window)]
  kh, kw = min(h, window), min(w, window)
  return jnp.concatenate([x[:, i:i + kh, j:j + kw] for i, j in corners], axis=0), corners


def window_merge(parts, corners, height: int, width: int):
  """The windows of window_partition placed back, overlaps averaged."""
  batch = parts.shape[0] // len(corners)
  kh, kw = parts.shape[1:3]
  out = jnp.zeros((batch, height, width, parts.shape[-1]), parts.dtype)
  count = np.zeros((height, width, 1), np.float32)
  for index, (i, j) in enumerate(corners):
    out = out.at[:, i:i + kh, j:j + kw].add(parts[index * batch:(index + 1) * batch])
    count[i:i + kh, j:j + kw] += 1
  return out / jnp.asarray(count, parts.dtype)


# Layers.

class Linear(nn.Module):
  """PyTorch's nn.Linear without bias over the last axis: kernel (in, out)."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', torch_uniform(x.shape[-1]), (x.shape[-1], self.features))
    return pixelwise_matmul(x.astype(self.dtype), kernel.astype(self.dtype))


class RMSNorm(nn.Module):
  """The official `WithBias_LayerNorm` of EVSSM, which does not subtract the mean:
  x / sqrt(mean(x^2) + 1e-6) * scale + bias over channels, in float32."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    x = x.astype(jnp.float32)
    scale = self.param('scale', nn.initializers.ones, (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    rms = jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)
    return (x * rms * scale + bias).astype(self.dtype)


def depthwise_conv1d(x, kernel, bias):
  """PyTorch's depthwise Conv1d(C, C, k, padding=k // 2, groups=C) along axis 1 of
  (B, L, C): kernel (k, 1, C), bias (C,)."""
  k, length = kernel.shape[0], x.shape[1]
  padded = jnp.pad(x, ((0, 0), (k // 2, k // 2), (0, 0)))
  return sum(padded[:, t:t + length] * kernel[t, 0] for t in range(k)) + bias


class SequenceConv(nn.Module):
  """The official `x_conv`: a depthwise Conv1d (kernel 7, with bias) along the
  flattened sequence. Parameters kernel (7, 1, C) and bias (C,)."""
  kernel_size: int = 7

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    init = torch_uniform(self.kernel_size)
    kernel = self.param('kernel', init, (self.kernel_size, 1, channels))
    return depthwise_conv1d(x, kernel.astype(x.dtype), self.param('bias', init, (channels,)))


def _inverse_softplus_init(key, shape, dtype=jnp.float32):
  """The official dt bias init: softplus(bias) log-uniform in [0.001, 0.1], >= 1e-4."""
  dt = jnp.exp(jax.random.uniform(key, shape) * (math.log(0.1) - math.log(0.001))
               + math.log(0.001))
  dt = jnp.maximum(dt, 1e-4)
  return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)


def _a_log_init(key, shape, dtype=jnp.float32):
  del key
  return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[-1] + 1, dtype=dtype)), shape)


class SS2D(nn.Module):
  """The official SS2D: in_proj C -> 2D (D = 2C) split into x and z; x through a
  3x3 depthwise conv (with bias) and GELU, flattened in raster order, projected to
  (dt, B, C) (dt_rank + 2 N channels), those convolved along the sequence (x_conv),
  dt projected to D channels; the selective scan with delta = softplus(dt + bias),
  A = -exp(A_logs), skip Ds; LayerNorm(D), times GELU(z), out_proj D -> C. One
  scan direction."""
  features: int
  d_state: int = D_STATE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, height, width, channels = x.shape
    inner, state = 2 * channels, self.d_state
    rank = math.ceil(channels / 16)
    x, z = jnp.split(Linear(2 * inner, self.dtype, name='in_proj')(x), 2, axis=-1)
    x = DepthwiseConv3x3(use_bias=True, dtype=self.dtype, name='conv2d')(x)
    # The scan's inputs in float32 whatever the dtype: its state sums them over the
    # whole sequence (the small projections to dt, B and C cost little).
    x = nn.gelu(x, approximate=False).reshape(batch, height * width, inner).astype(jnp.float32)
    x_proj = self.param('x_proj_weight', torch_uniform(inner), (1, rank + 2 * state, inner))
    projected = SequenceConv(name='x_conv')(pixelwise_matmul(x, x_proj[0].T))
    dt, b, c = jnp.split(projected, [rank, rank + state], axis=-1)
    dt_proj = self.param('dt_projs_weight', torch_uniform(rank), (1, inner, rank))
    dt_bias = self.param('dt_projs_bias', _inverse_softplus_init, (1, inner))
    a_logs = self.param('A_logs', _a_log_init, (inner, state))
    skip = self.param('Ds', nn.initializers.ones, (inner,))
    delta = jax.nn.softplus(pixelwise_matmul(dt, dt_proj[0].T) + dt_bias[0])
    y = selective_scan(x, delta, -jnp.exp(a_logs), b, c, skip)
    y = ChannelLayerNorm(dtype=self.dtype, name='out_norm')(y.reshape(batch, height, width, inner))
    y = y * nn.gelu(z, approximate=False)
    return Linear(channels, self.dtype, name='out_proj')(y)


class EDFFN(nn.Module):
  """The official EDFFN: 1x1 conv C -> 2H (H = int(C * expansion)), depthwise 3x3,
  GELU gate, 1x1 conv H -> C, then each 8x8 patch filtered in frequency by a
  learned real mask `fft` (the map reflect-padded at the bottom and right to a
  multiple of 8 and cropped back, as the test model does)."""
  features: int
  expansion: float
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    hidden = int(self.features * self.expansion)
    x = Conv1x1(2 * hidden, use_bias=self.use_bias, dtype=self.dtype, name='project_in')(x)
    x = DepthwiseConv3x3(use_bias=self.use_bias, dtype=self.dtype, name='dwconv')(x)
    x1, x2 = jnp.split(x, 2, axis=-1)
    x = Conv1x1(self.features, use_bias=self.use_bias, dtype=self.dtype, name='project_out')(
        nn.gelu(x1, approximate=False) * x2)
    mask = self.param('fft', nn.initializers.ones, patch_mask_shape(self.features))
    x, size = image_ops.pad_to_multiple(x, PATCH)
    x = filter_patches(x, mask)
    return image_ops.crop_to(x, size).astype(self.dtype)


class EVSBlock(nn.Module):
  """The official EVS block: the map transposed (even `index`) or flipped on both
  axes (odd), never undone; x + SS2D(norm1(x)), in overlapping windows of `window`
  pixels when `windowed`; x + EDFFN(norm2(x))."""
  features: int
  index: int
  window: int
  expansion: float = 3.0
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, windowed: bool):
    x = x[:, ::-1, ::-1] if self.index % 2 else jnp.swapaxes(x, 1, 2)
    y = RMSNorm(self.dtype, name='norm1')(x)
    attn = SS2D(self.features, dtype=self.dtype, name='attn')
    if windowed:
      parts, corners = window_partition(y, self.window)
      y = window_merge(attn(parts), corners, *x.shape[1:3])
    else:
      y = attn(y)
    x = x + y
    return x + EDFFN(self.features, self.expansion, self.use_bias, self.dtype, name='ffn')(
        RMSNorm(self.dtype, name='norm2')(x))


class EVSSM(nn.Module):
  """The official EVSSM: a three-level UNet of EVS blocks (state-space scan and
  frequency-filtered FFN), skips added, a global residual.

  Attributes:
    dim: channels at full resolution (dim, 2 dim, 4 dim at the three levels).
    num_blocks: EVS blocks per level, top first, for the encoder and the decoder alike.
    ffn_expansion_factor: EDFFN hidden width over its input width.
    use_bias: biases in the EDFFN convs and the output conv (the official `bias`;
      the released model has none). The patch embedding never has one.
    windows: the test model's overlapping scan windows when not training.
    window_sizes: their sides per level, top first (the official 384, 192, 96;
      smaller ones bound memory further but change the output).
    remat: recompute each block's activations in the backward pass instead of
      keeping them (training memory for compute; the same numbers).
    dtype: compute dtype; parameters stay float32, norms, FFTs and scans run in float32.

  Call with images (N, H, W, 3), H and W multiples of 4 (pad with
  image_ops.pad_to_multiple; the official test script takes such sizes only).
  Returns [the restored images (N, H, W, 3)], float32, unclamped.
  """
  dim: int = 48
  num_blocks: Sequence[int] = (6, 6, 12)
  ffn_expansion_factor: float = 3.0
  use_bias: bool = False
  windows: bool = True
  window_sizes: Sequence[int] = WINDOWS
  remat: bool = False
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 4  # Two halvings; EDFFN pads its own patches.
  # The scan relates pixels across its whole window: more padding would change the output.
  pad_only_to_multiple: ClassVar[bool] = True
  # The windows' number and places follow the image size: exported for one size.
  sized_by_image: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_images('EVSSM', x, self.size_multiple)
    dim, dtype = self.dim, self.dtype
    windowed = self.windows and not train
    block = nn.remat(EVSBlock, static_argnums=(2,)) if self.remat else EVSBlock

    def level(z, name, depth):
      for j in range(self.num_blocks[depth]):
        z = block(dim << depth, j, self.window_sizes[depth], self.ffn_expansion_factor,
                  self.use_bias, dtype, name=f'{name}_{j}')(z, windowed)
      return z

    down = functools.partial(downsample_conv, dtype=dtype)
    up = functools.partial(upsample_conv, dtype=dtype)

    inp = x.astype(jnp.float32)
    z = TorchConv(dim, 3, use_bias=False, dtype=dtype, name='patch_embed')(inp)
    enc1 = level(z, 'encoder_level1', 0)
    enc2 = level(down(enc1, 'down1_2'), 'encoder_level2', 1)
    z = level(level(down(enc2, 'down2_3'), 'encoder_level3', 2), 'decoder_level3', 2)
    z = level(up(z, 'up3_2') + enc2, 'decoder_level2', 1)
    z = level(up(z, 'up2_1') + enc1, 'decoder_level1', 0)
    out = TorchConv(3, 3, use_bias=self.use_bias, dtype=dtype, name='output')(z)
    return [out.astype(jnp.float32) + inp]
