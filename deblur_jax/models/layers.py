"""Layers and checks shared by the model zoo (NHWC, float32 parameters).

- `check_images`: the input check every model runs first.
- `glorot_uniform`: Keras' default kernel initialiser, used by the Keras-born models.
- `ConvTranspose2x`: a stride-2 transposed conv of any kernel size computed as one
  stride-1 conv and a pixel shuffle (MIMO-UNet's 4x4 one with PyTorch's init, the
  UNets' and the GAN's 2x2 and 3x3 ones with Keras').
- `reflect_pad`: reflection padding of height and width (a gather for symbolic sizes);
  `max_pool_2x`: 2x2 max pooling.
- `torch_uniform`: PyTorch's default conv init, for the models ported from PyTorch.
- `TorchConv`: PyTorch's padded conv and init (`Conv1x1`: k = 1), 1x1 convs
  computed as a matmul (faster on XLA's CPU backend); `downsample_conv` and
  `upsample_conv`, a bilinear resize and a 3x3 TorchConv (FFTformer, EVSSM).
- `ConcatConv1x1`: TorchConv's 1x1 conv of a channel concatenation of
  nearest-upsampled maps, computed part by part without building it.
- `DepthwiseConv3x3`: a depthwise 3x3 conv, on CPUs computed as nine shifted
  multiply-adds (its gradient 3-4x faster on XLA's CPU backend than the grouped
  convolution's), elsewhere as the grouped convolution.
- `ChannelLayerNorm`: the transformers' per-pixel LayerNorm over channels
  (Restormer's 'WithBias' and 'BiasFree', FFTformer's).
- `bias_add`: y + bias whose bias gradient is, on CPUs, a matmul (XLA's CPU
  backend runs the same sum several times slower as a reduction loop); TorchConv,
  ConvTranspose2x and DepthwiseConv3x3 use it.
The CPU-tuned forms are picked per backend when a program is lowered
(`per_platform`, through `jax.lax.platform_dependent`): GPUs and TPUs get plain
JAX ops, and so does every platform inside `plain_forms()` (a converter to
another runtime, ONNX, reads the traced program and never lowers it).
"""

import contextlib
import contextvars
import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deblur_jax.models import image_ops

glorot_uniform = nn.initializers.glorot_uniform()

_PLAIN_FORMS = contextvars.ContextVar('deblur_jax_plain_forms', default=False)


@contextlib.contextmanager
def plain_forms():
  """Within it, functions traced take the plain JAX form of every platform-tuned
  layer (the one GPUs and TPUs get) instead of a choice made when lowered, and
  layers that other runtimes lack take a form written with common operations (the
  8x8-patch FFTs as matrix products, NAFNet's block stacks unrolled, 2x2 max
  pooling as a reshape): for
  converters that read the traced program (ONNX). JAX's trace caches are cleared
  on entry and exit, so no program traced outside it is reused inside, nor the
  other way round."""
  jax.clear_caches()
  token = _PLAIN_FORMS.set(True)
  try:
    yield
  finally:
    _PLAIN_FORMS.reset(token)
    jax.clear_caches()


def in_plain_forms() -> bool:
  """Whether functions are being traced inside `plain_forms()`."""
  return _PLAIN_FORMS.get()


def per_platform(*args, cpu: Callable, default: Callable):
  """cpu(*args) on CPUs, default(*args) elsewhere, chosen when the program is
  lowered (jax.lax.platform_dependent); default(*args) inside `plain_forms()`."""
  if in_plain_forms():
    return default(*args)
  return jax.lax.platform_dependent(*args, cpu=cpu, default=default)


def max_pool_2x(x):
  """Max over 2x2 windows at stride 2 of (N, H, W, C) with even H and W
  (nn.max_pool); inside `plain_forms()` a reshape and a max, whose sizes JAX
  computes (a converter's own pooling rule can mis-size symbolic ones)."""
  if in_plain_forms():
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
  return nn.max_pool(x, window_shape=(2, 2), strides=(2, 2))


def reflect_pad(x, pad: int):
  """`x` (N, H, W, C) padded by `pad` pixels on each side of H and W, by reflection.
  For a symbolic size (jax.export) a gather of reflected rows and columns, which
  needs no constraint on the size (sides longer than `pad`) and which converters to
  other runtimes (ONNX) write for any size."""
  if not any(jax.export.is_symbolic_dim(n) for n in x.shape[1:3]):
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')
  for axis in (1, 2):
    n = x.shape[axis]
    rows = image_ops.reflected_rows(jax.lax.iota(jnp.int32, n + 2 * pad) - pad, n)
    x = jnp.take(x, rows, axis=axis, mode='clip')
  return x


def image_output(images, y, sigmoid: bool = True, global_residual: bool = False) -> list:
  """A model's one-element output list from its last conv's `y` (float32).

  `global_residual`: DeblurGAN's head, clamp(input + tanh(y)) in [0, 1] units,
  so the model starts near its input and learns a correction (the GAN
  generator's, and a knob of the seed models whose reports end in a sigmoid);
  otherwise sigmoid(y), or y itself with `sigmoid` False.
  """
  y = y.astype(jnp.float32)
  if global_residual:
    return [jnp.clip(images + 0.5 * jnp.tanh(y), 0.0, 1.0)]
  return [nn.sigmoid(y) if sigmoid else y]


def check_images(model_name: str, x, size_multiple: int, channels: int = 3) -> None:
  """Raises ValueError unless `x` is NHWC with `channels` channels (RGB) and sides
  divisible by `size_multiple`."""
  if x.ndim != 4 or x.shape[-1] != channels:
    what = 'RGB images' if channels == 3 else f'images of {channels} channels'
    raise ValueError(f'{model_name} expects NHWC {what}, got shape {x.shape}.')
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


def pixelwise_matmul(x, kernel, preferred_element_type=None):
  """x (..., C_in) times kernel (C_in, C_out) at every pixel: a 1x1 convolution.

  Run as one 2-D matmul over the flattened pixels: XLA's CPU backend runs 1x1
  convolutions several times slower than a matmul, and a 4-D einsum's gradients
  about 1.4x slower than the 2-D matmul's; GPU and TPU compilers see the same
  dot either way.
  """
  rows = x.reshape(-1, x.shape[-1])
  y = jnp.matmul(rows, kernel, preferred_element_type=preferred_element_type)
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


class ConvTranspose2x(nn.Module):
  """A stride-2 transposed conv: (N, H, W, C) -> (N, 2H, 2W, features).

  Input pixel i adds x[i] * kernel[t] to output 2i + t - (k - 1) // 2 on each
  axis: PyTorch's ConvTranspose2d(k, stride=2, padding=(k - 1) // 2,
  output_padding=k % 2), and Keras' Conv2DTranspose(k, strides=2, 'same') for
  k = 2 and 4 (for k = 3 Keras writes input i to 2i..2i+2, one pixel later).
  The kernel is stored (k, k, in, out) like `nn.ConvTranspose`'s; a PyTorch
  weight (in, out, kh, kw) needs only a transpose, no flip (MIMO-UNet's k = 4).
  It is evaluated as one stride-1 conv producing the four output phases, then
  a pixel shuffle: the same numbers, but XLA computes transposed convs (and
  their gradients) far more slowly.
  """
  features: int
  kernel_size: int = 2
  use_bias: bool = True
  kernel_init: Callable = glorot_uniform
  bias_init: Callable = nn.initializers.zeros
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
      y = pixelwise_matmul(x, phases[0, 0])
    else:
      pad = (-d_min, window - 1 + d_min)
      y = jax.lax.conv_general_dilated(x, phases, (1, 1), (pad, pad),
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    n, h, w, _ = y.shape
    y = y.reshape(n, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, 2 * h, 2 * w, self.features)
    if self.use_bias:
      y = bias_add(y, self.param('bias', self.bias_init, (self.features,)).astype(self.dtype))
    return y


def torch_uniform(fan_in: int):
  """PyTorch's default Conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = fan_in ** -0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class TorchConv(nn.Module):
  """PyTorch's Conv2d(k, stride, padding) with its default init, NHWC; padding
  k // 2 unless given. Parameters shaped like `nn.Conv`'s ('kernel' (k, k, in,
  out), 'bias').

  1x1 stride-1 convs run as a matmul over channels (`pixelwise_matmul`), and the
  bias goes through `bias_add`.
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: Optional[int] = None
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    pad = k // 2 if self.padding is None else self.padding
    init = torch_uniform(x.shape[-1] * k * k)
    kernel = self.param('kernel', init, (k, k, x.shape[-1], self.features)).astype(self.dtype)
    x = x.astype(self.dtype)
    if (k, self.stride, pad) == (1, 1, 0):
      y = pixelwise_matmul(x, kernel[0, 0])
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (self.stride, self.stride),
                                       ((pad, pad),) * 2,
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = bias_add(y, self.param('bias', init, (self.features,)).astype(self.dtype))
    return y


Conv1x1 = functools.partial(TorchConv, kernel_size=1)


def downsample_conv(x, name: str, dtype: Any = jnp.float32):
  """FFTformer's and EVSSM's Downsample: bilinear 0.5x (`image_ops`), then a bias-free
  3x3 `TorchConv` named `name` doubling the channels. Call inside a compact module."""
  x = image_ops.bilinear_downsample_2x(x)
  return TorchConv(2 * x.shape[-1], 3, use_bias=False, dtype=dtype, name=name)(x)


def upsample_conv(x, name: str, dtype: Any = jnp.float32):
  """Their Upsample: bilinear 2x, then a bias-free 3x3 `TorchConv` named `name`
  halving the channels. Call inside a compact module."""
  x = image_ops.bilinear_upsample_2x(x)
  return TorchConv(x.shape[-1] // 2, 3, use_bias=False, dtype=dtype, name=name)(x)


class ConcatConv1x1(nn.Module):
  """`Conv1x1` of the channel concatenation of `parts`, each (x, factor): x
  (N, H / factor, W / factor, C_i) nearest-upsampled by `factor` to (N, H, W, C_i).
  Parameters as `Conv1x1`'s on the concatenation (kernel (1, 1, sum C_i, out)).

  Computed without the concatenation or the upsampled copies: each part meets
  its rows of the kernel at its own resolution (a 1x1 conv commutes with nearest
  upsampling), and the products are upsampled and summed. The same numbers up
  to float rounding, fewer FLOPs, and no full-resolution maps of all the parts'
  channels (MIMO-UNet's AFF, SCM and decoder convs).
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, parts):
    widths = [x.shape[-1] for x, _ in parts]
    init = torch_uniform(sum(widths))
    kernel = self.param('kernel', init, (1, 1, sum(widths), self.features))
    starts = np.cumsum([0] + widths)
    y = None
    for (x, factor), start, stop in zip(parts, starts[:-1], starts[1:]):
      # float32 partial sums, so a bfloat16 compute dtype rounds once, as one matmul would.
      product = pixelwise_matmul(x.astype(self.dtype), kernel[0, 0, start:stop].astype(self.dtype),
                                 preferred_element_type=jnp.float32)
      product = image_ops.nearest_upsample(product, factor)  # factor 1: folded away by XLA
      y = product if y is None else y + product
    y = y.astype(self.dtype)
    if self.use_bias:
      y = bias_add(y, self.param('bias', init, (self.features,)).astype(self.dtype))
    return y


def _sum_over_pixels(x):
  """(..., C) summed over every axis but the last, as a matrix-vector product:
  XLA's CPU backend runs that reduction several times slower as a loop, above
  all inside a scan's gradient."""
  rows = x.reshape(-1, x.shape[-1])
  return jnp.ones((rows.shape[0],), x.dtype) @ rows


@jax.custom_vjp
def bias_add_matmul_grad(y, bias):
  """y + bias, its bias gradient a matrix-vector product (`bias_add`'s CPU form)."""
  return y + bias


def _bias_add_fwd(y, bias):
  return y + bias, None


def _bias_add_bwd(_, grad):
  return grad, _sum_over_pixels(grad)


bias_add_matmul_grad.defvjp(_bias_add_fwd, _bias_add_bwd)


def bias_add(y, bias):
  """y + bias (broadcast over the last axis). On CPUs its bias gradient is a
  matmul (`_sum_over_pixels`); elsewhere JAX's own reduction, which GPUs and TPUs
  fuse with the producer of the gradient. Chosen when the program is lowered."""
  return per_platform(y, bias, cpu=bias_add_matmul_grad, default=jnp.add)


def _shifted_taps(padded, height: int, width: int):
  """The nine (i, j) windows of a 1-pixel zero-padded map, row-major."""
  return [padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)]


def _depthwise3x3(x, kernel):
  height, width = x.shape[1:3]
  taps = _shifted_taps(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), height, width)
  products = [tap * kernel[t // 3, t % 3, 0] for t, tap in enumerate(taps)]
  return sum(products[1:], products[0])


@jax.custom_vjp
def depthwise_conv3x3_shifted_taps(x, kernel):
  """`depthwise_conv3x3`'s CPU form: nine shifted multiply-adds, the kernel
  gradient as matrix-vector products."""
  return _depthwise3x3(x, kernel)


def _depthwise_fwd(x, kernel):
  return _depthwise3x3(x, kernel), (x, kernel)


def _depthwise_bwd(residuals, grad):
  x, kernel = residuals
  grad_x = _depthwise3x3(grad, kernel[::-1, ::-1])  # the transpose: the flipped taps
  height, width = x.shape[1:3]
  taps = _shifted_taps(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), height, width)
  grad_kernel = jnp.stack([_sum_over_pixels(tap * grad) for tap in taps])
  return grad_x, grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


depthwise_conv3x3_shifted_taps.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv3x3_grouped(x, kernel):
  """`depthwise_conv3x3`'s form for GPUs and TPUs: the grouped convolution."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      feature_group_count=x.shape[-1])


def depthwise_conv3x3(x, kernel):
  """The depthwise 'same' 3x3 conv of (N, H, W, C) by kernel (3, 3, 1, C).

  On CPUs as nine shifted multiply-adds with the kernel gradient as
  matrix-vector products (3-4x faster gradients on XLA's CPU backend than the
  grouped convolution's); elsewhere the grouped convolution, which GPU and TPU
  compilers have kernels for. Chosen when the program is lowered; the same
  numbers up to float rounding.
  """
  return per_platform(x, kernel, cpu=depthwise_conv3x3_shifted_taps,
                      default=depthwise_conv3x3_grouped)


class DepthwiseConv3x3(nn.Module):
  """A depthwise ('same'-padded, stride 1) 3x3 conv with PyTorch's init,
  parameters shaped like `nn.Conv(C, (3, 3), feature_group_count=C)`'s: kernel
  (3, 3, 1, C), bias (C,) unless `use_bias` is False. Computed as the sum of nine
  shifted copies of the zero-padded input, each times its tap
  (`depthwise_conv3x3`): the same numbers as the grouped convolution up to float
  rounding, which XLA fuses into a few loops instead of a grouped convolution,
  whose gradient is slow on its CPU backend."""
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    init = torch_uniform(9)
    kernel = self.param('kernel', init, (3, 3, 1, channels)).astype(self.dtype)
    y = depthwise_conv3x3(x.astype(self.dtype), kernel)
    if not self.use_bias:
      return y
    return bias_add(y, self.param('bias', init, (channels,)).astype(self.dtype))


class ChannelLayerNorm(nn.Module):
  """The official Restormer / FFTformer LayerNorm of (..., C): each pixel normalised
  over its channels (biased variance, eps 1e-5), computed in float32. 'WithBias':
  (x - mean) / std * scale + bias; 'BiasFree': x / std * scale (the mean is not
  subtracted). Parameters 'scale' (and 'bias'), (C,)."""
  layernorm_type: str = 'WithBias'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    x = x.astype(jnp.float32)
    var = jnp.var(x, axis=-1, keepdims=True)
    scale = self.param('scale', nn.initializers.ones, (channels,))
    if self.layernorm_type == 'BiasFree':
      return (x * jax.lax.rsqrt(var + 1e-5) * scale).astype(self.dtype)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    return ((x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias).astype(self.dtype)
