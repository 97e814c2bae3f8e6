"""Scores a folder of any method's saved results against a benchmark's ground truth,
the way the benchmark's own script scores it (`python -m deblur_jax.score`).

Layouts and protocols:

- RealBlur (protocol 'realblur') and RSBlur-style aligned scoring ('rsblur') on
  RealBlur's layout: DATA/sceneNNN/{gt,blur}/{gt,blur}_K.png, results named
  sceneNNN_blur_K.png (scene244 is scene244_reflect on disk), as
  evaluation_RealBlur_ecc.py matches them. With a test list (RealBlur's
  RealBlur_J_test_list.txt / RealBlur_R_test_list.txt: lines of 'GT BLUR' paths
  ending in sceneNNN/gt/gt_K.png) every listed image must have a result.

Images are scored in parallel processes (OpenCV's alignment runs on the host);
an image that cannot be scored (no ground truth, another size or bit depth, an
alignment that fails) is reported by name and the others are scored. Nothing is
written unless every file can be: scores.csv (one row per image) and scores.json
(the protocol, the means over all images and per scene, and what failed).
"""

import concurrent.futures
import csv
import dataclasses
import io
import json
import os
import re
from typing import Optional

import numpy as np

from deblur_jax.core import files
from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files
from deblur_jax.evaluation import protocols, realblur

PROTOCOLS = tuple(protocols.HOST_PROTOCOLS)
_RESULT_NAME = re.compile(r'^(scene\d+)_.*?(\d+)\.(png|jpg|jpeg|tif|tiff|bmp)$', re.IGNORECASE)
_LIST_ENTRY = re.compile(r'(scene\d+[^/\\]*)[/\\]gt[/\\]gt_(\d+)\.png$')
# evaluation_RealBlur_ecc.py: results of scene244 name the folder scene244_reflect.
_SCENE_FOLDERS = {'scene244': 'scene244_reflect'}
OUTPUT_FILES = ('scores.csv', 'scores.json')


@dataclasses.dataclass(frozen=True)
class Pair:
  name: str  # The result's file name.
  group: str  # The scene.
  result: str
  target: str
  blurred: Optional[str]  # The blurred input, where the data has it.


def _scene_folder(scene: str) -> str:
  return _SCENE_FOLDERS.get(scene, scene)


def read_test_list(path: str) -> list[tuple[str, str]]:
  """(scene folder, K) of each line of a RealBlur test list ('GT BLUR' paths)."""
  entries = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      match = _LIST_ENTRY.search(line.split()[0])
      if match is None:
        raise InputError(f'{path}:{number}: expected a ground-truth path ending in '
                         f'sceneNNN/gt/gt_K.png, got {line.strip()!r}.')
      entries.append((match.group(1), match.group(2)))
  return entries


def match_results(results_dir: str, data_dir: str,
                  test_list: Optional[str] = None) -> tuple[list[Pair], list[str], list[str]]:
  """(pairs, unmatched result names, listed ground truths without a result).

  A result is unmatched when its name is not sceneNNN_..._K or its scene has no
  gt_K.png in `data_dir`; with a `test_list`, also when it is not listed."""
  if not os.path.isdir(results_dir):
    raise InputError(f'--results={results_dir} is not a folder.')
  if not os.path.isdir(data_dir):
    raise InputError(f'--data={data_dir} is not a folder.')
  listed = None if test_list is None else set(read_test_list(test_list))
  pairs, unmatched, found = [], [], set()
  for name in image_files.image_names(sorted(os.listdir(results_dir))):
    match = _RESULT_NAME.match(name)
    key = match and (_scene_folder(match.group(1)), match.group(2))
    target = key and os.path.join(data_dir, key[0], 'gt', f'gt_{key[1]}.png')
    if not key or not os.path.isfile(target) or (listed is not None and key not in listed):
      unmatched.append(name)
      continue
    found.add(key)
    blurred = os.path.join(data_dir, key[0], 'blur', f'blur_{key[1]}.png')
    pairs.append(Pair(name, match.group(1), os.path.join(results_dir, name), target,
                      blurred if os.path.isfile(blurred) else None))
  missing = [] if listed is None else [f'{scene}/gt/gt_{k}.png'
                                       for scene, k in sorted(listed - found)]
  return pairs, unmatched, missing


def _read_pair(pair: Pair):
  result, target = image_files.read_image(pair.result), image_files.read_image(pair.target)
  if result.rgb.shape != target.rgb.shape:
    raise InputError(f'{pair.result} is {result.rgb.shape[1]}x{result.rgb.shape[0]}, its '
                     f'ground truth {pair.target} {target.rgb.shape[1]}x{target.rgb.shape[0]}.')
  if result.bit_depth != target.bit_depth:
    raise InputError(f'{pair.result} is {result.bit_depth}-bit, its ground truth '
                     f'{pair.target} {target.bit_depth}-bit.')
  return result.rgb, target.rgb


def score_pair(pair: Pair, protocol: str) -> dict:
  """One row of scores.csv: name, group, psnr, ssim, input_psnr; or name and error."""
  try:
    result, target = _read_pair(pair)
    scores = realblur.score(result, target, clip=protocols.HOST_PROTOCOLS[protocol])
    if pair.blurred is not None:
      scores['input_psnr'] = realblur.input_psnr(image_files.read_image(pair.blurred).rgb, target)
  except (InputError, realblur.AlignmentError) as error:
    return {'name': pair.name, 'error': str(error)}
  return {'name': pair.name, 'group': pair.group, **scores}


def score_all(pairs: list[Pair], protocol: str, workers: int) -> list[dict]:
  """score_pair of every pair, in `workers` processes (1: in this one)."""
  if workers <= 1 or len(pairs) <= 1:
    return [score_pair(pair, protocol) for pair in pairs]
  with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
    return list(pool.map(score_pair, pairs, [protocol] * len(pairs)))


def _means(rows: list[dict]) -> dict:
  keys = [k for k in ('psnr', 'ssim', 'input_psnr') if all(k in row for row in rows)]
  return {'count': len(rows), **{k: float(np.mean([row[k] for row in rows])) for k in keys}}


def summary(rows: list[dict], protocol: str, unmatched: list[str], missing: list[str]) -> dict:
  """scores.json: the protocol, the means over all scored images and per group,
  and the names of what was not scored."""
  scored = [row for row in rows if 'error' not in row]
  groups = sorted({row['group'] for row in scored})
  return {
      'protocol': protocol,
      'means': _means(scored) if scored else {'count': 0},
      'groups': {g: _means([row for row in scored if row['group'] == g]) for g in groups},
      'failed': {row['name']: row['error'] for row in rows if 'error' in row},
      'unmatched_results': unmatched,
      'missing_results': missing,
  }


def _csv_text(rows: list[dict]) -> str:
  fields = ['name', 'group', 'psnr', 'ssim']
  if any('input_psnr' in row for row in rows):
    fields.append('input_psnr')
  text = io.StringIO()
  writer = csv.DictWriter(text, fields, extrasaction='ignore', lineterminator='\n')
  writer.writeheader()
  writer.writerows(row for row in rows if 'error' not in row)
  return text.getvalue()


def check_output(output_dir: str, overwrite: bool) -> None:
  """Raises an InputError unless the score files can be written to `output_dir`."""
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise InputError(f'--output={output_dir} is a file, not a folder.')
  existing = [f for f in OUTPUT_FILES if os.path.exists(os.path.join(output_dir, f))]
  if existing and not overwrite:
    raise InputError(f'{os.path.join(output_dir, existing[0])} exists; pass --overwrite to '
                     'replace it.')


def write_scores(output_dir: str, rows: list[dict], scores: dict) -> list[str]:
  """Writes scores.csv and scores.json (each replaced whole); returns their paths."""
  os.makedirs(output_dir, exist_ok=True)
  texts = (_csv_text(rows), json.dumps(scores, indent=2) + '\n')
  paths = [os.path.join(output_dir, name) for name in OUTPUT_FILES]
  for path, text in zip(paths, texts):
    with files.atomic_write(path, 'w') as f:
      f.write(text)
  return paths
