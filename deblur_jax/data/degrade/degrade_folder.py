"""A paired dataset made from a folder of sharp images by synthetic blur.

`synthesize(input, output, spec, seed)` (the command: deblur_jax.synthesize)
writes, for every image under `input` (searched recursively):
  OUTPUT/sharp/NAME.png    the sharp image as 8-bit RGB
  OUTPUT/blur/NAME.png     it blurred, with noise and JPEG as asked (8-bit RGB)
  OUTPUT/kernels/NAME.npy  the float32 kernel used
  OUTPUT/manifest.json     per image: source, kernel family and parameters,
                           noise, JPEG quality and the seed key
NAME is the path under `input` with '/' replaced by '_'. This is the
flattened layout the training and evaluation code reads: with
output DIR/test, use config.data.dir=DIR; deblur_jax.baselines scores
Wiener and Richardson-Lucy on it. Image NAME is degraded with the generator
`degradations.example_rng(seed, key)`, key = name_key(NAME): its blur depends on
the seed and its name only, not on the other files. A file that cannot be read
is reported and skipped. Imports neither TensorFlow nor JAX.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
from absl import logging

from deblur_jax.core import files
from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files
from deblur_jax.data.degrade import degradations


def output_name(relative_path: str) -> str:
  """'sub/dir/photo.jpg' -> 'sub_dir_photo.png'."""
  stem = os.path.splitext(relative_path)[0]
  return stem.replace(os.sep, '_').replace('/', '_') + '.png'


def name_key(name: str) -> int:
  """A stable 63-bit integer of an image name: its per-image seed, with the seed."""
  return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], 'big') >> 1


@dataclasses.dataclass
class Summary:
  written: list[dict]  # The manifest entry of each image written.
  skipped: list[tuple[str, str]]  # (path, reason) of each input left out.


def _check_output(input_path: str, output_dir: str, input_field: str) -> None:
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise InputError(f'--output={output_dir!r} is a file; give a folder.')
  if os.path.isdir(input_path):
    inside = os.path.relpath(os.path.abspath(output_dir), os.path.abspath(input_path))
    if not inside.startswith(os.pardir):
      raise InputError(f'--output={output_dir!r} lies inside {input_field}={input_path!r}; its '
                       'images would become inputs next time. Choose another folder.')


def synthesize(input_path: str, output_dir: str, spec: degradations.SyntheticBlur,
               seed: int = 0, input_field: str = '--input') -> Summary:
  """Degrades every image under `input_path` (a folder or one file) into
  `output_dir` as described in the module docstring, and writes the manifest.
  `input_field` names where `input_path` came from, in errors."""
  _check_output(input_path, output_dir, input_field)
  by_name = {}
  for path, relative in image_files.list_images(input_path, field=input_field):
    name = output_name(relative)
    if name in by_name:
      raise InputError(f'{by_name[name]} and {path} would both be written as {name}; '
                       'rename one.')
    by_name[name] = path
  folders = {k: os.path.join(output_dir, k) for k in ('blur', 'sharp', 'kernels')}
  for folder in folders.values():
    os.makedirs(folder, exist_ok=True)

  written, skipped = [], []
  for i, (name, path) in enumerate(by_name.items(), 1):
    try:
      sharp = image_files.read_image(path).rgb
    except InputError as e:
      logging.warning('[%d/%d] skipped: %s', i, len(by_name), e)
      skipped.append((path, str(e)))
      continue
    key = name_key(name)
    result = degradations.degrade(sharp, degradations.example_rng(seed, key), spec)
    rgb8 = image_files.LoadedImage(sharp, 8, gray=False)
    image_files.write_image(os.path.join(folders['sharp'], name), sharp, rgb8)
    image_files.write_image(os.path.join(folders['blur'], name), result.image, rgb8)
    with files.atomic_write(os.path.join(folders['kernels'],
                                         os.path.splitext(name)[0] + '.npy')) as f:
      np.save(f, result.kernel)
    written.append({'name': name, 'source': os.path.relpath(path, input_path)
                    if os.path.isdir(input_path) else os.path.basename(path),
                    'key': key, 'kernel': result.family,
                    'kernel_size': int(result.kernel.shape[0]),
                    'kernel_params': result.kernel_params,
                    'noise_sigma': result.noise_sigma, 'jpeg_quality': result.jpeg_quality})
    logging.info('[%d/%d] %s: %s %s', i, len(by_name), name, result.family,
                 result.kernel_params)
  if not written:
    raise InputError(f'None of the {len(skipped)} images under {input_path} could be read, '
                     f'e.g. {skipped[0][1]}')
  manifest = {
      'seed': seed,
      'spec': dataclasses.asdict(spec),
      'seeding': 'image NAME uses deblur_jax.data.degrade.degradations.example_rng(seed, key): '
                 'numpy SeedSequence([seed, key]), key = first 8 bytes of sha256(NAME) >> 1',
      'images': written,
      'skipped': [{'path': p, 'reason': r} for p, r in skipped],
  }
  with files.atomic_write(os.path.join(output_dir, 'manifest.json'), 'w') as f:
    json.dump(manifest, f, indent=1)
  return Summary(written, skipped)
