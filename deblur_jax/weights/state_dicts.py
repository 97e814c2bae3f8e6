"""What every PyTorch-weight converter shares: finding the state dict in a loaded
checkpoint, naming its missing, unexpected and misshapen keys, the layout of
conv weights, and writing the converted checkpoint."""

import math
import os
import re
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

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


def layer_norm_body_key(flax_path: tuple[str, ...], module_names) -> str:
  """The PyTorch key of a Flax parameter path in the Restormer / FFTformer layout:
  the module named by `torch_module_name`, '.body' added for LayerNorms (named
  norm, norm1, norm2: their parameters sit in an inner `body` module), and 'kernel'
  and 'scale' called 'weight'."""
  name = torch_module_name(flax_path, module_names)
  if re.search(r'(^|\.)norm\d?$', name):
    name += '.body'
  param = {'kernel': 'weight', 'scale': 'weight'}.get(flax_path[-1], flax_path[-1])
  return f'{name}.{param}'


def conv_axes(flax_path: tuple[str, ...]):
  """CONV_AXES for a conv 'kernel', None (the same layout) for any other parameter."""
  return CONV_AXES if flax_path[-1] == 'kernel' else None


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


def params_from_template(state_dict: dict, template: dict, torch_key: Callable,
                         axes: Callable, description: str, source: str) -> dict:
  """The Flax parameter tree shaped as `template` (a tree of arrays or
  ShapeDtypeStructs) with every leaf read from `state_dict[torch_key(path)]`,
  transposed by `axes(path)` (None: as it is), in float32. First checks every key
  and shape (check_state_dict, '{source} does not hold {description}: ...')."""
  shapes = {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(template).items()}
  expected = {torch_key(path): torch_shape(shape, axes(path)) for path, shape in shapes.items()}
  check_state_dict(state_dict, expected, description, source)
  flat = {path: jnp.asarray(to_flax(np.asarray(state_dict[torch_key(path)]), axes(path)))
          for path in shapes}
  return traverse_util.unflatten_dict(flat)


def expansion_factor(widths_and_hiddens, preset: float) -> float:
  """A feed-forward expansion factor f with int(width x f) == hidden for every
  (width, hidden) pair (the official int(C x f) widths read from a state dict):
  `preset` when it fits, else the shortest decimal that fits all (the hidden /
  width of the first pair when none does: the key check then names the
  misshapen tensors)."""
  pairs = [(w, h) for w, h in widths_and_hiddens if w > 0]

  def fits(f):
    return all(int(w * f) == h for w, h in pairs)

  if not pairs or fits(preset):
    return preset
  low = max(h / w for w, h in pairs)
  for decimals in range(1, 7):
    candidate = math.ceil(low * 10**decimals) / 10**decimals
    if fits(candidate):
      return candidate
  return pairs[0][1] / pairs[0][0]


def matching_preset(sizes: dict, presets: dict, model_name: str | None, describe: Callable) -> str:
  """The preset name for weights of `sizes`: `model_name` when its preset's fields
  all equal theirs, else the preset with the most equal fields (the first of those
  tied), so that a small BiasFree Restormer still reads as the denoising one. Logs a
  warning when `model_name` (what the user said the weights are) does not match."""
  def same(value, other):
    if isinstance(value, (list, tuple)) and isinstance(other, (list, tuple)):
      return tuple(value) == tuple(other)
    return value == other

  def equal_fields(name):
    return sum(same(v, sizes[k]) for k, v in presets[name].items() if k in sizes)

  if model_name is not None and equal_fields(model_name) == len(presets[model_name]):
    return model_name
  best = max(presets, key=equal_fields)  # the first of the best, in the presets' order
  if model_name is not None:
    hint = f' They look like --model={best}.' if best != model_name else ''
    logging.warning('The weights have %s, not the sizes of --model=%s; converting them as '
                    'they are.%s', describe(sizes), model_name, hint)
    return model_name
  return best


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
