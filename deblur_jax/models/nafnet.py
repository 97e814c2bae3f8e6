"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022) as Flax
linen modules, NHWC.

Follows the official PyTorch code (github.com/megvii-research/NAFNet at 2b4af71,
basicsr/models/archs/NAFNet_arch.py, arch_util.py and local_arch.py), with its
module names so that official checkpoints map onto it by renaming alone:

  PyTorch                                   Flax
  intro, ending                             intro, ending
  encoders.{i}.{j}.{conv1..conv5,norm1,norm2}  encoders_{i}/blocks/{conv1..conv5,norm1,norm2}[j]
  encoders.{i}.{j}.sca.1                    encoders_{i}/blocks/sca[j]
  encoders.{i}.{j}.beta, .gamma             encoders_{i}/blocks/beta[j], gamma[j]
  downs.{i}                                 downs_{i}
  middle_blks.{j}.*                         middle_blks/blocks/*[j]
  ups.{i}.0                                 ups_{i}
  decoders.{i}.{j}.*                        decoders_{i}/blocks/*[j]

The blocks of a level are one `NAFBlockStack`: `nn.scan` over parameters stacked
on a leading axis (block j at [j]; a level of one block holds it unstacked, without
[j]), so XLA compiles one block per level instead of, for the GoPro presets, 28
copies of the same block (XLA's CPU compile time grows faster than linearly with
them); the scanned block is rematerialised. `unstack_blocks` and `stack_blocks` turn
the stacked tree into one subtree per block (`encoders_{i}_{j}`, ...) and back.

Conv weights are Flax 'kernel's, LayerNorm2d weights 'scale's. Initialisation
follows PyTorch's defaults (convs uniform in +-1/sqrt(fan_in), norms one and
zero, beta and gamma zero), as the official training does.

TLC (Chu et al., "Revisiting Global Statistics Aggregation for Improving Image
Restoration", the official NAFNetLocal): at test time each channel attention
averages over a window 1.5 times the training crop, scaled to its level,
instead of over the whole image.
"""

import functools
import re
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deblur_jax.models import image_ops
from deblur_jax.models.layers import (
  Conv1x1,
  DepthwiseConv3x3,
  TorchConv,
  check_images,
  in_plain_forms,
)

# The official GoPro models (options/test/GoPro/NAFNet-width{32,64}.yml): NAFNetLocal
# trained on 256x256 crops. 17,111,907 and 67,888,835 parameters.
PRESETS = {
    'nafnet_width32': {'width': 32, 'enc_blk_nums': (1, 1, 1, 28), 'middle_blk_num': 1,
                       'dec_blk_nums': (1, 1, 1, 1), 'tlc_train_size': 256},
    'nafnet_width64': {'width': 64, 'enc_blk_nums': (1, 1, 1, 28), 'middle_blk_num': 1,
                       'dec_blk_nums': (1, 1, 1, 1), 'tlc_train_size': 256},
}


class LayerNorm2d(nn.LayerNorm):
  """The official LayerNorm2d: each pixel normalised over its channels (biased
  variance, eps 1e-6), then scaled and shifted per channel."""
  epsilon: float = 1e-6
  use_fast_variance: bool = False


def pixel_shuffle(x, factor: int = 2):
  """PyTorch's nn.PixelShuffle in NHWC: (N, H, W, C * r * r) -> (N, r * H, r * W, C).

  Input channel c * r * r + i * r + j lands on output channel c at (r * h + i, r * w + j).
  """
  n, h, w, channels = x.shape
  r = factor
  x = x.reshape(n, h, w, channels // (r * r), r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # (n, h, i, w, j, c)
  return x.reshape(n, h * r, w * r, channels // (r * r))


def simple_gate(x):
  """(N, H, W, 2C) -> (N, H, W, C): the first half of the channels times the second."""
  x1, x2 = jnp.split(x, 2, axis=-1)
  return x1 * x2


def tlc_kernel_sizes(train_size: int, levels: int) -> list[int]:
  """The TLC pool window at each level 0..`levels` (`levels` is the middle blocks').

  As the official AvgPool2d fixes it on NAFNetLocal's first forward pass, at a
  `train_size` square input (zero-padded to a multiple of 2**levels): the
  level's feature size there times base_size // train_size, base_size being
  int(1.5 * train_size). For 256 and 4 levels: 384, 192, 96, 48, 24.
  """
  multiple = 2 ** levels
  padded = -(-train_size // multiple) * multiple
  base_size = int(train_size * 1.5)
  return [(padded >> level) * base_size // train_size for level in range(levels + 1)]


def _tlc_windows(size, kernel: int):
  """Where the TLC window of each of `size` positions along one axis starts and ends
  (int32 (size,) each), and its length min(size, kernel). As the official
  replicate padding places them: centred, with (length - 1) // 2 positions
  before, and moved inside the map at its borders. `size` may be symbolic
  (jax.export), hence jnp rather than Python arithmetic."""
  length = jnp.minimum(size, kernel)
  start = jnp.clip(jax.lax.iota(jnp.int32, size) - (length - 1) // 2, 0, size - length)
  return start, start + length, length


def tlc_avg_pool(x, kernel: int):
  """The official TLC AvgPool2d (fast_imp=False) of (N, H, W, C): the mean over each
  window of min(H, kernel) x min(W, kernel) pixels, from an integral image, the
  windows clamped inside the map at its borders (the official replicate padding);
  (N, 1, 1, C), the global mean, when the window covers the whole map. Computed in
  float32.

  For a symbolic H or W (jax.export) both are computed and the choice is made at
  run time, broadcast to (N, H, W, C): the same numbers for every size.
  """
  h, w = x.shape[1:3]
  dtype, x = x.dtype, x.astype(jnp.float32)
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  symbolic = jax.export.is_symbolic_dim(h) or jax.export.is_symbolic_dim(w)
  if not symbolic and h <= kernel and w <= kernel:
    return mean.astype(dtype)
  s = jnp.cumsum(jnp.cumsum(x, axis=2), axis=1)
  s = jnp.pad(s, ((0, 0), (1, 0), (1, 0), (0, 0)))  # s[:, i, j]: the sum above and left of (i, j)
  top, bottom, k1 = _tlc_windows(h, kernel)
  left, right, k2 = _tlc_windows(w, kernel)
  # Gathers (in bounds), not slices and padding, so that the window length may be
  # symbolic; the same sums in the same order.
  take = functools.partial(jnp.take, mode='clip')
  rows_above, rows_below = take(s, top, axis=1), take(s, bottom, axis=1)
  out = (take(rows_below, right, axis=2) + take(rows_above, left, axis=2)
         - take(rows_above, right, axis=2) - take(rows_below, left, axis=2))
  out = out / (k1 * k2)
  if symbolic:
    out = jnp.where(jnp.less_equal(h, kernel) & jnp.less_equal(w, kernel), mean, out)
  return out.astype(dtype)


class NAFBlock(nn.Module):
  """The official NAFBlock: (N, H, W, C) -> (N, H, W, C).

  LayerNorm, 1x1 conv to 2C, depthwise 3x3, SimpleGate, simplified channel
  attention, 1x1 conv, dropout, scaled by beta and added; then LayerNorm, 1x1
  conv to 2C, SimpleGate, 1x1 conv, dropout, scaled by gamma and added.

  Attributes:
    features: channels C.
    tlc_kernel: the TLC pool window when not training (None: global pooling).
    dropout_rate: element-wise dropout after both branches, in training.
    dtype: compute dtype; parameters stay float32.
  """
  features: int
  tlc_kernel: int | None = None
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inp, train: bool = False):
    c = self.features
    conv1x1 = functools.partial(Conv1x1, dtype=self.dtype)
    dropout = functools.partial(nn.Dropout, self.dropout_rate, deterministic=not train)
    zeros = nn.initializers.zeros

    x = LayerNorm2d(dtype=self.dtype, name='norm1')(inp)
    x = conv1x1(2 * c, name='conv1')(x)
    x = DepthwiseConv3x3(dtype=self.dtype, name='conv2')(x)
    x = simple_gate(x)
    if self.tlc_kernel is None or train:
      pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(x.dtype)
    else:
      pooled = tlc_avg_pool(x, self.tlc_kernel)
    x = x * conv1x1(c, name='sca')(pooled)
    x = conv1x1(c, name='conv3')(x)
    x = dropout()(x)
    y = inp + x * self.param('beta', zeros, (c,)).astype(self.dtype)

    x = conv1x1(2 * c, name='conv4')(LayerNorm2d(dtype=self.dtype, name='norm2')(y))
    x = simple_gate(x)
    x = conv1x1(c, name='conv5')(x)
    x = dropout()(x)
    return y + x * self.param('gamma', zeros, (c,)).astype(self.dtype)


class NAFBlockStack(nn.Module):
  """`num_blocks` NAFBlocks in sequence under the name 'blocks'. Several blocks run
  as one `nn.scan` over their parameters stacked on a leading axis (compiled once;
  dropout keys split per block); a single block is called directly and holds its
  parameters unstacked, sparing the copies a loop makes of its activations.
  Attributes as NAFBlock's."""
  features: int
  num_blocks: int
  tlc_kernel: int | None = None
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    fields = (self.features, self.tlc_kernel, self.dropout_rate, self.dtype)
    if self.num_blocks == 1:
      return NAFBlock(*fields, name='blocks')(x, train)

    stacked = self.variables.get('params', {}).get('blocks')
    if in_plain_forms() and stacked is not None:
      # Unrolled, each block with its slice of the stacked parameters: converters
      # (ONNX) write straight-line graphs, not loops.
      block = NAFBlock(*fields, parent=None)
      for index in range(self.num_blocks):
        x = block.apply({'params': jax.tree.map(lambda p, i=index: p[i], stacked)}, x, train)
      return x

    def step(block, carry, _):
      return block(carry, train), None

    scan = nn.scan(step, variable_axes={'params': 0}, split_rngs={'params': True, 'dropout': True},
                   length=self.num_blocks)
    # Rematerialised: the loop keeps each block's input for the backward pass and
    # recomputes the rest, instead of writing every intermediate into stacked
    # buffers (XLA's CPU backend spent most of the GoPro model's step copying them).
    block = nn.remat(NAFBlock, static_argnums=(2,), prevent_cse=False)
    x, _ = scan(block(*fields, name='blocks'), x, None)
    return x


# NAFNet's stacked levels as named in its parameters; unstack_blocks names their
# blocks as the official modules with '_' for '.' (encoders_3_27).
_STACK_NAME = re.compile(r'(?:encoders|decoders)_\d+|middle_blks')
_BLOCK_NAME = re.compile(rf'({_STACK_NAME.pattern})_(\d+)')  # encoders_3_27


def unstack_blocks(params: dict) -> dict:
  """NAFNet parameters with each level's stack split into one subtree per block:
  'encoders_3' (leading axis 28) -> 'encoders_3_0' ... 'encoders_3_27', a level of
  one block -> 'encoders_0_0'; the other entries as they are. Works on arrays and
  on shape structs."""
  out = {}
  for name, subtree in params.items():
    if not _STACK_NAME.fullmatch(name):
      out[name] = subtree
      continue
    blocks = subtree['blocks']
    if len(blocks['beta'].shape) == 1:  # a single block, unstacked
      out[f'{name}_0'] = blocks
      continue
    for j in range(blocks['beta'].shape[0]):
      out[f'{name}_{j}'] = jax.tree.map(lambda leaf, j=j: _block_of(leaf, j), blocks)
  return out


def _block_of(leaf, j: int):
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[j]


def stack_blocks(params: dict) -> dict:
  """The inverse of unstack_blocks: per-block subtrees ('encoders_3_0', ...) stacked
  in block order into their level's NAFBlockStack parameters."""
  out, levels = {}, {}
  for name, subtree in params.items():
    match = _BLOCK_NAME.fullmatch(name)
    if match:
      levels.setdefault(match.group(1), {})[int(match.group(2))] = subtree
    else:
      out[name] = subtree
  for name, blocks in levels.items():
    if sorted(blocks) != list(range(len(blocks))):
      raise ValueError(f'NAFNet level {name} has blocks {sorted(blocks)}, not 0 to '
                       f'{len(blocks) - 1}.')
    ordered = [blocks[j] for j in range(len(blocks))]
    out[name] = {'blocks': ordered[0] if len(ordered) == 1 else
                 jax.tree.map(lambda *leaves: jnp.stack(leaves), *ordered)}
  return out


class NAFNet(nn.Module):
  """The official NAFNet / NAFNetLocal: a UNet of NAFBlocks with a global residual.

  Attributes:
    width: channels at full resolution, doubled at each level down.
    enc_blk_nums: NAFBlocks per encoder level, top first (one level each).
    middle_blk_num: NAFBlocks at the bottom.
    dec_blk_nums: NAFBlocks per decoder level, bottom first; as many as enc_blk_nums.
    dropout_rate: element-wise dropout in every NAFBlock, in training (the
      official NAFNet always builds its blocks with 0).
    tlc_train_size: None or 0: channel attention pools globally (the official
      NAFNet). The training crop side, e.g. 256: when not training it pools
      locally over 1.5 times that crop as the official NAFNetLocal evaluates
      (TLC). Training (train=True) always pools globally: at the training crop
      TLC's window covers the whole map, so both are the same there.
    dtype: compute dtype; parameters stay float32.

  Call with images (N, H, W, 3) in [0, 1] of any size, symbolic sizes too
  (jax.export): they are zero-padded at the bottom and right to a multiple of
  2**len(enc_blk_nums) and the output is cropped back. Returns [the restored
  images (N, H, W, 3)], float32, unclamped.
  """
  width: int = 32
  enc_blk_nums: Sequence[int] = (1, 1, 1, 28)
  middle_blk_num: int = 1
  dec_blk_nums: Sequence[int] = (1, 1, 1, 1)
  dropout_rate: float = 0.0
  tlc_train_size: int | None = None
  dtype: Any = jnp.float32

  size_multiple: ClassVar[int] = 1  # Any size: the model pads internally.
  # Channel attention averages over the whole image (or TLC's large windows):
  # padding the input changes every output pixel, so inference pads nothing.
  pad_only_to_multiple: ClassVar[bool] = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    check_images('NAFNet', x, self.size_multiple)
    levels = len(self.enc_blk_nums)
    if len(self.dec_blk_nums) != levels:
      raise ValueError(f'NAFNet needs as many decoder as encoder levels, got enc_blk_nums='
                       f'{tuple(self.enc_blk_nums)} and dec_blk_nums={tuple(self.dec_blk_nums)}.')
    if not self.tlc_train_size or train:
      kernels = [None] * (levels + 1)
    else:
      kernels = tlc_kernel_sizes(self.tlc_train_size, levels)
    stack = functools.partial(NAFBlockStack, dropout_rate=self.dropout_rate, dtype=self.dtype)

    def blocks(z, c, num, kernel, name):
      return stack(c, num, kernel, name=name)(z, train) if num else z

    # The residual is added to the float32 input, so a bfloat16 compute dtype does
    # not round the image itself.
    height, width = x.shape[1:3]
    # Padded sizes written as multiples (round_up) so that jax.export can prove the
    # upsampled maps as large as their skips for symbolic sizes.
    inp = image_ops.zero_pad_to_multiple(x.astype(jnp.float32), 2 ** levels)
    c = self.width
    z = TorchConv(c, 3, dtype=self.dtype, name='intro')(inp)
    skips = []
    for i, num in enumerate(self.enc_blk_nums):
      z = blocks(z, c, num, kernels[i], f'encoders_{i}')
      skips.append(z)
      z = TorchConv(2 * c, 2, 2, padding=0, dtype=self.dtype, name=f'downs_{i}')(z)
      c *= 2
    z = blocks(z, c, self.middle_blk_num, kernels[levels], 'middle_blks')
    for i, num in enumerate(self.dec_blk_nums):
      level = levels - 1 - i
      z = pixel_shuffle(Conv1x1(2 * c, use_bias=False, dtype=self.dtype, name=f'ups_{i}')(z))
      c //= 2
      z = z + skips[level]
      z = blocks(z, c, num, kernels[level], f'decoders_{i}')
    out = TorchConv(3, 3, dtype=self.dtype, name='ending')(z).astype(jnp.float32) + inp
    return [image_ops.crop_to(out, (height, width))]
