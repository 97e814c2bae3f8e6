"""Shared test set-up: 4 CPU devices, tiny configs and generated PNG datasets."""

import os

# Before jax is imported anywhere: every in-process test sees 4 CPU devices, so
# the sharded steps really split batches.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pathlib  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))  # `from configs import ...` in config files.


def smooth_image(rng, height, width):
  """A random smooth RGB uint8 image (sums of a few sinusoids)."""
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  channels = []
  for _ in range(3):
    value = np.zeros_like(y)
    for _ in range(3):
      fy, fx, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
      value += np.sin(2 * np.pi * (fy * y + fx * x) + phase)
    channels.append(value)
  image = np.stack(channels, -1)
  image = (image - image.min()) / (image.max() - image.min() + 1e-9)
  return np.round(image * 255).astype(np.uint8)


def box_blur(image, k=5):
  padded = np.pad(image.astype(np.float32), ((k // 2,) * 2, (k // 2,) * 2, (0, 0)), mode='edge')
  out = np.zeros(image.shape, np.float32)
  for dy in range(k):
    for dx in range(k):
      out += padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
  return np.round(out / (k * k)).astype(np.uint8)


def write_png(path, array):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def make_pair_tree(root, layout='native', splits=('train', 'test'), num_sequences=2,
                   per_sequence=3, size=(48, 64), seed=0, blur_folder='blur'):
  """Writes a small GoPro-like dataset and returns its root.

  layout 'native': SPLIT/SEQ/{blur,sharp}/NNNNNN.png; 'flat': SPLIT/{blur,sharp}/NAME.png.
  """
  rng = np.random.default_rng(seed)
  root = pathlib.Path(root)
  for split in splits:
    for s in range(num_sequences):
      for i in range(per_sequence):
        sharp = smooth_image(rng, *size)
        blurred = box_blur(sharp)
        if layout == 'native':
          folder, name = root / split / f'GOPR{s:04d}_00_00', f'{i:06d}.png'
        else:
          folder, name = root / split, f'seq{s}_{i:06d}.png'
        write_png(folder / blur_folder / name, blurred)
        write_png(folder / 'sharp' / name, sharp)
  return root


@pytest.fixture
def pair_tree(tmp_path):
  return make_pair_tree(tmp_path / 'data')


@pytest.fixture
def tiny_config():
  from configs import tiny  # pylint: disable=g-import-not-at-top
  return tiny.get_config()
