"""Converts torchvision's ImageNet VGG16 / VGG19 weights into the .npz the perceptual loss reads.

  wget https://download.pytorch.org/models/vgg19-dcbb9e9d.pth
  python -m deblur_jax.convert_vgg --input=vgg19-dcbb9e9d.pth --network=vgg19 --output=vgg19.npz
  python -m deblur_jax.main ... --config.loss.perceptual_weights=vgg19.npz

Reads the file without PyTorch (deblur_jax.weights.pytorch_reader). It holds a state
dict (or {'model': state_dict}); deblur_jax.weights.vgg19_pytorch checks the conv weights
`features.{i}.weight` and `features.{i}.bias` against the network and saves them
as float32 Flax arrays `features_{i}/kernel` (3, 3, in, out) and `features_{i}/bias`;
the classifier is dropped.
"""

import os

from absl import flags, logging

from deblur_jax.cli import command_line
from deblur_jax.models import vgg as vgg_model
from deblur_jax.weights import vgg19_pytorch

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only when run as a program: other CLIs define --input and --output too."""
  flags.DEFINE_string('input', None, "torchvision's VGG checkpoint (.pth), e.g. "
                      'vgg19-dcbb9e9d.pth or vgg16-397923af.pth.')
  flags.DEFINE_enum('network', None, sorted(vgg_model.BLOCKS), 'Which VGG the weights are for.')
  flags.DEFINE_string('output', None, 'The .npz file to write; it must not exist yet.')
  flags.mark_flags_as_required(['input', 'network', 'output'])


def main(_):
  num_params = vgg19_pytorch.convert_file(FLAGS.input, FLAGS.network, FLAGS.output)
  logging.info('Converted %d %s conv parameters from %s.', num_params, FLAGS.network,
               FLAGS.input)
  print(f'Wrote {FLAGS.output}. Use it with:\n'
        f'  --config.loss.perceptual_network={FLAGS.network} '
        f'--config.loss.perceptual_weights={os.path.abspath(FLAGS.output)}')


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  command_line.run(main)


if __name__ == '__main__':
  run()
