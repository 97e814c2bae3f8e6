"""Evaluation on the test pairs of config.data: during training, and of a saved checkpoint.

`evaluate_checkpoint` evaluates a saved model; the training loop builds an
`Evaluator` once and calls `evaluate_and_log`. Every evaluation writes the same
files into WORKDIR/eval (process 0 only): step_N.csv (one row per image),
step_N.json (the means, overall and per group, the protocol and the run) and
the results page step_N.html with the comparison images beside it (results_page.py).
"""

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from deblur_jax import models
from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline, sources
from deblur_jax.evaluation import eval_step, protocols, results, results_page
from deblur_jax.evaluation.eval_step import PER_IMAGE_METRICS
from deblur_jax.parallel import distributed, sharding


@dataclasses.dataclass
class Evaluator:
  """The compiled eval step and the planned evaluation batches of this process."""
  mesh: jax.sharding.Mesh
  eval_fn: object
  chunks: list
  rows: range  # This process's rows of each evaluation batch.
  read_pairs: object  # Reads a list of pairs as a dataset.
  protocol: protocols.Protocol  # How PSNR and SSIM are computed (config.eval.protocol).
  workdir: str = ''  # The results files go to workdir/eval.
  run_info: dict = dataclasses.field(default_factory=dict)  # The run, for the results page.
  page_images: int = results_page.DEFAULT_PAGE_IMAGES  # Images each results page compares.


def check_eval_section(eval_config, mesh) -> None:
  """The fields of config.eval that the evaluator reads besides the protocol's."""
  if eval_config.batch_size_per_device <= 0:
    raise InputError(f'config.eval.batch_size_per_device={eval_config.batch_size_per_device} '
                     'must be positive.')
  if eval_config.page_images < 0:
    raise InputError(f'config.eval.page_images={eval_config.page_images} must be >= 0 '
                     '(0 = a results page without image comparisons).')
  sharding.check_batch_divisible(eval_config.batch_size_per_device * mesh.devices.size, mesh,
                                 'config.eval.batch_size_per_device x devices')


def build_evaluator(config, workdir: str, mesh, model) -> Evaluator:
  """Finds the evaluation pairs of config.data and compiles the eval step for `model`,
  scoring under config.eval's protocol. config.eval and config.data are checked
  before the pairs are looked for."""
  check_eval_section(config.eval, mesh)
  models.check_rgb_model(model, "deblur_jax's training and evaluation data")
  protocol = protocols.from_config(config.eval)
  pipeline.check_config(config.data)
  eval_global = config.eval.batch_size_per_device * mesh.devices.size
  pairs, read_pairs = pipeline.find_eval_pairs(config.data, workdir, min_size=protocol.min_size)
  eval_fn = eval_step.jit_eval_step(mesh, apply_fn=model.apply, size_multiple=model.size_multiple,
                                    protocol=protocol)
  data, source = config.data, sources.source_name(config.data)
  eval_set = {'demo': f'the held-out photos blurred by {data.demo.eval_blurs}',
              'tfds': 'the GoPro test split'}.get(source, data.eval_pairs_file or data.eval_split)
  run_info = {'model': config.model.name, 'data_source': source,
              'data_dir': data.tfds_data_dir if source == 'tfds' else data.dir,
              'eval_split': eval_set}
  page_images = config.eval.page_images  # the comparisons each results page keeps
  return Evaluator(mesh, eval_fn, pipeline.plan_eval_batches(pairs, eval_global),
                   sharding.process_batch_rows(eval_global, mesh), read_pairs, protocol,
                   workdir, run_info, page_images)


def _local_rows(global_array) -> np.ndarray:
  """This process's rows of a batch-sharded array, in batch order."""
  shards = sorted(global_array.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


# Worker processes that score under a host protocol: one per core, at most this many
# (each spawned worker imports the running program's main module, TensorFlow included).
MAX_HOST_WORKERS = 8


class HostScoring:
  """Scores this process's outputs under a host protocol (protocols.HOST_PROTOCOLS)
  in worker processes while the device computes the next batches, then fills every
  process's scores into the rows. A context manager: leaving it stops the workers."""

  def __init__(self, protocol: protocols.Protocol, rows: range):
    self.protocol, self.rows = protocol, rows
    self.keys = ('psnr', 'ssim', 'input_psnr', 'input_ssim', *protocol.extra_metrics)
    # 'spawn': the workers start clean instead of forking a process that runs JAX's threads.
    self.pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=min(os.cpu_count() or 1, MAX_HOST_WORKERS),
        mp_context=multiprocessing.get_context('spawn'))
    self.chunks = []  # Per chunk: (the chunk, a future or None per local row).

  def __enter__(self):
    return self

  def __exit__(self, *exception):
    self.pool.shutdown(cancel_futures=True)

  def submit(self, chunk, deblurred: np.ndarray, local: dict) -> None:
    scorer = protocols.HOST_PROTOCOLS[self.protocol.name]
    futures = [None if row >= chunk.num_valid else self.pool.submit(
        scorer, deblurred[j], local['sharp'][j], local['blur'][j])
        for j, row in enumerate(self.rows)]
    self.chunks.append((chunk, futures))

  def _gather(self) -> np.ndarray:
    """(chunks, global batch rows, keys) of every process; NaN where an image was not
    scored (padding, or an alignment that failed, which is logged)."""
    local = np.full((len(self.rows), len(self.chunks), len(self.keys)), np.nan)
    for c, (chunk, futures) in enumerate(self.chunks):
      for j, future in enumerate(futures):
        if future is None:
          continue
        scores = future.result()
        local[j, c] = [scores[k] for k in self.keys]
        if 'error' in scores:
          logging.warning('Not scored under %s: %s: %s', self.protocol.name,
                          chunk.pairs[self.rows[j]].name, scores['error'])
    if jax.process_count() > 1:
      local = multihost_utils.process_allgather(local, tiled=True)
    return local.transpose(1, 0, 2)

  def fill(self, rows: list[dict]) -> None:
    """Adds the scores to `rows`, one per valid image in chunk and row order."""
    scores, index = self._gather(), 0
    for c, (chunk, _) in enumerate(self.chunks):
      for r in range(chunk.num_valid):
        rows[index].update({k: float(v) for k, v in zip(self.keys, scores[c, r])})
        index += 1


def run_evaluation(evaluator: Evaluator, variables, *, num_images: int,
                   page_images: results.PageImages | None = None) -> results.EvalResult:
  """Evaluates every planned image once; keeps `num_images` grids of this process's rows
  and hands its first images to `page_images` to save for the results page."""
  on_device = eval_step.device_metrics(evaluator.protocol)
  host = HostScoring(evaluator.protocol, evaluator.rows) if evaluator.protocol.on_host else None
  rows, images = [], []
  with host or contextlib.nullcontext():
    for chunk, local in pipeline.eval_batches(evaluator.chunks, evaluator.rows,
                                              evaluator.read_pairs):
      outputs = evaluator.eval_fn(variables, sharding.make_global_batch(local, evaluator.mesh))
      per_image = jax.device_get({k: outputs[k] for k in on_device})
      for j, pair in enumerate(chunk.pairs[:chunk.num_valid]):
        rows.append({'name': pair.name, 'group': pair.group,
                     **{k: float(per_image[k][j]) for k in on_device}})
      wants_images = len(images) < num_images or (page_images is not None
                                                  and page_images.wants_more())
      if host is not None or wants_images:
        deblurred = _local_rows(outputs['deblurred'])
      if host is not None:
        host.submit(chunk, deblurred, local)
      if wants_images:
        for j, row in enumerate(evaluator.rows):
          if row >= chunk.num_valid:
            continue
          name = chunk.pairs[row].name
          if len(images) < num_images:
            grid = np.concatenate([local['blur'][j], deblurred[j], local['sharp'][j]], axis=1)
            images.append((name, np.clip(grid, 0.0, 1.0)))
          if page_images is not None:
            page_images.add(name, local['blur'][j], deblurred[j], local['sharp'][j])
    if host is not None:
      host.fill(rows)
  return results.EvalResult(rows, images, evaluator.protocol)


def _page_images(evaluator: Evaluator, step: int) -> results.PageImages | None:
  """What saves the results page's images: on process 0, which writes the files."""
  if jax.process_index() > 0:
    return None
  return results.PageImages(results_page.eval_dir(evaluator.workdir), step, evaluator.page_images)


def _write_results(evaluator: Evaluator, step: int, result: results.EvalResult, summary: dict,
                   variables, page_images: results.PageImages, weights: str, **extra) -> str:
  """Writes eval/step_N.csv, .json (`summary`, the run, the saved images and `extra`)
  and .html; returns workdir/eval/step_N. `weights` says which were evaluated."""
  run_info = {**evaluator.run_info, 'weights': weights,
              'num_params': models.count_params(variables['params'])}
  record = {'step': step, **summary, **extra, 'run': run_info,
            'page_images': page_images.record()}
  base = results.write_files(results_page.eval_dir(evaluator.workdir), step, result, record)
  try:
    results_page.write_page(evaluator.workdir, step)
  except Exception:  # pylint: disable=broad-except  (a page must not stop a training)
    logging.exception('Could not write the results page %s.html; retry with python -m '
                      'deblur_jax.report --workdir=%s --step=%d', base, evaluator.workdir, step)
  return base


def _log_summary(step: int, what: str, protocol: protocols.Protocol, summary: dict,
                 base: str | None) -> None:
  files = f'; results: {base}.html, per image .csv, means .json' if base else ''
  logging.info('Step %d %s (%s): PSNR %.2f dB (input %.2f), SSIM %.4f (input %.4f) on %d '
               'images%s.', step, what, protocol.label(), summary['psnr'],
               summary['input_psnr'], summary['ssim'], summary['input_ssim'],
               summary['num_images'], files)


def evaluate_and_log(evaluator: Evaluator, writer, step: int, state, num_images: int) -> dict:
  """Evaluates the trained (and moving-average) weights, writes TensorBoard summaries and,
  on process 0, the results files; returns the trained weights' summary."""
  variables = state.variables()
  page_images = _page_images(evaluator, step)
  result = run_evaluation(evaluator, variables, num_images=num_images, page_images=page_images)
  summary = results.write_summaries(writer, step, result)
  extra = {}
  if state.ema_params is not None:
    ema = run_evaluation(evaluator, state.variables(params=state.ema_params),
                         num_images=0).summary()
    writer.write_scalars(step, {f'eval_ema/{k}': ema[k] for k in PER_IMAGE_METRICS})
    logging.info('Step %d eval of the moving average: PSNR %.2f dB, SSIM %.4f.', step,
                 ema['psnr'], ema['ssim'])
    extra['ema'] = {k: ema[k] for k in PER_IMAGE_METRICS}
  base = None
  if page_images is not None:
    writer.flush()  # the page's curves read the event files
    base = _write_results(evaluator, step, result, summary, variables, page_images,
                          weights='trained', **extra)
  _log_summary(step, 'eval', evaluator.protocol, summary, base)
  return summary


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the checkpoint at config.eval.checkpoint_step (-1: latest) in `workdir`.

  Writes workdir/eval/step_N.csv (one row per image: name, PSNR, SSIM and the
  blurred input's PSNR and SSIM), workdir/eval/step_N.json (the means, overall
  and per group, the protocol's fields and the run) and the results page
  workdir/eval/step_N.html. Returns the summary.
  """
  mesh = sharding.create_mesh()
  distributed.log_topology(mesh)
  model = models.build_model(config.model, models.compute_dtype(config.train.compute_dtype))
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
  page_images = _page_images(evaluator, step)
  result = run_evaluation(evaluator, variables, num_images=0, page_images=page_images)
  summary = {'step': step, **result.summary()}
  base = None
  if page_images is not None:
    base = _write_results(evaluator, step, result, summary, variables, page_images,
                          weights='moving average' if config.eval.ema else 'trained')
  _log_summary(step, 'checkpoint eval', evaluator.protocol, summary, base)
  return summary
