"""The training loop: every side effect around the pure steps.

config -> data -> model -> loss -> optimizer -> train step -> checkpoints and
metrics. `train_and_evaluate` trains (resuming from the latest checkpoint in
workdir), evaluates every `eval_every_steps` and checkpoints. Evaluation lives
in deblur_jax.evaluation.
"""

import collections
import dataclasses
import functools
import itertools
import os
import time
from typing import Callable, Optional

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions

from deblur_jax import models
from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError, TrainingError
from deblur_jax.core.lookup import lookup
from deblur_jax.data import pipeline, stages
from deblur_jax.evaluation import evaluator
from deblur_jax.parallel import distributed, sharding
from deblur_jax.training import (
  adversary,
  gan_step,
  init_from,
  losses,
  optimizers,
  preemption,
  train_step,
  validation_monitor,
)
from deblur_jax.training.state import TrainState, create_train_state


class TrainingDiverged(TrainingError):
  """Too many non-finite steps in a row."""


def num_train_steps(train_config, steps_per_epoch: int) -> int:
  """config.train.num_train_steps if positive, else num_epochs of steps_per_epoch."""
  if train_config.num_train_steps > 0:
    return train_config.num_train_steps
  steps = round(train_config.num_epochs * steps_per_epoch)
  if steps <= 0:
    raise InputError(f'config.train.num_epochs={train_config.num_epochs} of {steps_per_epoch} '
                     'steps is less than one step; set a positive number of steps.')
  return steps


@dataclasses.dataclass
class LoopState:
  """What the loop checkpoints besides the train state (the 'train' item's extra keys)."""
  early_stopping: validation_monitor.EarlyStopping
  discriminator: Optional[TrainState] = None
  stopped_early: bool = False

  def checkpoint_item(self) -> dict:
    item = {'early_stopping': self.early_stopping.state(),
            'stopped_early': np.asarray(self.stopped_early, np.int64)}
    if self.discriminator is not None:
      item['discriminator'] = gan_step.disc_checkpoint_item(self.discriminator)
    return item

  def from_checkpoint_item(self, item: dict) -> 'LoopState':
    """This state's template filled with a restored `checkpoint_item`."""
    early_stopping = dataclasses.replace(self.early_stopping)
    early_stopping.load(item['early_stopping'])
    disc = self.discriminator
    if disc is not None:
      disc = gan_step.disc_from_checkpoint_item(disc, item['discriminator'])
    return LoopState(early_stopping, disc, bool(int(item['stopped_early'])))


@dataclasses.dataclass
class _Setup:
  """What is built from the config before any training data is read: each builder
  checks its own config section, so a bad field fails in seconds."""
  mesh: jax.sharding.Mesh
  model: object
  stages: tuple[stages.Stage, ...]  # Of the training data (config.data.stages).
  loss_fn: Callable
  make_optimizer: Callable[[int, int], tuple]  # (total steps, steps per epoch) -> (tx, lr)
  plateau: object  # optax reduce_on_plateau, or None.
  early_stopping: validation_monitor.EarlyStopping
  adversary: Optional[adversary.AdversaryPlan]
  evaluator: evaluator.Evaluator


# config.train.transfer_guard: the levels of jax.transfer_guard_device_to_host.
TRANSFER_GUARDS = ('allow', 'log', 'disallow', 'log_explicit', 'disallow_explicit')

# config.train fields that must be positive.
_POSITIVE_TRAIN_FIELDS = ('batch_size', 'log_every_steps', 'eval_every_steps',
                          'checkpoint_every_steps', 'keep_checkpoints', 'max_nonfinite_steps')


def check_train_section(train_config) -> None:
  """The fields of config.train that the loop itself reads (the batch: check_stages)."""
  for name in _POSITIVE_TRAIN_FIELDS:
    if train_config[name] <= 0:
      raise InputError(f'config.train.{name}={train_config[name]} must be positive.')
  if train_config.num_train_steps <= 0 and train_config.num_epochs <= 0:
    raise InputError('Set config.train.num_train_steps or config.train.num_epochs to a '
                     'positive value.')
  lookup(TRANSFER_GUARDS, train_config.transfer_guard, 'config.train.transfer_guard')
  if not 0 <= train_config.ema_decay < 1:
    raise InputError(f'config.train.ema_decay={train_config.ema_decay} must lie in [0, 1) '
                     '(0 = no EMA).')


def check_stages(config, model, mesh) -> tuple[stages.Stage, ...]:
  """The stages of the training data (stages.from_config): each crop a multiple of the
  model's size_multiple, each global batch split evenly over the devices."""
  data_stages = stages.from_config(config.data, config.train.batch_size)
  if config.data.stages and config.train.num_train_steps <= 0:
    raise InputError('config.data.stages count steps: set config.train.num_train_steps '
                     f'(config.train.num_epochs={config.train.num_epochs} is not used with '
                     'stages).')
  for stage in data_stages:
    if stage.crop_size % model.size_multiple:
      raise InputError(f'{stage.crop_field}={stage.crop_size} must be a multiple of '
                       f'{model.size_multiple} for model {config.model.name!r}.')
    sharding.check_batch_divisible(stage.global_batch, mesh, stage.batch_field)
  return data_stages


def _set_up(config, workdir: str, mesh) -> _Setup:
  """Builds everything but the data and the states; the evaluator, which lists the
  test pairs, comes last."""
  check_train_section(config.train)
  model = models.build_model(config.model, models.compute_dtype(config.train.compute_dtype))
  data_stages = check_stages(config, model, mesh)
  loss_fn = losses.build_loss_fn(config.loss)
  make_optimizer = optimizers.optimizer_factory(config.optimizer)
  early_stopping = validation_monitor.build_early_stopping(config.train)
  plateau = validation_monitor.build_plateau(config.train)
  gan = adversary.plan_adversary(config)
  init_from.check_init_from_fields(config)
  os.makedirs(workdir, exist_ok=True)
  eval_setup = evaluator.build_evaluator(config, workdir, mesh, model)
  return _Setup(mesh, model, data_stages, loss_fn, make_optimizer, plateau, early_stopping, gan,
                eval_setup)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint.

  Returns the summary of the last evaluation.
  """
  mesh = sharding.create_mesh()
  distributed.log_topology(mesh)
  setup = _set_up(config, workdir, mesh)
  monitor = config.train.monitor
  manager = checkpoints.create_manager(workdir, config.train.keep_checkpoints, monitor=monitor,
                                       higher_is_better=validation_monitor.MONITORS[monitor])
  try:
    return _train(config, workdir, setup, manager)
  finally:
    manager.close()  # waits for pending asynchronous saves, also after an error


def _plain_step(jitted, state, disc, batch):
  new_state, step_metrics = jitted(state, batch)
  return new_state, disc, step_metrics


def _build_states(config, setup: _Setup, manager, total_steps: int, steps_per_epoch: int):
  """(train state, loop state, step function, start step): initial (from init_from, if
  set) or restored (the run's own checkpoints take precedence)."""
  tx, schedule = setup.make_optimizer(total_steps, steps_per_epoch)
  init_rng, dropout_rng, disc_rng = jax.random.split(jax.random.key(config.seed), 3)
  ema_decay = config.train.ema_decay
  state = create_train_state(init_rng, setup.model, tx, setup.stages[0].crop_size,
                              setup.mesh, ema=ema_decay > 0, plateau=setup.plateau,
                              fsdp=config.train.fsdp,
                              fsdp_min_size=config.train.fsdp_min_size)
  fresh = manager.latest_step() is None
  if fresh:
    state = init_from.init_state(state, config.train.init_from, config.train)
  gan = setup.adversary and adversary.build_adversary(
      setup.adversary, config, setup.mesh, total_steps, steps_per_epoch, disc_rng,
      load_init_from=fresh)
  template = LoopState(setup.early_stopping, gan.state if gan else None)
  state, restored_step, item = checkpoints.restore_train_state(
      manager, state, config.model.to_dict(), config.optimizer.to_dict(),
      template.checkpoint_item())
  if restored_step is not None:
    logging.info('Resumed from the checkpoint at step %d%s.', restored_step,
                 init_from.ignored_note(config))
  step_kwargs = dict(learning_rate_fn=schedule, rng=dropout_rng, ema_decay=ema_decay)
  if gan:
    step_fn = adversary.jit_step(gan, setup.mesh, content_loss_fn=setup.loss_fn,
                                     **step_kwargs)
  else:
    step_fn = functools.partial(_plain_step, train_step.jit_train_step(
        setup.mesh, loss_fn=setup.loss_fn, state_sharding=sharding.current_shardings(state),
        **step_kwargs))
  return state, template.from_checkpoint_item(item), step_fn, restored_step or 0


def _train(config, workdir: str, setup: _Setup, manager) -> dict:
  """Builds the data (of the stage it starts in; later stages' when reached) and the
  states, then runs the steps left to take. Steps per epoch count the first stage's
  batches (with stages, only for logs and per-epoch learning-rate schedules)."""
  start_step = manager.latest_step() or 0
  stages_left = stages.stages_after(setup.stages, start_step)
  train_data, num_train_images = _stage_dataset(config, setup, stages_left[0], start_step)
  steps_per_epoch = optimizers.steps_per_epoch(num_train_images, setup.stages[0].global_batch)
  total_steps = num_train_steps(config.train, steps_per_epoch)
  state, loop_state, step_fn, start_step = _build_states(config, setup, manager, total_steps,
                                                         steps_per_epoch)
  logging.info('Model %s: %d parameters; %d training images, %d steps per epoch, '
               '%d steps in all.', config.model.name,
               models.count_params(state.params), num_train_images,
               steps_per_epoch, total_steps)
  if loop_state.stopped_early:
    logging.info('Training stopped early at step %d (best %s at step %d); nothing to do.',
                 start_step, config.train.monitor, loop_state.early_stopping.best_step)
    return {}
  if start_step >= total_steps:
    logging.info('Training already finished: the latest checkpoint is at step %d of %d. '
                 'Raise config.train.num_train_steps (or num_epochs) to train further.',
                 start_step, total_steps)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start_step == 0:
    writer.write_hparams(flatten(config.to_dict()))
  run = _Run(config, workdir, setup, manager, writer, step_fn, periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.train.log_every_steps))
  batches = itertools.chain(train_data.as_numpy_iterator(),
                            _later_stage_batches(config, setup, stages_left[1:]))
  with metric_writers.ensure_flushes(writer), preemption.PreemptionWatch(manager) as watch:
    return _run_steps(run, state, loop_state, batches, range(start_step + 1, total_steps + 1),
                      watch)


def _stage_dataset(config, setup: _Setup, stage: stages.Stage, start_step: int):
  """(this process's batches of `stage` from step start_step + 1 to its end, the number
  of training images): pipeline.create_train_dataset, logged with stages."""
  if config.data.stages:
    logging.info('Stage %d of %d from step %d: %dx%d crops, global batch %d.', stage.number,
                 len(setup.stages), stage.first_step, stage.crop_size, stage.crop_size,
                 stage.global_batch)
  return pipeline.create_train_dataset(
      config.data, seed=config.seed, start_step=start_step,
      global_batch=config.train.batch_size,  # the stage's batch without config.data.stages
      rows=sharding.process_batch_rows(stage.global_batch, setup.mesh))


def _later_stage_batches(config, setup: _Setup, later_stages):
  """The batches of `later_stages` in turn, each stage's dataset built when reached."""
  for stage in later_stages:
    dataset, _ = _stage_dataset(config, setup, stage, stage.start)
    yield from dataset.as_numpy_iterator()


@dataclasses.dataclass
class _Run:
  """What every step of the loop uses and nothing checkpoints."""
  config: ml_collections.ConfigDict
  workdir: str
  setup: _Setup
  manager: object
  writer: object
  step_fn: Callable  # (state, discriminator, batch) -> (state, discriminator, metrics)
  report_progress: periodic_actions.ReportProgress


class NonFiniteGuard:
  """Counts skipped (non-finite) steps in a row from the 'skipped' flags the steps
  leave on the device, read in one transfer at each log step (`check`), so the
  host never waits for the devices in between; raises TrainingDiverged at the
  limit. A skipped step changes nothing but the step count, so a divergence
  noticed a few steps late loses nothing."""

  def __init__(self, max_in_a_row: int):
    self.max_in_a_row = max_in_a_row
    self.in_a_row = 0

  def check(self, flags: list[tuple[int, float]], last_saved: int, workdir: str) -> None:
    """Takes the (step, skipped) flags of the steps since the last check, in order."""
    for step, skipped in flags:
      if not skipped:
        self.in_a_row = 0
        continue
      self.in_a_row += 1
      logging.warning('Step %d: loss or gradients not finite; update skipped (%d in a row).',
                      step, self.in_a_row)
      if self.in_a_row >= self.max_in_a_row:
        raise TrainingDiverged(
            f'Training stopped at step {step}: the loss or gradients were not finite '
            f'for {self.in_a_row} steps in a row (config.train.max_nonfinite_steps). '
            f'The last good checkpoint (step {last_saved}) is kept in {workdir}. Lower '
            'config.optimizer.learning_rate or set config.optimizer.grad_clip_norm.')


class StepPacer:
  """Lets the host run ahead of the devices by up to `depth` steps, and measures it.

  Dispatching a step returns at once; the host then prepares the next batch
  while the devices compute. Before dispatching a step beyond `depth` queued,
  `pace` waits for the oldest to finish (without copying anything), so that
  batches on the devices do not pile up. Per log window it reports the host's
  own work per step (the input pipeline, the batch transfer and the dispatch),
  the time it waited for the devices, and how many steps were still running when
  it dispatched one (`depth` when the devices are the bottleneck).
  """

  def __init__(self, depth: int = 2):
    self.depth = depth
    self._running = collections.deque()  # a result array of each dispatched step
    self._window = self._empty_window()
    self._mark = time.perf_counter()
    self._dispatched_any = False

  @staticmethod
  def _empty_window() -> dict:
    return {'host_s': 0.0, 'wait_s': 0.0, 'in_flight': 0, 'steps': 0}

  def pace(self, step_output) -> None:
    """Call right after dispatching a step, with one array it returns. The first
    step's dispatch, which compiles it, is not host work per step."""
    dispatched = time.perf_counter()
    if self._dispatched_any:
      self._window['host_s'] += dispatched - self._mark
      self._window['in_flight'] += sum(not x.is_ready() for x in self._running)
      self._window['steps'] += 1
    self._dispatched_any = True
    self._running.append(step_output)
    while len(self._running) > self.depth:
      jax.block_until_ready(self._running.popleft())
    self._mark = time.perf_counter()
    self._window['wait_s'] += self._mark - dispatched

  def resume(self) -> None:
    """Call after work outside the steps (logging, evaluation, checkpoints), so that
    it is not counted as the host's work per step."""
    self._mark = time.perf_counter()

  def window_scalars(self) -> dict:
    """The means of the window since the last call, for train/ scalars."""
    window, steps = self._window, max(self._window['steps'], 1)
    self._window = self._empty_window()
    return {'host_ms_per_step': 1e3 * window['host_s'] / steps,
            'wait_ms_per_step': 1e3 * window['wait_s'] / steps,
            'steps_in_flight': window['in_flight'] / steps}


def mean_metrics(step_metrics: list[dict]) -> dict:
  """The mean of each metric over the steps of one log window."""
  host = jax.device_get(step_metrics)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _run_steps(run: _Run, state, loop_state: LoopState, batches, steps: range, watch) -> dict:
  """Trains `steps`; logs, evaluates and checkpoints on schedule. Returns the last summary.

  Between log steps nothing is copied from the devices: steps are dispatched
  ahead (StepPacer) under config.train.transfer_guard; the host reads the
  metrics and the non-finite flags at log steps, and syncs for evaluations and
  checkpoints.
  """
  train_config = run.config.train
  guard = NonFiniteGuard(train_config.max_nonfinite_steps)
  pacer = StepPacer()
  summary, window, unchecked, last_saved = {}, [], [], steps.start - 1
  for step in steps:
    is_last = step == steps.stop - 1
    with jax.transfer_guard_device_to_host(train_config.transfer_guard):
      batch = sharding.make_global_batch(next(batches), run.setup.mesh)
      state, loop_state.discriminator, metrics_now = run.step_fn(
          state, loop_state.discriminator, batch)
      pacer.pace(metrics_now['loss'])
      window.append(metrics_now)
      unchecked.append((step, metrics_now['skipped']))
      run.report_progress(step)
      preempted = watch.reached(step)
    should_log = step % train_config.log_every_steps == 0 or is_last
    should_eval = step % train_config.eval_every_steps == 0 or is_last
    should_save = step % train_config.checkpoint_every_steps == 0 or should_eval or preempted
    if should_log or should_save:  # a diverged run must not evaluate or save
      guard.check(jax.device_get(unchecked), last_saved, run.workdir)
      unchecked = []
    if should_log:
      scalars = {**mean_metrics(window), **pacer.window_scalars()}
      run.writer.write_scalars(step, {f'train/{k}': v for k, v in scalars.items()})
      window = []
    eval_metrics = None
    if should_eval:
      with run.report_progress.timed('eval'):
        state, summary, eval_metrics = _evaluate(run, step, state, loop_state, is_last)
    if should_save:
      with run.report_progress.timed('checkpoint'):
        checkpoints.save(run.manager, step, state, run.config.to_dict(), eval_metrics,
                         loop_state.checkpoint_item())
      last_saved = step
    pacer.resume()
    if loop_state.stopped_early:
      _log_early_stop(train_config, step, loop_state.early_stopping)
      break
    if preempted:
      logging.info('Preempted: saved the checkpoint at step %d; run again to resume.', step)
      break
  return summary


def _evaluate(run: _Run, step: int, state, loop_state: LoopState, is_last: bool):
  """Evaluates, then steps the plateau and early stopping (restoring the best weights
  when it stops). Returns (state, summary, the monitored metric to rank the checkpoint)."""
  train_config, monitor = run.config.train, run.config.train.monitor
  summary = evaluator.evaluate_and_log(run.setup.evaluator, run.writer, step, state,
                                           train_config.num_image_summaries)
  value = validation_monitor.lower_is_better(summary, monitor)
  if run.setup.plateau is not None:
    state = state.replace(plateau=validation_monitor.update_plateau(
        run.setup.plateau, state.plateau, value))
    run.writer.write_scalars(step, {'train/plateau_scale': float(state.plateau.scale)})
  early_stopping = loop_state.early_stopping
  loop_state.stopped_early = early_stopping.update(step, value) and not is_last
  eval_metrics = {monitor: summary[monitor]}
  if (loop_state.stopped_early and train_config.early_stop_restore_best
      and early_stopping.best_step != step):
    state = _with_model_of_step(run.manager, state, run.config, early_stopping.best_step)
    eval_metrics = {monitor: validation_monitor.from_lower_is_better(early_stopping.best,
                                                                     monitor)}
  return state, summary, eval_metrics


def _log_early_stop(train_config, step: int, early_stopping) -> None:
  logging.info('Early stopping at step %d: no %s improvement larger than %g in %d '
               'evaluations; best at step %d%s.', step, train_config.monitor,
               train_config.early_stop_min_delta, early_stopping.wait, early_stopping.best_step,
               ' (its weights are the final checkpoint)'
               if train_config.early_stop_restore_best else '')


def _with_model_of_step(manager, state, config, step: int):
  """`state` with the model variables (and moving average) of the checkpoint at `step`."""
  manager.wait_until_finished()
  variables, _ = checkpoints.restore_model_variables(
      manager, state.variables(), config.model.to_dict(), step)
  state = state.replace(params=variables['params'],
                        batch_stats=variables.get('batch_stats', state.batch_stats))
  if state.ema_params is not None:
    ema, _ = checkpoints.restore_model_variables(
        manager, state.variables(params=state.ema_params), config.model.to_dict(), step, ema=True)
    state = state.replace(ema_params=ema['params'])
  return state


def flatten(tree: dict, prefix: str = '') -> dict:
  """A nested dict as one level with dotted keys (for the hyperparameter summary)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat
