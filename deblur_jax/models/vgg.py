"""VGG16 / VGG19 convolutional features (Simonyan and Zisserman, 2015) for perceptual losses.

The conv part of torchvision's `vgg16` / `vgg19` (`model.features`), NHWC, with
the same module numbering so that torchvision weights map on by renaming:

  torchvision                        Flax (and the .npz key)
  features.{i}.weight (out, in, 3, 3)  features_{i}/kernel (3, 3, in, out)
  features.{i}.bias                    features_{i}/bias

Layers are named as in BasicSR: 'conv3_3' is the third conv of block 3 before
its ReLU (what DeblurGAN and DeblurGAN-v2 take: torchvision's features[:15] of
VGG19), 'relu3_3' after it, 'pool3' after the block's max-pool.

    python -m deblur_jax.convert_vgg --input=vgg19-dcbb9e9d.pth --network=vgg19 \
        --output=vgg19.npz

writes the file `deblur_jax.weights.vgg19_pytorch.load_vgg_params` reads.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deblur_jax.core.lookup import lookup

# Convs per block; every block ends with a 2x2 max-pool.
BLOCKS = {
    'vgg16': (2, 2, 3, 3, 3),
    'vgg19': (2, 2, 4, 4, 4),
}
WIDTHS = (64, 128, 256, 512, 512)
# torchvision's ImageNet statistics, which its weights expect, for RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Where torchvision's ImageNet weights are downloaded from.
TORCHVISION_FILES = {
    'vgg16': 'https://download.pytorch.org/models/vgg16-397923af.pth',
    'vgg19': 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth',
}


def layers(network: str) -> list[tuple[str, int, str, int]]:
  """(layer name, torchvision `features` index, kind, output channels) in order.

  kind is 'conv', 'relu' or 'pool'; e.g. VGG19 starts ('conv1_1', 0, 'conv', 64),
  ('relu1_1', 1, 'relu', 64), ('conv1_2', 2, 'conv', 64), ... ('pool1', 4, 'pool', 64).
  """
  lookup(BLOCKS, network, 'VGG network')
  table = []
  for block, (convs, width) in enumerate(zip(BLOCKS[network], WIDTHS), start=1):
    for k in range(1, convs + 1):
      table.append((f'conv{block}_{k}', len(table), 'conv', width))
      table.append((f'relu{block}_{k}', len(table), 'relu', width))
    table.append((f'pool{block}', len(table), 'pool', width))
  return table


def layer_names(network: str) -> list[str]:
  """Every layer `VGGFeatures` can stop at, in order."""
  return [name for name, _, _, _ in layers(network)]


def param_shapes(network: str, layer: str | None = None) -> dict[str, tuple[int, ...]]:
  """Flat parameter name ('features_0/kernel') -> Flax shape, for the convs that
  `layer` needs (all of them when `layer` is None)."""
  shapes = {}
  in_channels = 3
  for name, index, kind, width in layers(network):
    if kind == 'conv':
      shapes[f'features_{index}/kernel'] = (3, 3, in_channels, width)
      shapes[f'features_{index}/bias'] = (width,)
      in_channels = width
    if name == layer:
      break
  return shapes


class VGGFeatures(nn.Module):
  """VGG features of RGB images: (N, H, W, 3) in [0, 1] -> (N, H/s, W/s, C) at `layer`.

  The input is normalised with the ImageNet mean and standard deviation inside
  (as torchvision's weights expect); s is 2 per max-pool before `layer`. Only
  the convs up to `layer` have parameters.
  """
  network: str = 'vgg19'
  layer: str = 'conv3_3'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    if self.layer not in layer_names(self.network):
      raise ValueError(f'{self.network} has no layer {self.layer!r}; choose one of '
                       f'{layer_names(self.network)}.')
    mean = jnp.asarray(IMAGENET_MEAN, self.dtype)
    std = jnp.asarray(IMAGENET_STD, self.dtype)
    x = (x.astype(self.dtype) - mean) / std
    for name, index, kind, width in layers(self.network):
      if kind == 'conv':
        x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    name=f'features_{index}')(x)
      elif kind == 'relu':
        x = nn.relu(x)
      else:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      if name == self.layer:
        return x
    raise AssertionError('unreachable: the layer is in the table')

