"""Orbax checkpoints of the train state, with the config saved beside each one.

Saves are asynchronous and atomic (Orbax writes a temporary folder and renames
it when complete), so a crash mid-save leaves the previous checkpoints intact
and the next start ignores and removes the partial one. Kept: the latest
`keep` checkpoints plus the one with the best monitored evaluation metric.
"""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from deblur_jax.core.errors import InputError


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def create_manager(workdir: str, keep: int, read_only: bool = False,
                   monitor: str = 'psnr', higher_is_better: bool = True
                   ) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints`: latest `keep` plus the best by the
  evaluation metric `monitor`."""
  if keep < 1:
    raise InputError(f'config.train.keep_checkpoints={keep} must be at least 1.')
  policy = preservation_policy.AnyPreservationPolicy([
      preservation_policy.LatestN(n=keep),
      preservation_policy.BestN(get_metric_fn=lambda m: m[monitor],
                                reverse=not higher_is_better, n=1,
                                keep_checkpoints_without_metrics=False),
  ])
  # best_fn makes Orbax write each checkpoint's metrics to disk, so the best one
  # is still known (and kept) after a restart.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=lambda m: m[monitor],
      best_mode='max' if higher_is_better else 'min',
      cleanup_tmp_directories=not read_only, read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def _train_item(state: Any, loop_state: dict) -> dict:
  """What resuming needs besides the model: step, optimizer and plateau state,
  and the loop's own state (early-stopping counters, a discriminator, ...)."""
  item = {'step': state.step, 'opt_state': state.opt_state, **loop_state}
  if state.plateau is not None:
    item['plateau'] = state.plateau
  return item


def _ema_variables(state: Any) -> dict:
  return state.variables(params=state.ema_params)


def save(manager: ocp.CheckpointManager, step: int, state: Any, config_dict: dict,
         eval_metrics: Optional[dict] = None, loop_state: Optional[dict] = None) -> None:
  """Starts an asynchronous save at `step` of the items 'model' (the model
  variables), 'train' (see `_train_item`), 'config', and 'ema' (the averaged
  variables) when the state keeps an EMA. `eval_metrics` ({name: value}) rank
  the checkpoint for the best-checkpoint policy."""
  items = dict(model=ocp.args.StandardSave(state.variables()),
               train=ocp.args.StandardSave(_train_item(state, loop_state or {})),
               config=ocp.args.JsonSave(config_dict))
  if state.ema_params is not None:
    items['ema'] = ocp.args.StandardSave(_ema_variables(state))
  metrics = None if eval_metrics is None else {k: float(v) for k, v in eval_metrics.items()}
  manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)


def save_model(manager: ocp.CheckpointManager, step: int, variables: dict,
               config_dict: dict) -> None:
  """Starts an asynchronous save at `step` of 'model' and 'config' only: weights
  made elsewhere (converted official weights), which evaluation restores but
  training cannot resume from (there is no 'train' item)."""
  args = ocp.args.Composite(model=ocp.args.StandardSave(variables),
                            config=ocp.args.JsonSave(config_dict))
  manager.save(step, args=args, force=True)


# config.model fields that change how a model computes, not its parameters.
_COMPUTE_ONLY_FIELDS = ('remat', 'tlc_train_size')


def _config_mismatches(saved: dict, current: dict, prefix: str) -> list[str]:
  diffs = []
  for key in sorted(set(saved) | set(current)):
    if prefix == 'config.model' and key in _COMPUTE_ONLY_FIELDS:
      continue
    a, b = saved.get(key, '<absent>'), current.get(key, '<absent>')
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += _config_mismatches(a, b, f'{prefix}.{key}')
    elif a != b and not (isinstance(a, list) and tuple(a) == b):
      diffs.append(f'{prefix}.{key}: checkpoint has {a!r}, config has {b!r}')
  return diffs


def _resolve_step(manager: ocp.CheckpointManager, step: Optional[int]) -> Optional[int]:
  if step is None or step < 0:
    return manager.latest_step()
  if step not in manager.all_steps():
    raise InputError(f'No checkpoint at step {step} in {manager.directory}; it has steps '
                     f'{list(manager.all_steps())}.')
  return step


def _optimizer_structure(opt_config: dict) -> dict:
  """The config.optimizer fields that decide the shape of the optimizer state."""
  return {'name': opt_config.get('name'),
          'grad_clip_norm > 0': opt_config.get('grad_clip_norm', 0) > 0,
          'weight_decay > 0': opt_config.get('weight_decay', 0) > 0}


def read_config(manager: ocp.CheckpointManager, step: Optional[int] = None) -> tuple[dict, int]:
  """(the config saved with the checkpoint at `step` (default: latest), its step)."""
  resolved = _resolve_step(manager, step)
  if resolved is None:
    raise InputError(f'No checkpoint in {manager.directory}: train first, or point --workdir '
                     'at a directory with checkpoints.')
  config = manager.restore(resolved, args=ocp.args.Composite(
      config=ocp.args.JsonRestore()))['config']
  return config, resolved


def _check_compatible(manager: ocp.CheckpointManager, step: int, model_config: dict,
                      optimizer_config: Optional[dict] = None) -> None:
  """Refuses a checkpoint written for another model (or optimizer state shape),
  naming the fields that differ."""
  saved, _ = read_config(manager, step)
  diffs = _config_mismatches(saved.get('model', {}), dict(model_config), 'config.model')
  if optimizer_config is not None:
    diffs += _config_mismatches(_optimizer_structure(saved.get('optimizer', {})),
                                _optimizer_structure(optimizer_config), 'config.optimizer')
  if diffs:
    raise InputError(f'The checkpoint at {manager.directory}/{step} was written for another '
                     'model or optimizer: ' + '; '.join(diffs) + '. Use the config it was '
                     'trained with or another --workdir.')


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore_train_state(manager: ocp.CheckpointManager, state_template: Any,
                        model_config: dict, optimizer_config: dict,
                        loop_template: Optional[dict] = None):
  """Restores the latest checkpoint onto `state_template`'s structure and shardings.

  Returns (state, step, loop state), or (state_template, None, loop_template)
  when there is no checkpoint. A checkpoint of another model (any difference
  in config.model) or with an optimizer state of another shape is an error
  that names the differing fields.
  """
  loop_template = loop_template or {}
  step = manager.latest_step()
  if step is None:
    return state_template, None, loop_template
  if not os.path.isdir(os.path.join(str(manager.directory), str(step), 'train')):
    raise InputError(f'The checkpoint at {manager.directory}/{step} holds model weights only '
                     '(converted official weights, say), no optimizer state to resume training '
                     'from: to fine-tune from them, train in another --workdir with '
                     f'--config.train.init_from={manager.directory}/{step}.')
  _check_compatible(manager, step, model_config, optimizer_config)
  items = dict(model=ocp.args.StandardRestore(_abstract(state_template.variables())),
               train=ocp.args.StandardRestore(_abstract(_train_item(state_template,
                                                                    loop_template))))
  if state_template.ema_params is not None:
    items['ema'] = ocp.args.StandardRestore(_abstract(_ema_variables(state_template)))
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except (KeyError, ValueError, FileNotFoundError) as e:
    raise InputError(f'The checkpoint at {manager.directory}/{step} does not hold the state '
                     'this config trains (EMA, plateau, discriminator or optimizer settings '
                     f'differ: {" ".join(str(e).split())[:300]}). Use the config it was trained '
                     'with or another --workdir.') from None
  variables, train = restored['model'], restored['train']
  state = state_template.replace(step=train['step'], opt_state=train['opt_state'],
                                 params=variables['params'],
                                 batch_stats=variables.get('batch_stats', {}),
                                 plateau=train.get('plateau'))
  if 'ema' in restored:
    state = state.replace(ema_params=restored['ema']['params'])
  loop_state = {k: train[k] for k in loop_template}
  return state, step, loop_state


def restore_model_variables(manager: ocp.CheckpointManager, variables_template: dict,
                            model_config: dict, step: Optional[int] = None,
                            ema: bool = False):
  """(model variables, step) of the checkpoint at `step` (default: latest): the
  trained ones, or their moving average when `ema`."""
  _, step = read_config(manager, step)
  _check_compatible(manager, step, model_config)
  item = 'ema' if ema else 'model'
  if not os.path.isdir(os.path.join(str(manager.directory), str(step), item)):
    raise InputError(f'The checkpoint at {manager.directory}/{step} has no {item!r} item: it '
                     'was trained without config.train.ema_decay; evaluate its raw weights.')
  restored = manager.restore(step, args=ocp.args.Composite(
      **{item: ocp.args.StandardRestore(_abstract(variables_template))}))
  return restored[item], step

def checkpoint_location(workdir, checkpoint, step):
  """(workdir whose checkpoints/ holds the checkpoint, step or None for the latest)."""
  if bool(workdir) == bool(checkpoint):
    raise InputError('Give exactly one of --workdir and --checkpoint.')
  if workdir:
    return workdir, step
  path = os.path.abspath(checkpoint.rstrip('/'))
  name = os.path.basename(path)
  if not name.isdigit() or os.path.basename(os.path.dirname(path)) != 'checkpoints':
    raise InputError(f'--checkpoint={checkpoint!r} is not a checkpoint step directory '
                     '(WORKDIR/checkpoints/STEP).')
  return os.path.dirname(os.path.dirname(path)), int(name)
