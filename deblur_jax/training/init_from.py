"""Fine-tuning: a new run's model variables from another run's checkpoint.

config.train.init_from (the model, or a GAN's generator) and config.gan.init_from (the
discriminator) name a work directory (its checkpoint at config.train.init_from_step,
-1 = the latest) or a checkpoint step folder WORKDIR/checkpoints/STEP, of a deblur_jax
run or of converted official weights. Only parameters and BatchNorm statistics are
loaded, onto the shardings of a freshly created state: the optimizer, the schedule and
the data position start afresh at step 0. The loop loads them only while the work
directory has no checkpoint of its own, so that a preempted fine-tune resumes.
"""

import dataclasses
import os
from typing import NamedTuple, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import traverse_util

from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError
from deblur_jax.training.state import TrainState
from deblur_jax.weights import state_dicts


class Location(NamedTuple):
  """Where a checkpoint keeps a network's variables: an item and the keys inside it."""
  item: str
  keys: tuple[str, ...] = ()
  what: str = 'model variables'


MODEL = Location('model')


@dataclasses.dataclass
class Loaded:
  """What `load_variables` read, by flattened path ('params/Encoder_0/.../kernel')."""
  arrays: dict[str, np.ndarray]  # the checkpoint's arrays that the template takes
  fresh: list[str]  # template arrays kept as initialised (absent or misshapen there)
  ignored: list[str]  # the checkpoint's arrays not loaded (not in the template, misshapen)
  source: str  # the checkpoint step folder


def locate(path: str, step: int, field: str) -> tuple[str, Optional[int]]:
  """(work directory, step or None for the latest) of the checkpoint `path` names: a
  work directory (its checkpoint at `step`, -1 = the latest) or one of its step folders
  WORKDIR/checkpoints/STEP (whose step wins over `step`)."""
  if os.path.isdir(checkpoints.checkpoint_dir(path)):
    return checkpoints.checkpoint_location(path, None, None if step < 0 else step)
  try:
    return checkpoints.checkpoint_location(None, path, None)
  except InputError:
    raise InputError(f'{field}={path!r} holds no checkpoints: give a work directory with a '
                     'checkpoints/ folder or one of its step folders '
                     '(WORKDIR/checkpoints/STEP).') from None


def _checkpoint_step(manager, step: Optional[int], path: str, field: str) -> int:
  if manager.latest_step() is None:
    raise InputError(f'{field}={path!r} holds no checkpoints ({manager.directory} has none).')
  try:
    return checkpoints.read_config(manager, step)[1]
  except InputError as e:
    raise InputError(f'{field}={path!r}: {str(e).rstrip(".")}; set '
                     'config.train.init_from_step to one of them, or -1 for the latest.'
                     ) from None


def _read_arrays(manager, step: int, location: Location) -> Optional[dict[str, np.ndarray]]:
  """The arrays at `location` of the checkpoint at `step` by flattened path, or None
  when it has none there. Only those are read, whatever else the item holds."""
  folder = epath.Path(manager.directory) / str(step) / location.item
  if not folder.is_dir():
    return None
  tree = ocp.StandardCheckpointHandler().metadata(folder).tree
  for key in location.keys:
    if not isinstance(tree, dict) or key not in tree:
      return None
    tree = tree[key]
  # Onto this process's first device, whatever devices and processes saved it.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
  for key in reversed(location.keys):
    target = {key: target}
  restore = ocp.args.PyTreeRestore(
      target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)
  restored = manager.restore(step, args=ocp.args.Composite(**{location.item: restore}))
  restored = restored[location.item]
  for key in location.keys:
    restored = restored[key]
  return {name: np.asarray(x) for name, x in _flat(restored).items()}


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(tree, sep='/')


def _fits(value: np.ndarray, shape: tuple) -> bool:
  return np.issubdtype(value.dtype, np.floating) and value.shape == shape


def load_variables(template: dict, path: str, step: int = -1, *, strict: bool = True,
                   field: str = 'config.train.init_from',
                   location: Location = MODEL) -> Loaded:
  """The arrays of the checkpoint `path` names (see `locate`) that `template` (model
  variables {'params', maybe 'batch_stats'}: arrays or ShapeDtypeStructs) takes.

  strict: the checkpoint must hold exactly the template's paths and shapes, else an
  InputError names the missing, unexpected and misshapen ones. Otherwise those whose
  path and shape match are loaded (at least one) and the others logged.
  """
  workdir, step = locate(path, step, field)
  manager = checkpoints.create_manager(workdir, keep=1, read_only=True)
  try:
    step = _checkpoint_step(manager, step, path, field)
    source = f'{manager.directory}/{step}'
    saved = _read_arrays(manager, step, location)
  finally:
    manager.close()
  if saved is None:
    raise InputError(f'{field}={path!r}: the checkpoint {source} holds no {location.what}.')
  expected = {name: tuple(leaf.shape) for name, leaf in _flat(template).items()}
  problems = state_dicts.key_problems(expected, saved)
  arrays = {k: v for k, v in saved.items() if k in expected and _fits(v, expected[k])}
  if problems and strict:
    raise InputError(f'{field}={path!r}: the checkpoint {source} does not hold this '
                     f"network's {location.what}: {'; '.join(problems)}. Give a checkpoint of "
                     'the same network, or set config.train.init_from_strict=False to load '
                     'the arrays whose names and shapes match.')
  if not arrays:
    raise InputError(f'{field}={path!r}: no array of the checkpoint {source} matches this '
                     f"network's {location.what} ({'; '.join(problems)}).")
  if problems:
    logging.warning('%s=%r: loaded %d of the %d arrays from %s; the others keep their fresh '
                    'initialisation and the checkpoint\'s others are ignored: %s.', field, path,
                    len(arrays), len(expected), source, '; '.join(problems))
  else:
    logging.info('%s: starting from the %s of %s (%d arrays).', field, location.what, source,
                 len(arrays))
  return Loaded(arrays, sorted(set(expected) - set(arrays)), sorted(set(saved) - set(arrays)),
                source)


def _place(template: dict, arrays: dict[str, np.ndarray]) -> dict:
  """`template` with the arrays of the same flattened paths, in its leaves' dtypes and
  shardings (any mesh, any number of processes)."""

  def place(path, leaf):
    name = '/'.join(str(key.key) for key in path)  # as _flat names it
    if name not in arrays:
      return leaf
    value = np.asarray(arrays[name], leaf.dtype)
    return jax.make_array_from_callback(leaf.shape, leaf.sharding, lambda index: value[index])

  return jax.tree_util.tree_map_with_path(place, template)


def init_state(state: TrainState, path: str, train_config, *,
               field: str = 'config.train.init_from', location: Location = MODEL) -> TrainState:
  """`state` (fresh) starting from the variables `load_variables` reads from `path`, with
  train_config.init_from_step and init_from_strict; unchanged when `path` is ''. The
  moving average starts from them too; the optimizer state stays fresh (every optimizer
  here starts from zeros, whatever the parameters)."""
  if not path:
    return state
  loaded = load_variables(state.variables(), path, train_config.init_from_step,
                          strict=train_config.init_from_strict, field=field, location=location)
  variables = _place(state.variables(), loaded.arrays)
  state = state.replace(params=variables['params'],
                        batch_stats=variables.get('batch_stats', state.batch_stats))
  if state.ema_params is not None:
    state = state.replace(ema_params=_place({'params': state.ema_params}, loaded.arrays)['params'])
  return state


def check_init_from_fields(config) -> None:
  """config.train.init_from(_step) and config.gan.init_from, before any data is read;
  what the checkpoints hold is checked when they are read."""
  for field, path in (('config.train.init_from', config.train.init_from),
                      ('config.gan.init_from', config.gan.init_from)):
    if path and not os.path.isdir(path):
      raise InputError(f'{field}={path!r} is not a directory: give a work directory or '
                       'one of its checkpoint step folders (WORKDIR/checkpoints/STEP).')
  if config.train.init_from_step < -1:
    raise InputError(f'config.train.init_from_step={config.train.init_from_step} must be a '
                     'step (>= 0) or -1 for the latest.')
  if config.gan.init_from and not config.gan.discriminator.name:
    raise InputError(f'config.gan.init_from={config.gan.init_from!r} is set, but there is no '
                     "discriminator (config.gan.discriminator.name is ''); leave it empty.")


def ignored_note(config) -> str:
  """What a resumed run says of its init_from fields: '' when none is set."""
  fields = [f'config.{name}.init_from={config[name].init_from!r}' for name in ('train', 'gan')
            if config[name].init_from]
  return (f' ({" and ".join(fields)} ignored: the run resumes from its own checkpoint)'
          if fields else '')
