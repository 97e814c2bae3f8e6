"""Blur kernels (point spread functions) as float32 numpy arrays that sum to one."""

import numpy as np

from deblur_jax.core.lookup import lookup

# Gaussian kernel families: (side, sigma). The 2023 Keras UNet report blurred each
# training image with one of these, at random.
GAUSSIAN_FAMILIES = {'gauss3': (3, 0.3), 'gauss7': (7, 1.0), 'gauss11': (11, 1.6)}


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


def defocus_kernel(radius: float, size: int) -> np.ndarray:
  """An out-of-focus disk of `radius` pixels, anti-aliased by the area each
  pixel has inside the circle (16 x 16 sub-samples). Radius 0 is a delta."""
  if size < 1 or size % 2 == 0:
    raise ValueError(f'Defocus kernel size must be odd and positive, got {size}.')
  if not 0 <= radius <= size / 2:
    raise ValueError(f'Defocus radius {radius} does not fit a {size}x{size} kernel.')
  if radius == 0:
    return pad_kernel(np.ones((1, 1), np.float32), size)
  sub = 16
  offsets = (np.arange(sub) + 0.5) / sub - 0.5
  x = np.arange(size) - (size - 1) / 2
  fine = (x[:, None] + offsets[None, :]).ravel()  # sub-sample coordinates, pixel-major
  inside = fine[:, None] ** 2 + fine[None, :] ** 2 <= radius ** 2
  coverage = inside.reshape(size, sub, size, sub).mean(axis=(1, 3))
  return (coverage / coverage.sum()).astype(np.float32)


def camera_shake_trajectory(rng: np.random.Generator, trajectory_size: int = 64,
                            anxiety: float = 0.005, num_samples: int = 2000,
                            max_total_length: float = 60.0) -> np.ndarray:
  """A random camera-shake path (Boracchi and Foi, 2012), as (num_samples, 2) (x, y).

  A particle moves with constant speed, so that the path is `max_total_length`
  pixels long. At each sample its velocity receives a Gaussian shake, an
  inertial pull back towards the start, and, rarely, an impulsive jump that
  roughly reverses it (a hand pressing the button, then compensating). Each of
  the three has a random strength, all scaled by `anxiety` (0 gives a straight
  line). The path's bounding box is centred in a `trajectory_size` square.
  """
  if not 0 < max_total_length <= trajectory_size - 1:
    raise ValueError(f'A camera-shake path of length {max_total_length} does not fit a '
                     f'{trajectory_size}x{trajectory_size} canvas.')
  if num_samples < 2 or anxiety < 0:
    raise ValueError(f'Need num_samples >= 2 and anxiety >= 0, got {num_samples}, {anxiety}.')
  centripetal = 0.7 * rng.uniform()  # inertia towards the starting point
  jump_probability = 0.2 * rng.uniform() * anxiety
  shake = 10.0 * rng.uniform()  # scale of the Gaussian velocity perturbations
  angle = 2 * np.pi * rng.uniform()
  # All random numbers up front, in a fixed order: the path depends on the seed alone.
  jumps = rng.uniform(size=num_samples - 1) < jump_probability
  jump_angles = np.pi + rng.uniform(-0.5, 0.5, num_samples - 1)
  noise = rng.standard_normal((num_samples - 1, 2)) @ np.array([1.0, 1.0j])

  step = max_total_length / (num_samples - 1)
  velocity = step * np.exp(1j * angle)
  position = 0j
  path = np.zeros(num_samples, np.complex128)
  for t in range(num_samples - 1):
    dv = anxiety * (shake * noise[t] - centripetal * position) * step
    if jumps[t]:
      dv += 2 * velocity * np.exp(1j * jump_angles[t])
    velocity += dv
    velocity *= step / abs(velocity)  # constant speed: equal exposures, equal lengths
    position += velocity
    path[t + 1] = position
  xy = np.stack([path.real, path.imag], axis=1)
  centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
  return xy - centre + (trajectory_size - 1) / 2


def trajectory_to_psf(trajectory: np.ndarray, psf_size: int, exposure: float = 1.0) -> np.ndarray:
  """Rasterises the first `exposure` (in (0, 1]) of a camera-shake path into a
  psf_size x psf_size PSF that sums to one.

  Sample t stands for the time interval [t, t + 1) of the path's num_samples;
  the exposed part of each is splatted bilinearly. The PSF's centre of mass is
  put at the kernel centre (so blurring shifts nothing), or as near as the
  path's extent allows.
  """
  if psf_size < 1 or psf_size % 2 == 0:
    raise ValueError(f'PSF size must be odd and positive, got {psf_size}.')
  if not 0 < exposure <= 1:
    raise ValueError(f'Exposure must be in (0, 1], got {exposure}.')
  xy = np.asarray(trajectory, np.float64)
  weights = np.clip(exposure * len(xy) - np.arange(len(xy)), 0.0, 1.0)
  xy, weights = xy[weights > 0], weights[weights > 0]
  low, high = xy.min(axis=0), xy.max(axis=0)
  if np.any(high - low > psf_size - 1):
    raise ValueError(f'The path spans {np.max(high - low):.1f} pixels; a {psf_size}x{psf_size} '
                     'PSF cannot hold it.')
  centroid = weights @ xy / weights.sum()
  shift = np.clip((psf_size - 1) / 2 - centroid, -low, psf_size - 1 - high)
  xy = xy + shift
  psf = np.zeros((psf_size, psf_size), np.float64)
  x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
  fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
  for dy, wy in ((0, 1 - fy), (1, fy)):
    for dx, wx in ((0, 1 - fx), (1, fx)):
      # A coordinate of exactly psf_size - 1 gives its far neighbour zero weight.
      np.add.at(psf, (np.minimum(y0 + dy, psf_size - 1), np.minimum(x0 + dx, psf_size - 1)),
                weights * wy * wx)
  return (psf / psf.sum()).astype(np.float32)


# Families that `random_kernel` draws from, and the ranges of their parameters.
# 'identity' (a 1x1 kernel, no blur) leaves noise and JPEG as the only degradations,
# as for denoising.
KERNEL_FAMILIES = (*GAUSSIAN_FAMILIES, 'motion', 'shake', 'defocus', 'identity')
DEFAULT_KERNEL_SIZE = 31  # of the random families; the Gaussians keep their own size
MIN_MOTION_LENGTH = 3.0  # pixels; the longest fills the kernel
SHAKE_ANXIETY = (0.001, 0.01)  # DeblurGAN's range
SHAKE_EXPOSURES = (0.1, 0.5, 1.0)  # fractions of the path; DeblurGAN's, without the ~delta 1/1000
SHAKE_LENGTH_FRACTION = 0.9  # path length / (kernel size - 1); DeblurGAN draws 60 in 64
MIN_DEFOCUS_RADIUS = 1.0  # pixels; the largest is a quarter of the kernel size


def sample_kernel(rng: np.random.Generator, family: str,
                  size: int | None = None) -> tuple[np.ndarray, dict]:
  """One random kernel of `family` (see KERNEL_FAMILIES) and its parameters.

  `size` (odd) defaults to the Gaussian's own size or DEFAULT_KERNEL_SIZE; a
  Gaussian asked for a larger size is zero-padded. Returns float32
  (size, size) summing to one, and a JSON-able dict of what was drawn.
  """
  lookup(KERNEL_FAMILIES, family, 'kernel family')
  if family == 'identity':  # 1x1 unless a size is asked for
    return pad_kernel(np.ones((1, 1), np.float32), size or 1), {}
  if family in GAUSSIAN_FAMILIES:
    own_size, sigma = GAUSSIAN_FAMILIES[family]
    size = size or own_size
    if size < own_size:
      raise ValueError(f'Kernel family {family!r} needs a size of at least {own_size}.')
    return pad_kernel(gaussian_kernel(own_size, sigma), size), {'sigma': sigma}
  size = size or DEFAULT_KERNEL_SIZE
  if size < 1 or size % 2 == 0:
    raise ValueError(f'Kernel size must be odd and positive, got {size}.')
  if family == 'motion':
    length = float(rng.uniform(min(MIN_MOTION_LENGTH, size), size))
    angle = float(rng.uniform(0.0, 180.0))
    return linear_motion_kernel(length, angle, size), {'length': length, 'angle': angle}
  if family == 'defocus':
    radius = float(rng.uniform(min(MIN_DEFOCUS_RADIUS, size / 4), max(size / 4, 1.0)))
    radius = min(radius, size / 2)
    return defocus_kernel(radius, size), {'radius': radius}
  anxiety = float(rng.uniform(*SHAKE_ANXIETY))
  exposure = float(rng.choice(SHAKE_EXPOSURES))
  length = SHAKE_LENGTH_FRACTION * (size - 1)
  if length == 0:
    return pad_kernel(np.ones((1, 1), np.float32), size), {'anxiety': anxiety}
  path = camera_shake_trajectory(rng, size, anxiety, max_total_length=length)
  return trajectory_to_psf(path, size, exposure), {'anxiety': anxiety, 'exposure': exposure,
                                                   'length': length}


def random_kernel(rng: np.random.Generator, family: str, size: int | None = None) -> np.ndarray:
  """One random float32 kernel of `family`; see `sample_kernel`."""
  return sample_kernel(rng, family, size)[0]
