"""Evaluation on the test pairs of config.data: during training, and of a saved checkpoint.

`evaluate_checkpoint` evaluates a saved model and writes per-image results;
the training loop builds an `Evaluator` once and calls `evaluate_and_log`.
"""

import dataclasses
import os

import jax
import ml_collections
import numpy as np
from absl import logging

from deblur_jax import models
from deblur_jax.data import pipeline
from deblur_jax.evaluation import eval_step, protocols, results
from deblur_jax.evaluation.eval_step import PER_IMAGE_METRICS
from deblur_jax.parallel import distributed, sharding
from deblur_jax.training import checkpoints, config_checks


@dataclasses.dataclass
class Evaluator:
  """The compiled eval step and the planned evaluation batches of this process."""
  mesh: jax.sharding.Mesh
  eval_fn: object
  chunks: list
  rows: range  # This process's rows of each evaluation batch.
  read_pairs: object  # Reads a list of pairs as a dataset.
  protocol: protocols.Protocol  # How PSNR and SSIM are computed (config.eval.protocol).


def build_evaluator(config, workdir: str, mesh, model) -> Evaluator:
  """Finds the evaluation pairs of config.data and compiles the eval step for `model`,
  scoring under config.eval's protocol."""
  eval_global = config.eval.batch_size_per_device * mesh.devices.size
  protocol = protocols.from_config(config.eval)
  pairs, read_pairs = pipeline.find_eval_pairs(config.data, workdir, min_size=protocol.min_size)
  eval_fn = eval_step.jit_eval_step(mesh, apply_fn=model.apply, size_multiple=model.size_multiple,
                                    protocol=protocol)
  return Evaluator(mesh, eval_fn, pipeline.plan_eval_batches(pairs, eval_global),
                   sharding.process_batch_rows(eval_global, mesh), read_pairs, protocol)


def _local_rows(global_array) -> np.ndarray:
  """This process's rows of a batch-sharded array, in batch order."""
  shards = sorted(global_array.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


def run_evaluation(evaluator: Evaluator, variables, *, num_images: int) -> results.EvalResult:
  """Evaluates every planned image once; keeps `num_images` grids of this process's rows."""
  rows, images = [], []
  for chunk, local in pipeline.eval_batches(evaluator.chunks, evaluator.rows,
                                            evaluator.read_pairs):
    outputs = evaluator.eval_fn(variables, sharding.make_global_batch(local, evaluator.mesh))
    per_image = jax.device_get({k: outputs[k] for k in PER_IMAGE_METRICS})
    for j, pair in enumerate(chunk.pairs[:chunk.num_valid]):
      rows.append({'name': pair.name, 'group': pair.group,
                   **{k: float(per_image[k][j]) for k in PER_IMAGE_METRICS}})
    if len(images) < num_images:
      deblurred = _local_rows(outputs['deblurred'])
      for j, row in enumerate(evaluator.rows):
        if row < chunk.num_valid and len(images) < num_images:
          grid = np.concatenate([local['blur'][j], deblurred[j], local['sharp'][j]], axis=1)
          images.append((chunk.pairs[row].name, np.clip(grid, 0.0, 1.0)))
  return results.EvalResult(rows, images, evaluator.protocol)


def evaluate_and_log(evaluator: Evaluator, writer, step: int, state, num_images: int) -> dict:
  """Evaluates the trained (and moving-average) weights; returns the trained ones' summary."""
  result = run_evaluation(evaluator, state.variables(), num_images=num_images)
  summary = results.write_summaries(writer, step, result)
  logging.info('Step %d eval (%s): PSNR %.2f dB (input %.2f), SSIM %.4f (input %.4f) on %d '
               'images.', step, evaluator.protocol.label(), summary['psnr'],
               summary['input_psnr'], summary['ssim'], summary['input_ssim'],
               summary['num_images'])
  if state.ema_params is not None:
    ema = run_evaluation(evaluator, state.variables(params=state.ema_params),
                         num_images=0).summary()
    writer.write_scalars(step, {f'eval_ema/{k}': ema[k] for k in PER_IMAGE_METRICS})
    logging.info('Step %d eval of the moving average: PSNR %.2f dB, SSIM %.4f.', step,
                 ema['psnr'], ema['ssim'])
  return summary


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the checkpoint at config.eval.checkpoint_step (-1: latest) in `workdir`.

  Writes workdir/eval/step_N.csv (one row per image: name, PSNR, SSIM and the
  blurred input's PSNR and SSIM) and workdir/eval/step_N.json (the means,
  overall and per group, and the protocol's fields). Returns the summary.
  """
  mesh = sharding.create_mesh()
  distributed.log_topology(mesh)
  config_checks.check_evaluation_config(config, mesh)
  model = models.build_model(config.model, config_checks.compute_dtype(config.train))
  evaluator = build_evaluator(config, workdir, mesh, model)
  manager = checkpoints.create_manager(workdir, keep=1, read_only=True)
  try:
    variables, step = checkpoints.restore_model_variables(
        manager, models.variables_template(model, sharding.replicated(mesh)),
        config.model.to_dict(), config.eval.checkpoint_step, ema=config.eval.ema)
  finally:
    manager.close()
  logging.info('Evaluating the checkpoint at step %d on %d batches, protocol %s.', step,
               len(evaluator.chunks), evaluator.protocol.label())
  result = run_evaluation(evaluator, variables, num_images=0)
  summary = {'step': step, **result.summary()}
  if jax.process_index() == 0:
    results.write_files(os.path.join(workdir, 'eval'), step, result, summary)
  return summary
