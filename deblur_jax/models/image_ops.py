"""Resizes and padding with the exact semantics of the official PyTorch MIMO-UNet.

All functions take NHWC arrays. PyTorch's `F.interpolate` differs from
`jax.image.resize` in ways that matter for weight compatibility: nearest
halving keeps the even pixels (jax keeps the odd ones), and bilinear
downsampling does not antialias. Slices, repeats and block means reproduce
PyTorch exactly and compile to cheap XLA ops (jax's linear resize is a dense
matmul).
"""

import functools

import jax
import jax.numpy as jnp


def _check_divisible(x, factor: int, what: str):
  height, width = x.shape[1], x.shape[2]
  if height % factor or width % factor:
    raise ValueError(
        f'{what} needs height and width divisible by {factor}, got {height}x{width}.')


def nearest_downsample_2x(x):
  """`F.interpolate(x, scale_factor=0.5)`: keeps pixels 0, 2, 4, ... on each axis."""
  return x[:, ::2, ::2, :]


def nearest_upsample(x, factor: int):
  """`F.interpolate(x, scale_factor=factor)`: output pixel i copies input pixel i // factor."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return x.reshape(n, factor * h, factor * w, c)


def nearest_upsample_2x(x):
  """`F.interpolate(x, scale_factor=2)`: output pixel i copies input pixel i // 2."""
  return nearest_upsample(x, 2)


def bilinear_downsample_2x(x):
  """`F.interpolate(x, scale_factor=0.5, mode='bilinear')`: the mean of each 2x2 block."""
  _check_divisible(x, 2, 'bilinear_downsample_2x')
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def bilinear_downsample_4x(x):
  """`F.interpolate(x, scale_factor=0.25, mode='bilinear')`.

  Without antialiasing, output pixel i samples input coordinate 4i + 1.5, so it
  is the mean of pixels 4i+1 and 4i+2 on each axis.
  """
  _check_divisible(x, 4, 'bilinear_downsample_4x')
  n, h, w, c = x.shape
  blocks = x.reshape(n, h // 4, 4, w // 4, 4, c)[:, :, 1:3, :, 1:3, :]
  return blocks.mean(axis=(2, 4))


def bilinear_upsample_2x(x):
  """`F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)`, NHWC.

  On each axis output 2m is 0.25 x[m - 1] + 0.75 x[m] and output 2m + 1 is
  0.75 x[m] + 0.25 x[m + 1], the neighbours clamped at the borders.
  """
  # lax.concatenate, not jnp's: ONNX's converter (jax2onnx) replaces jnp.concatenate by a
  # rule that mis-sizes a concatenation along a symbolic axis.
  for axis in (1, 2):
    n = x.shape[axis]
    part = functools.partial(jax.lax.slice_in_dim, x, axis=axis)
    before = jax.lax.concatenate([part(0, 1), part(0, n - 1)], axis)
    after = jax.lax.concatenate([part(1, n), part(n - 1, n)], axis)
    even = 0.25 * before + 0.75 * x
    odd = 0.75 * x + 0.25 * after
    y = jnp.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    x = y.reshape(shape)
  return x


def round_up(size, multiple: int):
  """`size` rounded up to a multiple of `multiple`. Written as multiple * ceil(size /
  multiple) so that, for a symbolic size (jax.export), halving and doubling it
  again is provably the same size."""
  return multiple * ((size + multiple - 1) // multiple)


def reflected_rows(rows, n):
  """The indices `rows` (int array, from -(n - 1) to 2 (n - 1)) reflected into [0, n),
  as jnp.pad's 'reflect' mode reads them; `n` may be symbolic."""
  return jnp.where(rows < 0, -rows, jnp.where(rows > n - 1, 2 * (n - 1) - rows, rows))


def _pad_end_to_multiple(x, axis: int, multiple: int):
  """Pads the end of `axis` to a multiple of `multiple`, by reflection (by
  repetition for images shorter than the padding), as jnp.pad's 'reflect' and
  'edge' modes do. A gather of computed rows rather than jnp.pad, so that the
  size may be symbolic (jax.export with any image size)."""
  n = x.shape[axis]
  padded = round_up(n, multiple)
  if not jax.export.is_symbolic_dim(n) and padded == n:
    return x
  rows = jax.lax.iota(jnp.int32, padded)
  reflected = reflected_rows(rows, n)
  repeated = jnp.minimum(rows, n - 1)
  source = jnp.where(jnp.less(padded - n, n), reflected, repeated)
  return jnp.take(x, source, axis=axis, mode='clip')


def pad_to_multiple(x, multiple: int):
  """Reflect-pads the bottom and right of NHWC `x` so H and W divide by `multiple`.

  Returns the padded array and the original (height, width) for `crop_to`.
  """
  size = (x.shape[1], x.shape[2])
  x = _pad_end_to_multiple(x, 1, multiple)
  return _pad_end_to_multiple(x, 2, multiple), size


def zero_pad_to_multiple(x, multiple: int):
  """Zero-pads the bottom and right of NHWC `x` so H and W divide by `multiple`
  (jnp.pad's 'constant' mode). For a symbolic size (jax.export) an in-bounds
  gather and a select, which converters to other runtimes (ONNX) can write for
  any size, unlike a pad of symbolic length."""
  for axis in (1, 2):
    n = x.shape[axis]
    padded = round_up(n, multiple)
    if not jax.export.is_symbolic_dim(n):
      x = jnp.pad(x, [(0, padded - n if a == axis else 0) for a in range(x.ndim)])
      continue
    rows = jax.lax.iota(jnp.int32, padded)
    inside = jnp.expand_dims(rows < n, [a for a in range(x.ndim) if a != axis])
    x = jnp.where(inside, jnp.take(x, rows, axis=axis, mode='clip'), 0).astype(x.dtype)
  return x


def crop_to(x, size):
  """Undoes `pad_to_multiple`: keeps the top-left `size` = (height, width). A
  lax.slice, not indexing (a gather for symbolic sizes), so that converters to
  other runtimes (ONNX) keep it a slice."""
  if tuple(x.shape[1:3]) == tuple(size):
    return x
  return jax.lax.slice(x, (0,) * x.ndim, (x.shape[0], size[0], size[1]) + x.shape[3:])
