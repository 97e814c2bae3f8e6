"""Evaluation results: per-image rows, their means, and where they are written
(TensorBoard summaries; CSV and JSON files, and the images the results page shows)."""

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import statistics

import numpy as np
from PIL import Image

from deblur_jax.core import files
from deblur_jax.data import image_files
from deblur_jax.evaluation import protocols
from deblur_jax.evaluation.eval_step import PER_IMAGE_METRICS


@dataclasses.dataclass
class EvalResult:
  rows: list[dict]  # One per image: name, group, and PER_IMAGE_METRICS.
  images: list[tuple[str, np.ndarray]]  # (name, blurred | deblurred | sharp) for summaries.
  protocol: protocols.Protocol = protocols.Protocol()  # What computed the metrics.

  @property
  def metrics(self) -> tuple[str, ...]:
    """PER_IMAGE_METRICS and the protocol's extra ones ('mae' for 'dpdd')."""
    return (*PER_IMAGE_METRICS, *self.protocol.extra_metrics)

  def summary(self) -> dict:
    """The protocol's fields; means over all images and per group (GoPro sequence, demo
    blur). Under a host protocol, images whose alignment failed (NaN, logged) are left
    out of the means and counted in 'num_unscored'."""
    def mean(values):
      if self.protocol.on_host:
        values = [v for v in values if math.isfinite(v)] or [math.nan]
      return statistics.fmean(values)

    def means(rows):
      return {k: mean([r[k] for r in rows]) for k in self.metrics}
    out = {**self.protocol.fields(), 'num_images': len(self.rows), **means(self.rows)}
    if self.protocol.on_host:
      out['num_unscored'] = sum(not math.isfinite(r['psnr']) for r in self.rows)
    groups = sorted({r['group'] for r in self.rows if r['group']})
    if groups:
      out['groups'] = {g: means([r for r in self.rows if r['group'] == g]) for g in groups}
    return out


def write_summaries(writer, step: int, result: EvalResult) -> dict:
  """Writes eval/* scalars (means, PSNR gain, per-group PSNR) and the image grids; returns
  the summary."""
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


def write_files(out_dir: str, step: int, result: EvalResult, summary: dict) -> str:
  """Writes out_dir/step_N.csv (one row per image, by name) and out_dir/step_N.json
  (`summary`: the means, with the protocol's fields, and what else the caller
  records); returns out_dir/step_N.

  Each CSV row names the protocol in a last 'protocol' column (e.g. 'mimo', or
  'basicsr crop_border=4 y_channel=True').
  """
  base = os.path.join(out_dir, f'step_{step}')
  tagged = {'protocol': result.protocol.label()}
  with files.atomic_write(base + '.csv', 'w') as f:
    writer = csv.DictWriter(f, fieldnames=['name', *result.metrics, *tagged])
    writer.writeheader()
    for row in sorted(result.rows, key=lambda r: r['name']):
      writer.writerow({'name': row['name'], **{k: f'{row[k]:.6f}' for k in result.metrics},
                       **tagged})
  with files.atomic_write(base + '.json', 'w') as f:
    json.dump(summary, f, indent=2)
  return base


class PageImages:
  """Saves the first `limit` evaluated images as 8-bit PNGs for the results page.

  The deblurred output goes to out_dir/step_N_images/NAME.png; the blurred and
  sharp images, the same at every evaluation, to out_dir/images/NAME_{blur,sharp}_HASH.png
  once (HASH of their pixels), so that each evaluation adds one image per name.
  `files` maps each saved name to its three paths, relative to out_dir.
  """

  def __init__(self, out_dir: str, step: int, limit: int):
    self.out_dir, self.step, self.limit = out_dir, step, max(limit, 0)
    self.files: dict[str, dict[str, str]] = {}

  def wants_more(self) -> bool:
    return len(self.files) < self.limit

  def add(self, name: str, blur: np.ndarray, deblurred: np.ndarray, sharp: np.ndarray) -> None:
    """Saves one image's (H, W, 3) arrays in [0, 1]; nothing once `limit` are saved."""
    if not self.wants_more() or name in self.files:
      return
    step_dir = f'step_{self.step}_images'
    if not self.files:  # a re-evaluated step: none of the earlier run's outputs stay
      shutil.rmtree(os.path.join(self.out_dir, step_dir), ignore_errors=True)
    stem = self._unique_stem(name)
    paths = {}
    for kind, image in (('blur', blur), ('deblurred', deblurred), ('sharp', sharp)):
      pixels = image_files.to_levels(np.asarray(image), 8)
      if kind == 'deblurred':
        path = f'{step_dir}/{stem}.png'
      else:
        digest = hashlib.sha1(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()[:12]
        path = f'images/{stem}_{kind}_{digest}.png'
      full = os.path.join(self.out_dir, path)
      if kind == 'deblurred' or not os.path.exists(full):
        with files.atomic_write(full) as f:
          Image.fromarray(pixels).save(f, format='PNG', compress_level=1)  # fast; 10% larger
      paths[kind] = path
    self.files[name] = paths

  def _unique_stem(self, name: str) -> str:
    """A file name for the image `name` ('SEQ/000001.png' -> 'SEQ_000001')."""
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', os.path.splitext(name)[0]).strip('._')[:120]
    taken = {os.path.basename(p['deblurred'])[:-len('.png')] for p in self.files.values()}
    unique, n = stem or 'image', 1
    while unique in taken:
      n += 1
      unique = f'{stem}_{n}'
    return unique

  def record(self) -> dict:
    """What the summary JSON records of the saved images ('page_images')."""
    return {'limit': self.limit, 'files': self.files}
