"""What every PyTorch-weight converter shares: finding the state dict in a loaded
checkpoint, naming its missing, unexpected and misshapen keys, the layout of
conv weights, and writing the converted checkpoint."""

import os
import re
from typing import Any, Callable

import numpy as np

from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError

# Axes of the PyTorch weight that make the Flax kernel (kh, kw, in, out): Conv2d
# weights are (out, in, kh, kw), ConvTranspose2d weights (in, out, kh, kw).
CONV_AXES = (2, 3, 1, 0)
TRANSPOSED_CONV_AXES = (2, 3, 0, 1)
# Where checkpoints keep the state dict, in the order looked at: BasicSR (NAFNet)
# writes 'params', the MIMO-UNet code 'model', Lightning-style code 'state_dict'.
_STATE_DICT_ENTRIES = ('model', 'params', 'state_dict')
_MAX_LISTED = 12  # keys named per kind of mismatch


def _natural_order(key: str) -> tuple:
  """'features.10.bias' -> ('features.', 10, '.bias', ...), so 2 sorts before 10."""
  return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r'(\d+)', key)))


def _listing(items: list) -> str:
  shown = ', '.join(map(str, items[:_MAX_LISTED]))
  more = f' and {len(items) - _MAX_LISTED} more' if len(items) > _MAX_LISTED else ''
  return f'[{shown}{more}]'


def _describe(value) -> str:
  if isinstance(value, np.ndarray):
    return f'{value.dtype} {tuple(value.shape)}'
  return type(value).__name__


def find_state_dict(checkpoint: Any, source: str) -> dict[str, np.ndarray]:
  """The state dict in a loaded checkpoint: checkpoint['model'], ['params'] or
  ['state_dict'], or the checkpoint itself when it holds arrays only; a
  'module.' prefix (from DataParallel) is removed."""
  entry = next((name for name in _STATE_DICT_ENTRIES if isinstance(checkpoint, dict)
                and isinstance(checkpoint.get(name), dict)), None)
  if entry is not None:
    state_dict = checkpoint[entry]
  elif isinstance(checkpoint, dict) and checkpoint and all(
      isinstance(v, np.ndarray) for v in checkpoint.values()):
    state_dict = checkpoint
  else:
    what = (f'a dict with keys {_listing(sorted(map(str, checkpoint), key=_natural_order))}'
            if isinstance(checkpoint, dict) else f'a {type(checkpoint).__name__}')
    raise InputError(f"{source} holds {what}: neither {{'model': state_dict, ...}} (or "
                     "'params', 'state_dict') nor a state dict of tensors.")
  if state_dict and all(isinstance(k, str) and k.startswith('module.') for k in state_dict):
    state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
  return state_dict


def key_problems(expected: dict[str, tuple], found: dict, *,
                 ignore_unexpected: Callable[[str], bool] = lambda key: False) -> list[str]:
  """What is wrong with the keys of `found` against `expected` (key -> shape), as
  phrases for an error message: missing keys, unexpected keys (but those
  `ignore_unexpected` accepts) and misshapen keys (not a float array of the
  expected shape). Empty when nothing is."""
  missing = sorted(set(expected) - set(found), key=_natural_order)
  unexpected = sorted((k for k in map(str, set(found) - set(expected))
                       if not ignore_unexpected(k)), key=_natural_order)
  misshapen = []
  for key in sorted(set(expected) & set(found), key=_natural_order):
    value = found[key]
    if not (isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
            and value.shape == tuple(expected[key])):
      misshapen.append(f'{key} (expected float {tuple(expected[key])}, found '
                       f'{_describe(value)})')
  problems = []
  if missing:
    problems.append(f'{len(missing)} of its {len(expected)} keys are missing: '
                    f'{_listing(missing)}')
  if unexpected:
    problems.append(f'{len(unexpected)} keys are unexpected: {_listing(unexpected)}')
  if misshapen:
    problems.append(f'{len(misshapen)} keys are misshapen: {_listing(misshapen)}')
  return problems


def check_state_dict(state_dict: dict, expected: dict[str, tuple], description: str,
                     source: str, **kwargs) -> None:
  """Raises InputError '{source} does not hold {description}: ...' naming every
  problem key_problems(expected, state_dict, **kwargs) finds."""
  problems = key_problems(expected, state_dict, **kwargs)
  if problems:
    raise InputError(f'{source} does not hold {description}: ' + '; '.join(problems) + '.')


def torch_module_name(flax_path: tuple[str, ...], module_names) -> str:
  """The PyTorch module name of a Flax parameter path's modules (all but the last
  entry), dotted: the template of the first (regex, template) of `module_names`
  that matches the '/'-joined path whole, expanded. A ValueError when none does."""
  module = '/'.join(flax_path[:-1])
  for pattern, template in module_names:
    match = re.fullmatch(pattern, module)
    if match:
      return match.expand(template).replace('/', '.')
  raise ValueError(f'No PyTorch name for the Flax parameter {"/".join(flax_path)}.')


def torch_shape(flax_shape: tuple, axes: tuple[int, ...] | None) -> tuple:
  """The PyTorch shape of a Flax parameter whose kernel is the PyTorch weight
  transposed by `axes` (None: the same layout, as for biases)."""
  if axes is None:
    return tuple(flax_shape)
  return tuple(flax_shape[a] for a in np.argsort(axes))


def to_flax(value: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
  """A checked PyTorch tensor as the float32 Flax parameter (transposed by `axes`)."""
  value = value.astype(np.float32)
  return value if axes is None else value.transpose(axes)


def check_output_dir(output_dir: str) -> None:
  """Refuses an output path that is a file or that already holds checkpoints."""
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise InputError(f'--output={output_dir} is a file; give a directory for the converted '
                     'checkpoint.')
  target = checkpoints.checkpoint_dir(output_dir)
  if os.path.exists(target) and not (os.path.isdir(target) and not os.listdir(target)):
    raise InputError(f'{target} already exists and is not an empty directory; converting '
                     'never overwrites: give a new --output directory.')


def save_converted_checkpoint(output_dir: str, params: dict, config_dict: dict) -> None:
  """Writes `output_dir/checkpoints` at step 0 with the items 'model'
  ({'params': params}) and 'config' (`config_dict`); no optimizer state."""
  try:
    os.makedirs(output_dir, exist_ok=True)
  except OSError as e:
    raise InputError(f'Cannot create --output={output_dir}: {e}') from e
  manager = checkpoints.create_manager(output_dir, keep=1)
  try:
    checkpoints.save_model(manager, 0, {'params': params}, config_dict)
  finally:
    manager.close()  # waits for the asynchronous save
