"""Synthetic blur on the fly: any folder of sharp images as a training set
(`config.data.source = 'synthetic'`).

Training: random crops of the sharp images under `data.dir/train_split`
(searched recursively), each blurred when it is drawn with a random kernel,
noise and JPEG as `config.data.synthetic` says (degradations.SyntheticBlur).
Example g of a run with seed s is cut and flipped with the stateless seeds
of (s, g) and degraded with `degradations.example_rng(s, g)`: the same seed gives
the same pairs, each process computes its own examples, and a resumed run
goes on with the examples after the restored step. A crop is cut with a
margin of half the largest kernel, blurred, and the margin then cut away, so
every blurred pixel sees real image content under the whole kernel.

Evaluation: a fixed set, the images under `data.dir/eval_split` degraded
once by `synthesize` with `synthetic.eval_seed` into
workdir/synthetic_eval/KEY/test/{blur,sharp} (KEY: a hash of the folder, the
degradation and the seed), then read like any flattened pair folder. The
blur of an evaluation image depends on its name and the seed only, so runs
with different training seeds are scored on the same pairs.
"""

import dataclasses
import hashlib
import json
import os
from typing import Optional

import tensorflow as tf
from absl import logging

from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files, pairs, transforms
from deblur_jax.data.degrade import degradations, degrade_folder, kernels
from deblur_jax.data.sources import Source, TrainExamples, folders

_FIELD = 'config.data.synthetic'


def blur_spec(synthetic_config) -> degradations.SyntheticBlur:
  """The degradation described by `config.data.synthetic`."""
  families = tuple(k.strip() for k in synthetic_config.kernels.split(',') if k.strip())
  noise_sigma = degradations.parse_range(synthetic_config.noise_sigma,
                                         f'{_FIELD}.noise_sigma', float)
  jpeg_quality = degradations.parse_range(synthetic_config.jpeg_quality,
                                          f'{_FIELD}.jpeg_quality', int)
  try:
    return degradations.SyntheticBlur(
        kernels=families, kernel_size=synthetic_config.kernel_size or None,
        noise_sigma=noise_sigma, jpeg_quality=jpeg_quality)
  except InputError as e:
    raise InputError(f'{_FIELD}: {e}') from None


def kernel_margin(spec: degradations.SyntheticBlur) -> int:
  """Half the side of the largest kernel `spec` can draw, in pixels."""
  default = (kernels.DEFAULT_KERNEL_SIZE,)
  sizes = [spec.kernel_size or kernels.GAUSSIAN_FAMILIES.get(k, default)[0]
           for k in spec.kernels]
  return max(sizes) // 2


def find_sharp_images(root: str, split: str, min_size: int) -> list[str]:
  """The readable images under root/split at least `min_size` on each side, sorted;
  the others are logged and skipped."""
  folder = os.path.join(root, split)
  if not os.path.isdir(folder):
    raise InputError(f'config.data.dir={root!r} has no {split!r} folder of sharp images.')
  found, skipped = [], []
  for path, _ in image_files.list_images(folder, field=f'config.data.dir/{split}'):
    try:
      height, width, _ = pairs.read_image_header(path)
    except ValueError as e:
      skipped.append((path, str(e)))
      continue
    if min(height, width) < min_size:
      skipped.append((path, f'it is {width}x{height}, smaller than {min_size}x{min_size} '
                            '(the crop plus the kernel margin)'))
      continue
    found.append(path)
  pairs.report_found(len(found), skipped, 'sharp images', folder, 'it holds no images')
  return found


def train_examples(data_config, *, crop_size: int, hflip: bool, seed: int) -> TrainExamples:
  """Crops of the sharp images under data.dir/train_split, each degraded when drawn."""
  spec = blur_spec(data_config.synthetic)
  margin = kernel_margin(spec)
  patch = crop_size + 2 * margin
  paths = find_sharp_images(data_config.dir, data_config.train_split, min_size=patch)
  path_table = tf.constant(paths)

  def degrade_patch(sharp_patch, g):
    return degradations.degrade_example(sharp_patch, seed, int(g), spec)

  def make(i, g, seeds):
    crop_seed, flip_seed = seeds
    sharp_patch = transforms.random_crop_flip(transforms.decode_image(path_table[i]), patch,
                                              hflip, crop_seed, flip_seed)
    blurred = tf.numpy_function(degrade_patch, [sharp_patch, g], tf.float32, stateful=False)
    blur = transforms.quantize_8bit(transforms.centre_crop(blurred, margin))
    sharp = transforms.centre_crop(sharp_patch, margin)
    blur.set_shape([crop_size, crop_size, 3])
    sharp.set_shape([crop_size, crop_size, 3])
    return {'blur': blur, 'sharp': sharp}

  return TrainExamples(len(paths), make, skip_errors=True)


def write_eval_set(data_config, workdir: str) -> str:
  """Degrades data.dir/eval_split once into the work directory (see the module
  docstring); returns the root holding test/{blur,sharp}. Reused when present."""
  spec = blur_spec(data_config.synthetic)
  source = os.path.abspath(os.path.join(data_config.dir, data_config.eval_split))
  if not os.path.isdir(source):
    raise InputError(f'config.data.dir={data_config.dir!r} has no {data_config.eval_split!r} '
                     'folder of sharp images to build the evaluation set from.')
  eval_seed = data_config.synthetic.eval_seed
  identity = json.dumps([source, dataclasses.asdict(spec), eval_seed], sort_keys=True)
  key = hashlib.sha256(identity.encode()).hexdigest()[:12]
  root = os.path.join(workdir, 'synthetic_eval', key)
  output = os.path.join(root, 'test')
  if not os.path.exists(os.path.join(output, 'manifest.json')):  # written last
    logging.info('Writing the synthetic evaluation set of %s to %s.', source, output)
    degrade_folder.synthesize(source, output, spec, eval_seed,
                          input_field=f'config.data.dir/{data_config.eval_split}')
  return root


def eval_pairs(data_config, workdir: str, *, min_size: int, max_pairs: Optional[int]):
  return folders.written_eval_pairs(write_eval_set(data_config, workdir), min_size, max_pairs)


SOURCE = Source(train_examples, eval_pairs,
                reads_dir='a folder of sharp images (searched recursively) per split')
