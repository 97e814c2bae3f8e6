"""The training and evaluation loops: every side effect around the pure steps.

config -> data -> model -> loss -> optimizer -> train step -> checkpoints and
metrics. `train_and_evaluate` trains (resuming from the latest checkpoint in
workdir), evaluates every `eval_every_steps` and checkpoints;
`evaluate_checkpoint` evaluates a saved model and writes per-image results.
"""

import csv
import dataclasses
import json
import os
import statistics

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions

from deblur_jax import models
from deblur_jax.data import pipeline
from deblur_jax.errors import InputError, TrainingError
from deblur_jax.evaluation import metrics
from deblur_jax.parallel import sharding
from deblur_jax.training import (
  checkpoints,
  gan_step,
  losses,
  optimizers,
  preemption,
  train_step,
  validation_monitor,
)

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
PER_IMAGE_METRICS = ('psnr', 'ssim', 'mse', 'input_psnr', 'input_ssim')


def _compute_dtype(name: str):
  if name not in COMPUTE_DTYPES:
    raise InputError(f'Unknown config.train.compute_dtype {name!r}; choose one of '
                     f'{sorted(COMPUTE_DTYPES)}.')
  return COMPUTE_DTYPES[name]


def num_train_steps(train_config, steps_per_epoch: int) -> int:
  """config.train.num_train_steps if positive, else num_epochs of steps_per_epoch."""
  if train_config.num_train_steps > 0:
    return train_config.num_train_steps
  steps = round(train_config.num_epochs * steps_per_epoch)
  if steps <= 0:
    raise InputError('Set config.train.num_train_steps or config.train.num_epochs to a '
                     'positive value.')
  return steps


def _check_positive(config, fields):
  for field in fields:
    section, name = field.split('.')
    if config[section][name] <= 0:
      raise InputError(f'config.{field}={config[section][name]} must be positive.')


def _log_topology(mesh):
  logging.info('Process %d of %d; %d local devices, %d global devices (%s); mesh %s.',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count(), jax.devices()[0].platform, dict(mesh.shape))


# ----------------------------------------------------------------------------
# Evaluation.


@dataclasses.dataclass
class EvalResult:
  rows: list[dict]  # One per image: name, group, and PER_IMAGE_METRICS.
  images: list[tuple[str, np.ndarray]]  # (name, blurred | restored | sharp) for summaries.

  def summary(self) -> dict:
    """Means over all images and per group (GoPro sequence, demo blur)."""
    def means(rows):
      return {k: statistics.fmean(r[k] for r in rows) for k in PER_IMAGE_METRICS}
    out = {'num_images': len(self.rows), **means(self.rows)}
    groups = sorted({r['group'] for r in self.rows if r['group']})
    if groups:
      out['groups'] = {g: means([r for r in self.rows if r['group'] == g]) for g in groups}
    return out


def _local_rows(global_array) -> np.ndarray:
  """This process's rows of a batch-sharded array, in batch order."""
  shards = sorted(global_array.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


def run_evaluation(eval_fn, variables, chunks, mesh, *, rows: range, num_images: int,
                   read_pairs=pipeline.read_pair_files) -> EvalResult:
  """Evaluates every planned image once; keeps `num_images` grids of this process's rows."""
  results, images = [], []
  for chunk, local in pipeline.eval_batches(chunks, rows, read_pairs):
    outputs = eval_fn(variables, sharding.make_global_batch(local, mesh))
    per_image = jax.device_get({k: outputs[k] for k in PER_IMAGE_METRICS})
    for j, pair in enumerate(chunk.pairs[:chunk.num_valid]):
      results.append({'name': pair.name, 'group': pair.group,
                      **{k: float(per_image[k][j]) for k in PER_IMAGE_METRICS}})
    if len(images) < num_images:
      restored = _local_rows(outputs['restored'])
      for j, row in enumerate(rows):
        if row < chunk.num_valid and len(images) < num_images:
          grid = np.concatenate([local['blur'][j], restored[j], local['sharp'][j]], axis=1)
          images.append((chunk.pairs[row].name, np.clip(grid, 0.0, 1.0)))
  return EvalResult(results, images)


def _write_eval_summaries(writer, step: int, result: EvalResult) -> dict:
  summary = result.summary()
  scalars = {f'eval/{k}': summary[k] for k in PER_IMAGE_METRICS}
  scalars['eval/psnr_gain'] = summary['psnr'] - summary['input_psnr']
  for group, values in summary.get('groups', {}).items():
    scalars[f'eval/{group}/psnr'] = values['psnr']
    scalars[f'eval/{group}/input_psnr'] = values['input_psnr']
  writer.write_scalars(step, scalars)
  if result.images:
    writer.write_images(step, {f'eval/{name}': grid[None] for name, grid in result.images})
  return summary


# ----------------------------------------------------------------------------
# Training.


@dataclasses.dataclass
class _Run:
  """What both the training and the evaluation entry points build from the config."""
  mesh: jax.sharding.Mesh
  model: object
  eval_fn: object
  eval_chunks: list
  eval_rows: range  # This process's rows of each evaluation batch.
  read_eval_pairs: object  # Reads a list of pairs as a dataset.


def _setup(config, workdir: str) -> _Run:
  mesh = sharding.create_mesh()
  _log_topology(mesh)
  model = models.build_model(config.model, _compute_dtype(config.train.compute_dtype))
  eval_global = config.eval.batch_size_per_device * mesh.devices.size
  sharding.local_batch_size(eval_global, mesh, 'config.eval.batch_size_per_device x devices')
  pairs, read_pairs = pipeline.find_eval_pairs(config.data, workdir,
                                                     min_size=metrics.ssim_window())
  chunks = pipeline.plan_eval_batches(pairs, eval_global)
  eval_fn = train_step.jit_eval_step(mesh, apply_fn=model.apply,
                                     size_multiple=model.size_multiple)
  return _Run(mesh, model, eval_fn, chunks, sharding.process_batch_rows(eval_global, mesh),
              read_pairs)


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _mean_metrics(step_metrics: list[dict]) -> dict:
  host = jax.device_get(step_metrics)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Returns the summary of the last evaluation.
  """
  _check_positive(config, ('train.batch_size', 'train.log_every_steps',
                           'train.eval_every_steps', 'train.checkpoint_every_steps'))
  monitor = validation_monitor.check_monitor(config.train.monitor)
  os.makedirs(workdir, exist_ok=True)
  run = _setup(config, workdir)
  multiple = run.model.size_multiple
  if config.data.crop_size % multiple:
    raise InputError(f'config.data.crop_size={config.data.crop_size} must be a multiple of '
                     f'{multiple} for model {config.model.name!r}.')
  sharding.local_batch_size(config.train.batch_size, run.mesh, 'config.train.batch_size')

  manager = checkpoints.create_manager(workdir, config.train.keep_checkpoints,
                                         monitor=monitor,
                                         higher_is_better=validation_monitor.MONITORS[monitor])
  try:
    return _train(config, workdir, run, manager)
  finally:
    manager.close()  # waits for pending asynchronous saves, also after an error


class TrainingDiverged(TrainingError):
  """Too many non-finite steps in a row."""


@dataclasses.dataclass
class _Adversary:
  """The discriminator's state and what the GAN step needs to know."""
  state: train_step.TrainState
  step_kwargs: dict


def _build_adversary(config, mesh, crop: int, total_steps: int, steps_per_epoch: int, rng):
  """The discriminator and its optimizer for config.gan, or None without one."""
  if not config.gan.discriminator.name:
    return None
  if not getattr(models.get_model_class(config.model.name), 'supports_adversarial', False):
    raise InputError(f'config.gan.discriminator.name={config.gan.discriminator.name!r} is set, '
                     f'but config.model.name={config.model.name!r} is not a GAN generator; '
                     f'adversarial training takes one of {models.adversarial_generators()}. '
                     "Set --config.gan.discriminator.name='' to train without a discriminator.")
  if config.train.fsdp:
    raise InputError('config.train.fsdp=True is not supported with a discriminator '
                     '(config.gan.discriminator.name); GAN models are small enough to replicate.')
  if config.gan.critic_steps < 1:
    raise InputError(f'config.gan.critic_steps={config.gan.critic_steps} must be at least 1.')
  losses.get_adversarial_losses(config.gan.loss)  # checks the name
  discriminator = models.build_discriminator(config.gan.discriminator,
                                             _compute_dtype(config.train.compute_dtype))
  tx, _ = optimizers.build_optimizer(config.gan.optimizer, total_steps, steps_per_epoch)
  state = train_step.create_train_state(rng, discriminator, tx, crop, mesh)
  return _Adversary(state, dict(adversarial_loss=config.gan.loss,
                                adversarial_weight=config.gan.weight,
                                critic_steps=config.gan.critic_steps,
                                gradient_penalty_weight=config.gan.gradient_penalty_weight))


def _train(config, workdir: str, run: _Run, manager) -> dict:
  """The training loop of `train_and_evaluate`, checkpointing through `manager`."""
  mesh, model = run.mesh, run.model
  crop = config.data.crop_size
  global_batch = config.train.batch_size
  start_step = manager.latest_step() or 0
  train_data, num_train_images = pipeline.create_train_dataset(
      config.data, seed=config.seed, global_batch=global_batch,
      rows=sharding.process_batch_rows(global_batch, mesh), start_step=start_step)
  steps_per_epoch = optimizers.steps_per_epoch(num_train_images, global_batch)
  total_steps = num_train_steps(config.train, steps_per_epoch)
  tx, schedule = optimizers.build_optimizer(config.optimizer, total_steps, steps_per_epoch)
  loss_fn = losses.build_loss_fn(config.loss)
  plateau = validation_monitor.build_plateau(config.train)
  ema_decay = config.train.ema_decay
  if not 0 <= ema_decay < 1:
    raise InputError(f'config.train.ema_decay={ema_decay} must lie in [0, 1) (0 = no EMA).')
  monitor = config.train.monitor
  early_stopping = validation_monitor.EarlyStopping(config.train.early_stop_patience,
                                           config.train.early_stop_min_delta)

  init_rng, dropout_rng, disc_rng = jax.random.split(jax.random.key(config.seed), 3)
  state = train_step.create_train_state(init_rng, model, tx, crop, mesh, ema=ema_decay > 0,
                                        plateau=plateau, fsdp=config.train.fsdp)
  adversary = _build_adversary(config, mesh, crop, total_steps, steps_per_epoch, disc_rng)
  loop_template = {'early_stopping': early_stopping.state(),
                   'stopped_early': np.asarray(0, np.int64)}
  if adversary:
    loop_template['discriminator'] = gan_step.disc_checkpoint_item(adversary.state)
  state, restored_step, loop_state = checkpoints.restore_train_state(
      manager, state, config.model.to_dict(), config.optimizer.to_dict(), loop_template)
  early_stopping.load(loop_state['early_stopping'])
  disc_state = None
  if adversary:
    disc_state = gan_step.disc_from_checkpoint_item(adversary.state, loop_state['discriminator'])
  if restored_step is not None:
    logging.info('Resumed from the checkpoint at step %d.', restored_step)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info('Model %s: %d parameters; %d training images, %d steps per epoch, '
               '%d steps in all.', config.model.name, num_params, num_train_images,
               steps_per_epoch, total_steps)

  config_dict = config.to_dict()
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(_flatten(config_dict))
  if adversary:
    gan_fn = gan_step.jit_gan_train_step(
        mesh, content_loss_fn=loss_fn, learning_rate_fn=schedule, rng=dropout_rng,
        ema_decay=ema_decay, **adversary.step_kwargs)
  else:
    plain_fn = train_step.jit_train_step(mesh, loss_fn=loss_fn, learning_rate_fn=schedule,
                                         rng=dropout_rng, ema_decay=ema_decay,
                                         state_sharding=train_step.state_shardings(state))
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.train.log_every_steps)

  def step_fn(state, disc_state, batch):
    if adversary:
      return gan_fn(state, disc_state, batch)
    new_state, step_metrics = plain_fn(state, batch)
    return new_state, disc_state, step_metrics

  def save(step, state, eval_metrics=None, stopped_early=False):
    loop = {'early_stopping': early_stopping.state(),
            'stopped_early': np.asarray(stopped_early, np.int64)}
    if adversary:
      loop['discriminator'] = gan_step.disc_checkpoint_item(disc_state)
    checkpoints.save(manager, step, state, config_dict, eval_metrics, loop)

  if int(loop_state['stopped_early']):
    logging.info('Training stopped early at step %d (best %s at step %d); nothing to do.',
                 start_step, monitor, early_stopping.best_step)
    return {}
  if start_step >= total_steps:
    logging.info('Training already finished: the latest checkpoint is at step %d of %d. '
                 'Raise config.train.num_train_steps (or num_epochs) to train further.',
                 start_step, total_steps)
  summary = {}
  step_metrics = []
  skipped_in_a_row = 0
  previous_skipped = None  # The last step's 'skipped' flag, read one step late.
  last_saved = start_step
  batches = train_data.as_numpy_iterator()
  with metric_writers.ensure_flushes(writer), preemption.PreemptionWatch(manager) as watch:
    for step in range(start_step + 1, total_steps + 1):
      state, disc_state, metrics_now = step_fn(
          state, disc_state, sharding.make_global_batch(next(batches), mesh))
      # Read the previous step's flag, so the host does not wait for this one.
      if previous_skipped is not None and float(previous_skipped):
        skipped_in_a_row += 1
        logging.warning('Step %d: loss or gradients not finite; update skipped (%d in a row).',
                        step - 1, skipped_in_a_row)
        if skipped_in_a_row >= config.train.max_nonfinite_steps:
          raise TrainingDiverged(
              f'Training stopped at step {step - 1}: the loss or gradients were not finite '
              f'for {skipped_in_a_row} steps in a row (config.train.max_nonfinite_steps). '
              f'The last good checkpoint (step {last_saved}) is kept in {workdir}. Lower '
              'config.optimizer.learning_rate or set config.optimizer.grad_clip_norm.')
      else:
        skipped_in_a_row = 0
      previous_skipped = metrics_now['skipped']
      step_metrics.append(metrics_now)
      report_progress(step)
      is_last = step == total_steps
      if step % config.train.log_every_steps == 0 or is_last:
        averaged = _mean_metrics(step_metrics)
        step_metrics = []
        writer.write_scalars(step, {f'train/{k}': v for k, v in averaged.items()})
      eval_summary = None
      stop_early = False
      if step % config.train.eval_every_steps == 0 or is_last:
        with report_progress.timed('eval'):
          summary = _evaluate_and_log(config, run, writer, step, state)
        eval_summary = {monitor: summary[monitor]}
        value = validation_monitor.lower_is_better(summary, monitor)
        if plateau is not None:
          state = state.replace(
              plateau=validation_monitor.update_plateau(plateau, state.plateau, value))
          writer.write_scalars(step, {'train/plateau_scale': float(state.plateau.scale)})
        stop_early = early_stopping.update(step, value) and not is_last
        restore_best = stop_early and config.train.early_stop_restore_best
        if restore_best and early_stopping.best_step != step:
          state = _with_model_of_step(manager, state, config, early_stopping.best_step)
          eval_summary = {
              monitor: validation_monitor.from_lower_is_better(early_stopping.best, monitor)}
      preempted = watch.reached(step)
      if (step % config.train.checkpoint_every_steps == 0 or eval_summary is not None
          or preempted):
        with report_progress.timed('checkpoint'):
          save(step, state, eval_summary, stopped_early=stop_early)
        last_saved = step
      if stop_early:
        logging.info('Early stopping at step %d: no %s improvement larger than %g in %d '
                     'evaluations; best at step %d%s.', step, monitor,
                     config.train.early_stop_min_delta, early_stopping.wait,
                     early_stopping.best_step,
                     ' (its weights are the final checkpoint)'
                     if config.train.early_stop_restore_best else '')
        break
      if preempted:
        logging.info('Preempted: saved the checkpoint at step %d; run again to resume.', step)
        break
  return summary


def _evaluate_and_log(config, run: _Run, writer, step: int, state) -> dict:
  """Evaluates the trained (and moving-average) weights; returns the trained ones' summary."""
  result = run_evaluation(run.eval_fn, state.variables(), run.eval_chunks, run.mesh,
                          rows=run.eval_rows, num_images=config.train.num_image_summaries,
                          read_pairs=run.read_eval_pairs)
  summary = _write_eval_summaries(writer, step, result)
  logging.info('Step %d eval: PSNR %.2f dB (input %.2f), SSIM %.4f (input %.4f) on %d '
               'images.', step, summary['psnr'], summary['input_psnr'], summary['ssim'],
               summary['input_ssim'], summary['num_images'])
  if state.ema_params is not None:
    ema = run_evaluation(run.eval_fn, state.variables(params=state.ema_params),
                         run.eval_chunks, run.mesh, rows=run.eval_rows, num_images=0,
                         read_pairs=run.read_eval_pairs).summary()
    writer.write_scalars(step, {f'eval_ema/{k}': ema[k] for k in PER_IMAGE_METRICS})
    logging.info('Step %d eval of the moving average: PSNR %.2f dB, SSIM %.4f.', step,
                 ema['psnr'], ema['ssim'])
  return summary


def _with_model_of_step(manager, state, config, step: int):
  """`state` with the model variables of the checkpoint at `step`."""
  manager.wait_until_finished()
  variables, _ = checkpoints.restore_model_variables(
      manager, state.variables(), config.model.to_dict(), step)
  return state.replace(params=variables['params'],
                       batch_stats=variables.get('batch_stats', state.batch_stats))


# ----------------------------------------------------------------------------
# Evaluation of a saved checkpoint.


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the checkpoint at config.eval.checkpoint_step (-1: latest) in `workdir`.

  Writes workdir/eval/step_N.csv (one row per image: name, PSNR, SSIM and the
  blurred input's PSNR and SSIM) and workdir/eval/step_N.json (the means,
  overall and per group). Returns the summary.
  """
  run = _setup(config, workdir)
  manager = checkpoints.create_manager(workdir, keep=1, read_only=True)
  template = jax.eval_shape(
      lambda: run.model.init({'params': jax.random.key(0), 'dropout': jax.random.key(0)},
                             jnp.zeros((1, 16, 16, 3)), train=False))
  template = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding.replicated(run.mesh)),
      template)
  variables, step = checkpoints.restore_model_variables(
      manager, template, config.model.to_dict(), config.eval.checkpoint_step,
      ema=config.eval.ema)
  manager.close()
  logging.info('Evaluating the checkpoint at step %d on %d batches.', step,
               len(run.eval_chunks))
  result = run_evaluation(run.eval_fn, variables, run.eval_chunks, run.mesh,
                          rows=run.eval_rows, num_images=0, read_pairs=run.read_eval_pairs)
  summary = {'step': step, **result.summary()}
  if jax.process_index() == 0:
    out_dir = os.path.join(workdir, 'eval')
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f'step_{step}')
    with open(base + '.csv', 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=['name', *PER_IMAGE_METRICS])
      writer.writeheader()
      for row in sorted(result.rows, key=lambda r: r['name']):
        writer.writerow({'name': row['name'], **{k: f'{row[k]:.6f}' for k in PER_IMAGE_METRICS}})
    with open(base + '.json', 'w') as f:
      json.dump(summary, f, indent=2)
    logging.info('Wrote %s.csv and %s.json: PSNR %.3f dB (input %.3f), SSIM %.4f.', base, base,
                 summary['psnr'], summary['input_psnr'], summary['ssim'])
  return summary
