"""The embedded demo data: scikit-image's bundled photos with synthetic blur.

config.data.source = 'demo', the default when `config.data.dir` is empty, so
the main command runs on a fresh machine with nothing downloaded. Crops of the
photos that config.data.demo.train_photos names are blurred on the fly with the
three Gaussian kernels of the 2023 Keras UNet report (3x3 sigma 0.3, 7x7 sigma
1.0, 11x11 sigma 1.6) or one of config.data.demo.motion_kernels random linear
motion kernels. The held-out photos, blurred with fixed kernels, are written
once as PNG pairs in the GOPRO_Large layout (one 'sequence' per blur), so
evaluation reads them like any dataset and reports each blur apart.
"""

import os
from typing import Optional

import numpy as np
import tensorflow as tf
from PIL import Image

from deblur_jax.core import files
from deblur_jax.core.errors import InputError
from deblur_jax.data import transforms
from deblur_jax.data.degrade import kernels
from deblur_jax.data.sources import Source, TrainExamples, folders

HELD_OUT_PHOTOS = ('chelsea', 'coffee')
# The photos config.data.demo.train_photos may name: scikit-image's bundled ones that
# need no download, colour and grey (grey ones train as three equal channels), less
# the held-out two.
BUNDLED_PHOTOS = ('astronaut', 'rocket', 'motorcycle_left', 'motorcycle_right',
                  'immunohistochemistry', 'hubble_deep_field', 'retina', 'colorwheel', 'camera',
                  'grass', 'gravel', 'brick', 'coins', 'clock', 'moon', 'page', 'text', 'cell')

KERNEL_SIZE = 15  # Every training kernel is zero-padded to this size.
_MOTION_BANK_SEED = 1

# The fixed blurs of the held-out photos, by name.
EVAL_BLURS = {
    **{name: kernels.gaussian_kernel(*spec) for name, spec in kernels.GAUSSIAN_FAMILIES.items()},
    'motion': kernels.linear_motion_kernel(9.0, 30.0, 11),
}


def load_photo(name: str) -> np.ndarray:
  """A bundled scikit-image photo as uint8 RGB (H, W, 3); grey photos get three equal channels."""
  try:
    import skimage.data  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise InputError('The demo data needs scikit-image (pip install scikit-image), or set '
                     'config.data.dir to a dataset.') from None
  if name in ('motorcycle_left', 'motorcycle_right'):
    left, right, _ = skimage.data.stereo_motorcycle()
    photo = left if name == 'motorcycle_left' else right
  else:
    photo = getattr(skimage.data, name)()
  if photo.ndim == 2:
    photo = np.stack([photo] * 3, axis=-1)
  return np.ascontiguousarray(photo[..., :3])


def train_photo_names(data_config) -> list[str]:
  """config.data.demo.train_photos as a list, checked against BUNDLED_PHOTOS."""
  names = [n.strip() for n in data_config.demo.train_photos.split(',') if n.strip()]
  unknown = [n for n in names if n not in BUNDLED_PHOTOS]
  if unknown or not names:
    raise InputError(f'config.data.demo.train_photos names {unknown or "no photo"}; choose from '
                     f'{", ".join(BUNDLED_PHOTOS)}, comma-separated.')
  return names


def training_kernel_bank(motion_fraction: float,
                         num_motion_kernels: int) -> tuple[np.ndarray, np.ndarray]:
  """(kernels (K, 15, 15), probabilities (K,)): the three Keras-UNet-report Gaussians
  sharing 1 - motion_fraction, and `num_motion_kernels` random motion kernels sharing the rest."""
  if not 0.0 <= motion_fraction <= 1.0:
    raise InputError(f'config.data.demo.motion_fraction={motion_fraction} must lie in [0, 1].')
  if num_motion_kernels < 1:
    raise InputError(f'config.data.demo.motion_kernels={num_motion_kernels} must be at least 1.')
  gaussians = [kernels.pad_kernel(kernels.gaussian_kernel(*spec), KERNEL_SIZE)
               for spec in kernels.GAUSSIAN_FAMILIES.values()]
  motions = kernels.random_motion_kernels(num_motion_kernels, KERNEL_SIZE, min_length=5.0,
                                          seed=_MOTION_BANK_SEED)
  bank = np.concatenate([np.stack(gaussians), motions]).astype(np.float32)
  probs = np.concatenate([np.full(len(gaussians), (1 - motion_fraction) / len(gaussians)),
                          np.full(len(motions), motion_fraction / len(motions))])
  return bank, probs


def train_examples(data_config, *, crop_size: int, hflip: bool, seed: int) -> TrainExamples:
  """Blurred/sharp crops of the training photos, blurred with a kernel drawn per example."""
  del seed  # The kernel is drawn with the example's third seed.
  names = train_photo_names(data_config)
  photos = [load_photo(name) for name in names]
  patch = crop_size + KERNEL_SIZE - 1
  too_small = [n for n, p in zip(names, photos) if min(p.shape[:2]) < patch]
  if too_small:
    largest = min(min(p.shape[:2]) for p in photos) - KERNEL_SIZE + 1
    raise InputError(f'config.data.crop_size={crop_size} is too large for the demo photos '
                     f'{too_small}; use at most {largest}.')
  bank, probs = training_kernel_bank(data_config.demo.motion_fraction,
                                     data_config.demo.motion_kernels)
  flat = tf.constant(np.concatenate([p.ravel() for p in photos]))
  sizes = np.array([p.size for p in photos])
  offsets = tf.constant(np.concatenate([[0], np.cumsum(sizes)[:-1]]), tf.int64)
  shapes = tf.constant([p.shape for p in photos], tf.int64)
  bank = tf.constant(bank)
  log_probs = tf.math.log(tf.constant(probs[None], tf.float32))

  def make(i, g, seeds):
    del g
    crop_seed, flip_seed, kernel_seed = seeds
    photo = tf.reshape(flat[offsets[i]:offsets[i] + tf.reduce_prod(shapes[i])], shapes[i])
    photo.set_shape([None, None, 3])
    sharp_patch = transforms.random_crop_flip(tf.image.convert_image_dtype(photo, tf.float32),
                                              patch, hflip, crop_seed, flip_seed)
    k = tf.random.stateless_categorical(log_probs, 1, kernel_seed)[0, 0]
    blur = transforms.quantize_8bit(transforms.blur_valid(sharp_patch, bank[k]))
    sharp = transforms.centre_crop(sharp_patch, KERNEL_SIZE // 2)
    blur.set_shape([crop_size, crop_size, 3])
    sharp.set_shape([crop_size, crop_size, 3])
    return {'blur': blur, 'sharp': sharp}

  return TrainExamples(len(photos), make, num_seeds=3)


def _to_uint8(image) -> np.ndarray:
  return np.round(np.asarray(image) * 255.0).astype(np.uint8)


def _write_png_atomically(path: str, image: np.ndarray) -> None:
  with files.atomic_write(path) as f:
    Image.fromarray(image).save(f, format='PNG')


def write_eval_pairs(root: str, blur_names: list[str]) -> str:
  """Writes the held-out photos blurred with each of `blur_names` under `root`.

  Layout: root/test/BLUR/{blur,sharp}/PHOTO.png. The sharp image is the centre
  of the photo that the blurred one covers with full kernel windows. Existing
  files are kept. Returns `root`.
  """
  unknown = [b for b in blur_names if b not in EVAL_BLURS]
  if unknown or not blur_names:
    raise InputError(f'config.data.demo.eval_blurs names {unknown or "no blur"}; choose from '
                     f'{sorted(EVAL_BLURS)}, comma-separated.')
  for blur_name in blur_names:
    kernel = EVAL_BLURS[blur_name]
    for photo_name in HELD_OUT_PHOTOS:
      folder = os.path.join(root, 'test', blur_name)
      blur_path = os.path.join(folder, 'blur', f'{photo_name}.png')
      sharp_path = os.path.join(folder, 'sharp', f'{photo_name}.png')
      if os.path.exists(blur_path) and os.path.exists(sharp_path):
        continue
      photo = tf.image.convert_image_dtype(load_photo(photo_name), tf.float32)
      blurred = transforms.quantize_8bit(transforms.blur_valid(photo, kernel))
      sharp = transforms.centre_crop(photo, kernel.shape[0] // 2)
      _write_png_atomically(sharp_path, _to_uint8(sharp))
      _write_png_atomically(blur_path, _to_uint8(blurred))
  return root


def eval_pairs(data_config, workdir: str, *, min_size: int, max_pairs: Optional[int]):
  """The held-out photos with each of data.demo.eval_blurs, written once under
  workdir/demo_data (see write_eval_pairs), and their reader."""
  blurs = [b.strip() for b in data_config.demo.eval_blurs.split(',') if b.strip()]
  root = write_eval_pairs(os.path.join(workdir, 'demo_data'), blurs)
  return folders.written_eval_pairs(root, min_size, max_pairs)


SOURCE = Source(train_examples, eval_pairs)
