"""Scores a folder of any method's saved results against a benchmark's ground truth,
the way the benchmark's own script scores it (`python -m deblur_jax.score`).

Layouts of the ground truth (`--data`), recognised from its folders:

- 'realblur': DATA/sceneNNN/{gt,blur}/{gt,blur}_K.png; results named
  sceneNNN_blur_K.png (scene244 is scene244_reflect on disk), as
  evaluation_RealBlur_ecc.py matches them. Groups: the scenes. With RealBlur's
  test list (lines of 'GT BLUR' paths ending in sceneNNN/gt/gt_K.png) every
  listed image must have a result; without one, the results say which.
- 'rsblur': DATA/DAY/SCENE/{gt/gt_sharp,real_blur/real_blur}.png; results named
  DAY_SCENE_real_blur.png, as evaluate_RSBlur.py matches them. With RSBlur's test
  list (RSBlur_real_test.txt) every listed image needs a result, and the
  saturation lists beside it (RSBlur_real_test_saturation.txt,
  ..._non_saturation.txt) make the groups 'saturated' and 'non-saturated'.
- 'target' (the Restormer layout of every benchmark, DPDD's own):
  DATA/target/NAME and DATA/input/NAME (DPDD: inputC/); results named NAME.
  DPDD's indoor_labels.npy / outdoor_labels.npy (1-based indices into the sorted
  targets) beside them make the groups 'indoor' and 'outdoor'.
- 'hide': DATA/GT/NAME with the blurred images in DATA/test/test-close-ups and
  DATA/test/test-long-shot (the groups); results named NAME.
- 'gopro': DATA/SEQUENCE/{blur,sharp}/NAME (GOPRO_Large's test split); results
  SEQUENCE/NAME (in sub-folders) or SEQUENCE_NAME. Groups: the sequences.

Protocols: those of deblur_jax.evaluation.protocols. 'realblur', 'rsblur' and
'dpdd' run in `workers` processes; 'mimo', 'basicsr' and 'nafnet' run as jitted
JAX functions in this process. An image that cannot be scored (another size or
bit depth, an alignment that fails) is reported by name and the others are
scored. Nothing is written unless every file can be: scores.csv (one row per
image) and scores.json (the protocol, the layout, the means over all images and
per group, and what was not scored).
"""

import concurrent.futures
import csv
import dataclasses
import io
import json
import os
import re
from typing import Callable, Collection, Optional

import jax
import numpy as np

from deblur_jax.core import files
from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files
from deblur_jax.evaluation import protocols

PROTOCOLS = (*protocols.PROTOCOLS, *protocols.HOST_PROTOCOLS)
LAYOUTS = ('realblur', 'rsblur', 'target', 'hide', 'gopro')
OUTPUT_FILES = ('scores.csv', 'scores.json')
_REALBLUR_RESULT = re.compile(r'^(scene\d+)_.*?(\d+)$')
# A test list line's ground truth -> its target's key, per layout.
_LIST_ENTRIES = {
    'realblur': (re.compile(r'(scene\d+[^/\\]*)[/\\]gt[/\\]gt_(\d+)\.png$'),
                 'sceneNNN/gt/gt_K.png'),
    'rsblur': (re.compile(r'([^/\\]+)[/\\]([^/\\]+)[/\\]gt[/\\]gt_sharp\.png$'),
               'DAY/SCENE/gt/gt_sharp.png'),
}
# Groups listed in files beside a layout's test list (X.txt -> X_saturation.txt, ...).
_LISTED_GROUPS = {'rsblur': {'saturated': '_saturation.txt',
                             'non-saturated': '_non_saturation.txt'}}
# evaluation_RealBlur_ecc.py: results of scene244 name the folder scene244_reflect.
_SCENE_FOLDERS = {'scene244': 'scene244_reflect'}
_HIDE_GROUPS = ('test-close-ups', 'test-long-shot')
_TARGET_INPUTS = ('input', 'inputC')


@dataclasses.dataclass(frozen=True)
class Target:
  key: str  # What a result's name maps to (see _result_key).
  group: str
  path: str
  blurred: Optional[str]  # The blurred input, where the data has it.


@dataclasses.dataclass(frozen=True)
class Pair:
  name: str  # The result's path under the results folder.
  group: str
  result: str
  target: str
  blurred: Optional[str]


def detect_layout(data_dir: str) -> str:
  """Which of LAYOUTS `data_dir` holds, from its folders."""
  if not os.path.isdir(data_dir):
    raise InputError(f'--data={data_dir} is not a folder.')
  entries = set(os.listdir(data_dir))
  if os.path.isdir(os.path.join(data_dir, 'target')):
    return 'target'
  if 'GT' in entries and os.path.isdir(os.path.join(data_dir, 'test')):
    return 'hide'
  if any(e.startswith('scene') and os.path.isdir(os.path.join(data_dir, e, 'gt'))
         for e in entries):
    return 'realblur'
  if _rsblur_scenes(data_dir):
    return 'rsblur'
  if any(os.path.isdir(os.path.join(data_dir, e, 'sharp')) for e in entries):
    return 'gopro'
  raise InputError(f'--data={data_dir} holds none of the benchmark layouts: sceneNNN/gt/ '
                   '(RealBlur), DAY/SCENE/gt/gt_sharp.png (RSBlur), target/ (Restormer, DPDD), '
                   'GT/ and test/ (HIDE) or SEQUENCE/sharp/ (GoPro).')


def _rsblur_scenes(data_dir: str) -> list[tuple[str, str]]:
  """(DAY, SCENE) of every DATA/DAY/SCENE/gt/gt_sharp.png."""
  scenes = []
  for day in sorted(os.listdir(data_dir)):
    day_dir = os.path.join(data_dir, day)
    if os.path.isdir(day_dir):
      scenes += [(day, scene) for scene in sorted(os.listdir(day_dir))
                 if os.path.isfile(os.path.join(day_dir, scene, 'gt', 'gt_sharp.png'))]
  return scenes


def _stem(name: str) -> str:
  return os.path.splitext(name)[0]


def read_test_list(path: str, layout: str = 'realblur') -> set[str]:
  """The targets' keys ('sceneNNN/K', 'DAY/SCENE') of a RealBlur or RSBlur test list
  (lines of 'GT BLUR' paths)."""
  pattern, form = _LIST_ENTRIES[layout]
  keys = set()
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      match = pattern.search(line.split()[0])
      if match is None:
        raise InputError(f'{path}:{number}: expected a ground-truth path ending in '
                         f'{form}, got {line.strip()!r}.')
      keys.add(f'{match.group(1)}/{match.group(2)}')
  return keys


def _listed_groups(layout: str, test_list: str) -> dict[str, str]:
  """{key: group} from the lists beside the test list that _LISTED_GROUPS names
  (RSBlur_real_test.txt -> RSBlur_real_test_saturation.txt, ..._non_saturation.txt)."""
  groups = {}
  for group, suffix in _LISTED_GROUPS.get(layout, {}).items():
    path = test_list.removesuffix('.txt') + suffix
    if os.path.isfile(path):
      groups.update({key: group for key in read_test_list(path, layout)})
  return groups


def _existing(path: str) -> Optional[str]:
  return path if os.path.isfile(path) else None


def _realblur_targets(data_dir: str) -> list[Target]:
  targets = []
  for scene in sorted(os.listdir(data_dir)):
    gt_dir = os.path.join(data_dir, scene, 'gt')
    if not scene.startswith('scene') or not os.path.isdir(gt_dir):
      continue
    for name in image_files.image_names(os.listdir(gt_dir)):
      k = _stem(name).rsplit('_', 1)[-1]
      group = next((s for s, folder in _SCENE_FOLDERS.items() if folder == scene), scene)
      targets.append(Target(f'{scene}/{k}', group, os.path.join(gt_dir, name),
                            _existing(os.path.join(data_dir, scene, 'blur', f'blur_{k}.png'))))
  return targets


def _dpdd_groups(data_dir: str, names: list[str]) -> dict[str, str]:
  """DPDD's indoor/outdoor split: {name: group} from its label files, if present."""
  groups = {}
  for group in ('indoor', 'outdoor'):
    labels = os.path.join(data_dir, f'{group}_labels.npy')
    if os.path.isfile(labels):
      for index in np.load(labels).ravel():
        if not 1 <= index <= len(names):
          raise InputError(f'{labels} names image {index}, but target/ holds {len(names)}.')
        groups[names[int(index) - 1]] = group
  return groups


def _rsblur_targets(data_dir: str) -> list[Target]:
  return [Target(f'{day}/{scene}', '',
                 os.path.join(data_dir, day, scene, 'gt', 'gt_sharp.png'),
                 _existing(os.path.join(data_dir, day, scene, 'real_blur', 'real_blur.png')))
          for day, scene in _rsblur_scenes(data_dir)]


def _target_targets(data_dir: str) -> list[Target]:
  names = image_files.image_names(os.listdir(os.path.join(data_dir, 'target')))
  inputs = next((os.path.join(data_dir, d) for d in _TARGET_INPUTS
                 if os.path.isdir(os.path.join(data_dir, d))), None)
  groups = _dpdd_groups(data_dir, names)
  return [Target(_stem(n), groups.get(n, ''), os.path.join(data_dir, 'target', n),
                 inputs and _existing(os.path.join(inputs, n))) for n in names]


def _hide_targets(data_dir: str) -> list[Target]:
  targets = []
  for name in image_files.image_names(os.listdir(os.path.join(data_dir, 'GT'))):
    blurred = [os.path.join(data_dir, 'test', g, name) for g in _HIDE_GROUPS]
    found = [(g, b) for g, b in zip(_HIDE_GROUPS, blurred) if os.path.isfile(b)]
    group, blurred_path = found[0] if found else ('', None)
    targets.append(Target(_stem(name), group.removeprefix('test-'),
                          os.path.join(data_dir, 'GT', name), blurred_path))
  return targets


def _gopro_targets(data_dir: str) -> list[Target]:
  targets = []
  for sequence in sorted(os.listdir(data_dir)):
    sharp = os.path.join(data_dir, sequence, 'sharp')
    if os.path.isdir(sharp):
      for name in image_files.image_names(os.listdir(sharp)):
        targets.append(Target(f'{sequence}/{_stem(name)}', sequence, os.path.join(sharp, name),
                              _existing(os.path.join(data_dir, sequence, 'blur', name))))
  return targets


_TARGETS = {'realblur': _realblur_targets, 'rsblur': _rsblur_targets, 'target': _target_targets,
            'hide': _hide_targets, 'gopro': _gopro_targets}
_LISTED_LAYOUTS = ('realblur', 'rsblur')  # Folders that hold other splits too: a test list.


def _result_key(layout: str, relative: str, keys: Collection[str]) -> Optional[str]:
  """The target key a result at `relative` (under the results folder) names: by the
  benchmark's own naming, or by the blurred input's path under the data folder, as
  `deblur_jax.predict` mirrors it (sceneNNN/blur/blur_K, DAY/SCENE/real_blur/real_blur,
  SEQUENCE/blur/NAME)."""
  stem = _stem(relative).replace(os.sep, '/')
  folders = stem.split('/')
  if layout == 'realblur':
    match = _REALBLUR_RESULT.match('_'.join(folders))
    if match is None:
      return None
    return f'{_SCENE_FOLDERS.get(match.group(1), match.group(1))}/{match.group(2)}'
  if layout == 'rsblur':  # evaluate_RSBlur.py: DAY_SCENE_x_y, DAY itself may hold '_'.
    if len(folders) >= 4 and folders[-2:] == ['real_blur', 'real_blur']:
      return f'{folders[-4]}/{folders[-3]}'
    parts = folders[-1].split('_')
    return f"{'_'.join(parts[:-3])}/{parts[-3]}" if len(parts) >= 4 else None
  if stem in keys:
    return stem
  if len(folders) > 2 and f'{folders[0]}/{folders[-1]}' in keys:
    return f'{folders[0]}/{folders[-1]}'
  if layout == 'gopro':  # SEQUENCE_NAME, flattened.
    sequence, _, name = stem.rpartition('_')
    while sequence:
      if f'{sequence}/{name}' in keys:
        return f'{sequence}/{name}'
      sequence, _, head = sequence.rpartition('_')
      name = f'{head}_{name}'
  return os.path.basename(stem) if os.path.basename(stem) in keys else None


def _benchmark_targets(data_dir: str, test_list: Optional[str]) -> tuple[str, dict[str, Target]]:
  """(layout, {key: target}) of `data_dir`, only those of `test_list` where given."""
  layout = detect_layout(data_dir)
  if test_list is not None and layout not in _LISTED_LAYOUTS:
    raise InputError(f'--test_list is for RealBlur and RSBlur folders, but --data={data_dir} '
                     f'has the {layout!r} layout.')
  targets = {t.key: t for t in _TARGETS[layout](data_dir)}
  if test_list is not None:
    listed, groups = read_test_list(test_list, layout), _listed_groups(layout, test_list)
    targets = {k: dataclasses.replace(t, group=groups.get(k, t.group))
               for k, t in targets.items() if k in listed}
  return layout, targets


def benchmark_inputs(data_dir: str, test_list: Optional[str] = None) -> list[tuple[str, str]]:
  """(path, path relative to `data_dir`) of the blurred input of every target a
  result is expected for (match_results), for a model to restore; results written
  at those relative paths match their targets. RealBlur and RSBlur need their test
  list: their folders hold the training scenes too."""
  layout, targets = _benchmark_targets(data_dir, test_list)
  if layout in _LISTED_LAYOUTS and test_list is None:
    raise InputError(f'--data={data_dir} ({layout} layout) holds the training scenes too: '
                     "give the benchmark's test list.")
  if not targets:
    raise InputError(f'--data={data_dir} holds no ground-truth image ({layout} layout).')
  without = [os.path.relpath(t.path, data_dir) for t in targets.values() if t.blurred is None]
  if without:
    raise InputError(f'--data={data_dir}: no blurred input for {len(without)} ground-truth '
                     f'images, e.g. {without[0]}.')
  return [(t.blurred, os.path.relpath(t.blurred, data_dir)) for _, t in sorted(targets.items())]


def match_results(results_dir: str, data_dir: str, test_list: Optional[str] = None
                  ) -> tuple[str, list[Pair], list[str], list[str]]:
  """(layout, pairs, result names that match no target, targets without a result).

  Every target of the layout needs a result, except RealBlur's and RSBlur's
  without a test list (their folders hold the training scenes too)."""
  if not os.path.isdir(results_dir):
    raise InputError(f'--results={results_dir} is not a folder.')
  layout, targets = _benchmark_targets(data_dir, test_list)
  pairs, unmatched, found = [], [], set()
  for path, relative in image_files.list_images(results_dir, '--results'):
    key = _result_key(layout, relative, targets)
    if key not in targets or key in found:
      unmatched.append(relative)
      continue
    found.add(key)
    target = targets[key]
    pairs.append(Pair(relative, target.group, path, target.path, target.blurred))
  expected = targets if (layout not in _LISTED_LAYOUTS or test_list is not None) else {}
  missing = [os.path.relpath(t.path, data_dir) for k, t in sorted(expected.items())
             if k not in found]
  return layout, pairs, unmatched, missing


def _read_pair(pair: Pair):
  result, target = image_files.read_image(pair.result), image_files.read_image(pair.target)
  if result.rgb.shape != target.rgb.shape:
    raise InputError(f'{pair.result} is {result.rgb.shape[1]}x{result.rgb.shape[0]}, its '
                     f'ground truth {pair.target} {target.rgb.shape[1]}x{target.rgb.shape[0]}.')
  if result.bit_depth != target.bit_depth:
    raise InputError(f'{pair.result} is {result.bit_depth}-bit, its ground truth '
                     f'{pair.target} {target.bit_depth}-bit.')
  blurred = None if pair.blurred is None else image_files.read_image(pair.blurred).rgb
  if blurred is not None and blurred.shape != target.rgb.shape:
    blurred = None  # Scored without the input rather than not at all.
  return result.rgb, target.rgb, blurred


def _jax_scorer(name: str) -> Callable:
  """A protocol of protocols.PROTOCOLS as a scorer of one image (result, target,
  blurred or None), jitted (once per image size)."""
  protocol = protocols.Protocol(name)
  scores = jax.jit(lambda a, b: protocol(a[None], b[None]))

  def score(result, target, blurred):
    out = {k: float(v[0]) for k, v in scores(result, target).items()}
    if blurred is not None:
      out.update({f'input_{k}': float(v[0]) for k, v in scores(blurred, target).items()})
    return out
  return score


def score_pair(pair: Pair, protocol: str, scorer: Optional[Callable] = None) -> dict:
  """One row of scores.csv: name, group and the scores; or name and error."""
  scorer = scorer or protocols.HOST_PROTOCOLS[protocol]
  try:
    scores = scorer(*_read_pair(pair))
  except InputError as error:
    scores = {'error': str(error)}
  if 'error' in scores:
    return {'name': pair.name, 'error': scores['error']}
  return {'name': pair.name, 'group': pair.group, **scores}


def score_all(pairs: list[Pair], protocol: str, workers: int) -> list[dict]:
  """score_pair of every pair: in `workers` processes for a host protocol."""
  if protocol not in protocols.HOST_PROTOCOLS:
    scorer = _jax_scorer(protocol)
    return [score_pair(pair, protocol, scorer) for pair in pairs]
  if workers <= 1 or len(pairs) <= 1:
    return [score_pair(pair, protocol) for pair in pairs]
  with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
    return list(pool.map(score_pair, pairs, [protocol] * len(pairs)))


_METRICS = ('psnr', 'ssim', 'mae', 'input_psnr', 'input_ssim')


def _means(rows: list[dict]) -> dict:
  keys = [k for k in _METRICS if rows and all(k in row for row in rows)]
  return {'count': len(rows), **{k: float(np.mean([row[k] for row in rows])) for k in keys}}


def summary(rows: list[dict], protocol: str, layout: str, unmatched: list[str],
            missing: list[str]) -> dict:
  """scores.json: the protocol and layout, the means over all scored images and per
  group, and the names of what was not scored."""
  scored = [row for row in rows if 'error' not in row]
  groups = sorted({row['group'] for row in scored if row['group']})
  return {
      'protocol': protocol,
      'layout': layout,
      'means': _means(scored),
      'groups': {g: _means([row for row in scored if row['group'] == g]) for g in groups},
      'failed': {row['name']: row['error'] for row in rows if 'error' in row},
      'unmatched_results': unmatched,
      'missing_results': missing,
  }


def _csv_text(rows: list[dict]) -> str:
  scored = [row for row in rows if 'error' not in row]
  fields = ['name', 'group', *(k for k in _METRICS if scored and all(k in r for r in scored))]
  text = io.StringIO()
  writer = csv.DictWriter(text, fields, extrasaction='ignore', lineterminator='\n')
  writer.writeheader()
  writer.writerows(scored)
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
  texts = (_csv_text(rows), json.dumps(scores, indent=2) + '\n')
  paths = [os.path.join(output_dir, name) for name in OUTPUT_FILES]
  for path, text in zip(paths, texts):
    with files.atomic_write(path, 'w') as f:
      f.write(text)
  return paths
