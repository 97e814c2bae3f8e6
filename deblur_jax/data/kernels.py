"""Blur kernels (point spread functions) as float32 numpy arrays that sum to one."""

import numpy as np

# Seed report 001: each training image is blurred with one of these, at random.
REPORT_001_GAUSSIANS = {'gauss3': (3, 0.3), 'gauss7': (7, 1.0), 'gauss11': (11, 1.6)}


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
  """A size x size Gaussian (as OpenCV's getGaussianKernel, outer product)."""
  if size < 1 or size % 2 == 0:
    raise ValueError(f'Gaussian kernel size must be odd and positive, got {size}.')
  x = np.arange(size) - (size - 1) / 2
  taps = np.exp(-0.5 * (x / sigma) ** 2)
  kernel = np.outer(taps, taps)
  return (kernel / kernel.sum()).astype(np.float32)


def linear_motion_kernel(length: float, angle_degrees: float, size: int) -> np.ndarray:
  """Uniform motion along a line of `length` pixels through the centre.

  The segment is sampled densely and splatted bilinearly, so lengths and
  angles need not be whole pixels.
  """
  if length > size:
    raise ValueError(f'Motion length {length} does not fit a {size}x{size} kernel.')
  kernel = np.zeros((size, size), np.float64)
  centre = (size - 1) / 2
  theta = np.deg2rad(angle_degrees)
  t = np.linspace(-(length - 1) / 2, (length - 1) / 2, max(2, int(length * 8)))
  ys = centre - t * np.sin(theta)
  xs = centre + t * np.cos(theta)
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  fy, fx = ys - y0, xs - x0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      np.add.at(kernel, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), wy * wx)
  return (kernel / kernel.sum()).astype(np.float32)


def random_motion_kernels(count: int, size: int, min_length: float, seed: int) -> np.ndarray:
  """`count` linear motion kernels of random length in [min_length, size] and angle."""
  rng = np.random.default_rng(seed)
  lengths = rng.uniform(min_length, size, count)
  angles = rng.uniform(0.0, 180.0, count)
  return np.stack([linear_motion_kernel(n, a, size) for n, a in zip(lengths, angles)])


def pad_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
  """Zero-pads a square odd-sized kernel to `size` x `size`, keeping it centred."""
  margin = (size - kernel.shape[0]) // 2
  if margin < 0 or kernel.shape[0] % 2 != size % 2:
    raise ValueError(f'Cannot centre a {kernel.shape[0]}x{kernel.shape[0]} kernel in '
                     f'{size}x{size}.')
  return np.pad(kernel, margin)
