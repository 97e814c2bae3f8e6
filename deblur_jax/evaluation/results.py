"""Evaluation results: per-image rows, their means, and where they are written
(TensorBoard summaries during training; CSV and JSON files for a checkpoint)."""

import csv
import dataclasses
import json
import os
import statistics

import numpy as np
from absl import logging

from deblur_jax.evaluation import protocols
from deblur_jax.evaluation.eval_step import PER_IMAGE_METRICS


@dataclasses.dataclass
class EvalResult:
  rows: list[dict]  # One per image: name, group, and PER_IMAGE_METRICS.
  images: list[tuple[str, np.ndarray]]  # (name, blurred | deblurred | sharp) for summaries.
  protocol: protocols.Protocol = protocols.Protocol()  # What computed the metrics.

  def summary(self) -> dict:
    """The protocol's fields; means over all images and per group (GoPro sequence, demo
    blur)."""
    def means(rows):
      return {k: statistics.fmean(r[k] for r in rows) for k in PER_IMAGE_METRICS}
    out = {**self.protocol.fields(), 'num_images': len(self.rows), **means(self.rows)}
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
  (`summary`, with the protocol's fields); returns out_dir/step_N.

  Each CSV row names the protocol in a last 'protocol' column (e.g. 'mimo', or
  'basicsr crop_border=4 y_channel=True').
  """
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, f'step_{step}')
  tagged = {'protocol': result.protocol.label()}
  with open(base + '.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=['name', *PER_IMAGE_METRICS, *tagged])
    writer.writeheader()
    for row in sorted(result.rows, key=lambda r: r['name']):
      writer.writerow({'name': row['name'], **{k: f'{row[k]:.6f}' for k in PER_IMAGE_METRICS},
                       **tagged})
  with open(base + '.json', 'w') as f:
    json.dump(summary, f, indent=2)
  logging.info('Wrote %s.csv and %s.json (%s): PSNR %.3f dB (input %.3f), SSIM %.4f.', base,
               base, result.protocol.label(), summary['psnr'], summary['input_psnr'],
               summary['ssim'])
  return base
