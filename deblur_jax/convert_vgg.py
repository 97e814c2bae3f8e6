"""Converts torchvision's ImageNet VGG16 / VGG19 weights into the .npz the perceptual loss reads.

  wget https://download.pytorch.org/models/vgg19-dcbb9e9d.pth
  python -m deblur_jax.convert_vgg --input=vgg19-dcbb9e9d.pth --network=vgg19 --output=vgg19.npz
  python -m deblur_jax.main ... --config.loss.perceptual_weights=vgg19.npz

Reads the file without PyTorch (deblur_jax.weights.pytorch_reader). It holds a state
dict (or {'model': state_dict}); the conv weights `features.{i}.weight` and
`features.{i}.bias` are checked against the network and saved as float32 Flax
arrays `features_{i}/kernel` (3, 3, in, out) and `features_{i}/bias`; the
classifier is dropped.
"""

import os

import numpy as np
from absl import flags, logging

from deblur_jax import cli, convert
from deblur_jax.errors import InputError
from deblur_jax.models import vgg
from deblur_jax.weights import pytorch_reader

# Conv2d weight (out, in, kh, kw) -> Flax kernel (kh, kw, in, out).
_CONV_AXES = (2, 3, 1, 0)
_PARAM_NAMES = {'kernel': 'weight', 'bias': 'bias'}


def torch_key(flax_key: str) -> str:
  """'features_14/kernel' -> 'features.14.weight'."""
  module, name = flax_key.split('/')
  return f"{module.replace('_', '.')}.{_PARAM_NAMES[name]}"


def _key_order(key: str):
  """'features.14.weight' sorts by its index, then name."""
  parts = key.split('.')
  return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, key)


def _listing(keys: list[str], limit: int = 12) -> str:
  more = f' and {len(keys) - limit} more' if len(keys) > limit else ''
  return '[' + ', '.join(keys[:limit]) + more + ']'


def _torch_shape(flax_key: str, shape: tuple) -> tuple:
  return shape if flax_key.endswith('/bias') else tuple(shape[a] for a in np.argsort(_CONV_AXES))


def convert_state_dict(state_dict: dict, network: str, source: str) -> dict[str, np.ndarray]:
  """Flat Flax parameters {'features_0/kernel': HWIO float32, ...} of a torchvision
  `network` state dict. Raises InputError naming missing and misshapen keys, and
  `features.*` keys the network does not have (another VGG variant)."""
  if network not in vgg.BLOCKS:
    raise InputError(f'Unknown --network={network!r}; choose one of {sorted(vgg.BLOCKS)}.')
  expected = {torch_key(k): (k, _torch_shape(k, s)) for k, s in vgg.param_shapes(network).items()}
  missing = [k for k in expected if k not in state_dict]
  unexpected = sorted((k for k in map(str, state_dict)
                       if k.startswith('features.') and k not in expected), key=_key_order)
  misshapen = []
  for key in sorted(set(expected) & set(state_dict)):
    value = state_dict[key]
    if not (isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
            and value.shape == expected[key][1]):
      found = (f'{value.dtype} {value.shape}' if isinstance(value, np.ndarray)
               else type(value).__name__)
      misshapen.append(f'{key} (expected float {expected[key][1]}, found {found})')
  if missing and len(missing) == len(expected):
    problems = [f'none of its {len(expected)} conv keys ({missing[0]} ... {missing[-1]}) '
                f'is there; the file has {_listing(sorted(map(str, state_dict)))}']
    problems += vgg.key_problems([], unexpected, misshapen)
  else:
    problems = vgg.key_problems(missing, unexpected, misshapen)
  if problems:
    raise InputError(f"{source} does not hold torchvision's {network} weights (without batch "
                     'norm): ' + '; '.join(problems) + '.')
  flat = {}
  for key, (flax_key, _) in expected.items():
    value = state_dict[key].astype(np.float32)
    flat[flax_key] = value if flax_key.endswith('/bias') else value.transpose(_CONV_AXES)
  return flat


def convert_file(input_path: str, network: str, output_path: str) -> int:
  """Converts the torchvision checkpoint `input_path` into `output_path` (.npz);
  returns the number of parameters written. Never overwrites a file."""
  if not output_path.endswith('.npz'):
    raise InputError(f'--output={output_path} must end with .npz.')
  if os.path.exists(output_path):
    raise InputError(f'--output={output_path} already exists; converting never overwrites: '
                     'give a new file name.')
  if not os.path.isfile(input_path):
    raise InputError(f'--input={input_path} is not a file; download it from '
                     f'{vgg.TORCHVISION_FILES.get(network, vgg.TORCHVISION_FILES["vgg19"])}.')
  state_dict = convert.find_state_dict(pytorch_reader.load(input_path), input_path)
  flat = convert_state_dict(state_dict, network, input_path)
  try:
    with open(output_path, 'xb') as file:
      np.savez(file, **flat)
  except OSError as e:
    raise InputError(f'Cannot write --output={output_path}: {e}') from e
  return sum(value.size for value in flat.values())


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only when run as a program: other CLIs define --input and --output too."""
  flags.DEFINE_string('input', None, "torchvision's VGG checkpoint (.pth), e.g. "
                      'vgg19-dcbb9e9d.pth or vgg16-397923af.pth.')
  flags.DEFINE_enum('network', None, sorted(vgg.BLOCKS), 'Which VGG the weights are for.')
  flags.DEFINE_string('output', None, 'The .npz file to write; it must not exist yet.')
  flags.mark_flags_as_required(['input', 'network', 'output'])


def main(_):
  num_params = convert_file(FLAGS.input, FLAGS.network, FLAGS.output)
  logging.info('Converted %d %s conv parameters from %s.', num_params, FLAGS.network,
               FLAGS.input)
  print(f'Wrote {FLAGS.output}. Use it with:\n'
        f'  --config.loss.perceptual_network={FLAGS.network} '
        f'--config.loss.perceptual_weights={os.path.abspath(FLAGS.output)}')


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  cli.run(main)


if __name__ == '__main__':
  run()
