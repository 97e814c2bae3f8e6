"""Orbax checkpoints of the train state, with the config saved beside each one.

Saves are asynchronous and atomic (Orbax writes a temporary folder and renames
it when complete), so a crash mid-save leaves the previous checkpoints intact
and the next start ignores and removes the partial one. Kept: the latest
`keep` checkpoints plus the one with the best evaluation PSNR.
"""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from deblur_jax.errors import InputError

BEST_METRIC = 'psnr'  # Higher is better.


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def create_manager(workdir: str, keep: int, read_only: bool = False) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints`: latest `keep` plus best by eval PSNR."""
  if keep < 1:
    raise InputError(f'config.train.keep_checkpoints={keep} must be at least 1.')
  policy = preservation_policy.AnyPreservationPolicy([
      preservation_policy.LatestN(n=keep),
      preservation_policy.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=False, n=1,
                                keep_checkpoints_without_metrics=False),
  ])
  # best_fn makes Orbax write each checkpoint's metrics to disk, so the best one
  # is still known (and kept) after a restart.
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=lambda m: m[BEST_METRIC], best_mode='max',
      cleanup_tmp_directories=not read_only, read_only=read_only, create=not read_only)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, config_dict: dict,
         eval_metrics: Optional[dict] = None) -> None:
  """Starts an asynchronous save at `step` of three items: 'model' (the model
  variables), 'train' (step and optimizer state) and 'config'."""
  args = ocp.args.Composite(
      model=ocp.args.StandardSave(state.variables()),
      train=ocp.args.StandardSave({'step': state.step, 'opt_state': state.opt_state}),
      config=ocp.args.JsonSave(config_dict))
  metrics = None if eval_metrics is None else {BEST_METRIC: float(eval_metrics[BEST_METRIC])}
  manager.save(step, args=args, metrics=metrics, force=True)


def save_model(manager: ocp.CheckpointManager, step: int, variables: dict,
               config_dict: dict) -> None:
  """Starts an asynchronous save at `step` of 'model' and 'config' only: weights
  made elsewhere (converted official weights), which evaluation restores but
  training cannot resume from (there is no 'train' item)."""
  args = ocp.args.Composite(model=ocp.args.StandardSave(variables),
                            config=ocp.args.JsonSave(config_dict))
  manager.save(step, args=args, force=True)


def _config_mismatches(saved: dict, current: dict, prefix: str) -> list[str]:
  diffs = []
  for key in sorted(set(saved) | set(current)):
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
                        model_config: dict, optimizer_config: dict):
  """Restores the latest checkpoint onto `state_template`'s structure and shardings.

  Returns (state, step), or (state_template, None) when there is no checkpoint.
  A checkpoint of another model (any difference in config.model) or with an
  optimizer state of another shape is an error that names the differing fields.
  """
  step = manager.latest_step()
  if step is None:
    return state_template, None
  if not os.path.isdir(os.path.join(str(manager.directory), str(step), 'train')):
    raise InputError(f'The checkpoint at {manager.directory}/{step} holds model weights only '
                     '(converted official weights, say), no optimizer state to resume training '
                     'from: train in another --workdir.')
  _check_compatible(manager, step, model_config, optimizer_config)
  train_template = {'step': state_template.step, 'opt_state': state_template.opt_state}
  restored = manager.restore(step, args=ocp.args.Composite(
      model=ocp.args.StandardRestore(_abstract(state_template.variables())),
      train=ocp.args.StandardRestore(_abstract(train_template))))
  variables, train = restored['model'], restored['train']
  state = state_template.replace(step=train['step'], opt_state=train['opt_state'],
                                 params=variables['params'],
                                 batch_stats=variables.get('batch_stats', {}))
  return state, step


def restore_model_variables(manager: ocp.CheckpointManager, variables_template: dict,
                            model_config: dict, step: Optional[int] = None):
  """(model variables, step) of the checkpoint at `step` (default: latest)."""
  _, step = read_config(manager, step)
  _check_compatible(manager, step, model_config)
  restored = manager.restore(step, args=ocp.args.Composite(
      model=ocp.args.StandardRestore(_abstract(variables_template))))
  return restored['model'], step
