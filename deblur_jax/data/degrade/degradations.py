"""Synthetic degradations of sharp images: blur with a random kernel, noise, JPEG.

Numpy and Pillow only (no TensorFlow, no JAX), so the same functions serve the
`synthesize` command and, through `tf.numpy_function`, a tf.data pipeline.
Images are float32 (H, W, C) in [0, 1].

Every draw comes from a numpy Generator. `example_rng(seed, index)` derives an
independent one for each example from (seed, index) with numpy's
SeedSequence, so example `index` is degraded the same way whatever the order,
process or worker count that computes it:

  def blur_fn(sharp, index):
    return degrade_example(sharp, seed, index, spec)
  blur = tf.numpy_function(blur_fn, [sharp, index], tf.float32)
"""

import dataclasses
import io
from typing import Optional, Union

import numpy as np
from PIL import Image

from deblur_jax.core.errors import InputError
from deblur_jax.data.degrade import kernels as kernels_lib


def fast_fft_size(n: int) -> int:
  """The smallest 2^a 3^b 5^c >= n: FFTs of such sizes are the fastest."""
  size = n
  while True:
    rest = size
    for p in (2, 3, 5):
      while rest % p == 0:
        rest //= p
    if rest == 1:
      return size
    size += 1


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
    raise ValueError(f'Kernels must be 2-D with odd sides, got shape {kernel.shape}.')
  return kernel


def blur_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Convolves each channel of (H, W, C) `image` with `kernel` (odd kh x kw).

  The image is extended by mirroring (numpy's 'symmetric') so the result has
  the input's shape; the kernel's centre pixel is the output's position.
  FFT-based: a 1280x720 RGB image with a 31x31 kernel takes about 0.1 s.
  """
  kernel = _check_kernel(kernel)
  image = np.asarray(image, np.float32)
  if kernel.shape == (1, 1):  # a scaling: exact without the FFT's rounding
    return image * kernel[0, 0]
  squeeze = image.ndim == 2
  if squeeze:
    image = image[..., None]
  kh, kw = kernel.shape
  height, width = image.shape[:2]
  padded = np.pad(image, ((kh // 2,) * 2, (kw // 2,) * 2, (0, 0)), mode='symmetric')
  # A circular convolution of size >= the padded image is exact on the H x W
  # outputs that need no wrap-around: those from index (kh - 1, kw - 1) on.
  shape = (fast_fft_size(padded.shape[0]), fast_fft_size(padded.shape[1]))
  spectrum = np.fft.rfft2(padded, s=shape, axes=(0, 1))
  spectrum *= np.fft.rfft2(kernel, s=shape)[..., None]
  full = np.fft.irfft2(spectrum, s=shape, axes=(0, 1))
  out = full[kh - 1:kh - 1 + height, kw - 1:kw - 1 + width].astype(np.float32)
  return out[..., 0] if squeeze else out


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  """`image` plus white Gaussian noise of standard deviation `sigma`, clipped to [0, 1]."""
  noise = rng.standard_normal(np.shape(image), dtype=np.float32) * np.float32(sigma)
  return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
  """The (H, W, 3) or (H, W) image after an 8-bit JPEG round trip at
  `quality` (1-100) with Pillow (4:2:0 chroma subsampling, its default)."""
  levels = np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(levels).save(buffer, format='JPEG', quality=int(quality))
  buffer.seek(0)
  with Image.open(buffer) as decoded:
    return np.asarray(decoded, np.float32) / 255.0


Range = Union[float, tuple[float, float]]


def parse_range(values, field: str, kind):
  """A value or an inclusive (low, high) range from its text: a list of one or two
  strings (an absl list flag) or one comma-separated string (a config field).
  `field` names the flag or field in the error."""
  parts = [v.strip() for v in (values.split(',') if isinstance(values, str) else values)]
  try:
    parsed = [kind(v) for v in parts if v]
  except ValueError:
    parsed = []
  if len(parsed) not in (1, 2):
    raise InputError(f'{field}={",".join(parts)} must be one {kind.__name__} or two (a LOW,HIGH '
                     'range), comma-separated.')
  return parsed[0] if len(parsed) == 1 else tuple(parsed)


def _as_range(value, name: str) -> tuple[float, float]:
  low, high = (value, value) if np.isscalar(value) else tuple(value)
  if low > high:
    raise InputError(f'{name}={value}: the range runs from low to high.')
  return low, high


@dataclasses.dataclass(frozen=True)
class SyntheticBlur:
  """What `degrade` does to a sharp image.

  kernels: kernel families (kernels.KERNEL_FAMILIES), one picked uniformly.
  kernel_size: odd side of the kernels, or None for each family's default
    (the Gaussians' own 3/7/11, kernels.DEFAULT_KERNEL_SIZE for the others).
  noise_sigma: standard deviation of the white Gaussian noise added after the
    blur, in [0, 1] intensity units; a (low, high) range draws it uniformly.
  jpeg_quality: 0 for no JPEG; a quality (1-100) or an inclusive (low, high)
    range of them for a final JPEG round trip.
  """
  kernels: tuple[str, ...] = ('gauss7', 'shake')
  kernel_size: Optional[int] = None
  noise_sigma: Range = 0.0
  jpeg_quality: Union[int, tuple[int, int]] = 0

  def __post_init__(self):
    object.__setattr__(self, 'kernels', tuple(self.kernels))
    unknown = [k for k in self.kernels if k not in kernels_lib.KERNEL_FAMILIES]
    if unknown or not self.kernels:
      raise InputError(f'kernels={",".join(self.kernels)}: unknown families '
                       f'{unknown or "(none given)"}; choose from '
                       f'{",".join(kernels_lib.KERNEL_FAMILIES)}.')
    if self.kernel_size is not None:
      smallest = max((kernels_lib.GAUSSIAN_FAMILIES.get(k, (1,))[0] for k in self.kernels))
      if self.kernel_size % 2 == 0 or self.kernel_size < smallest:
        raise InputError(f'kernel_size={self.kernel_size} must be odd and at least {smallest} '
                         f'for the families {",".join(self.kernels)}.')
    low, high = _as_range(self.noise_sigma, 'noise_sigma')
    if low < 0:
      raise InputError(f'noise_sigma={self.noise_sigma} must not be negative.')
    low, high = _as_range(self.jpeg_quality, 'jpeg_quality')
    if not (low == high == 0 or 1 <= low <= high <= 100):
      raise InputError(f'jpeg_quality={self.jpeg_quality} must be 0 (no JPEG) or qualities '
                       'in 1-100.')


@dataclasses.dataclass(frozen=True)
class Degraded:
  """The degraded image and how it was made."""
  image: np.ndarray  # float32 (H, W, 3) in [0, 1].
  kernel: np.ndarray  # float32 (k, k), sums to one.
  family: str
  kernel_params: dict  # What the family drew (JSON-able).
  noise_sigma: float  # 0 when no noise was added.
  jpeg_quality: int  # 0 when no JPEG round trip.


def example_rng(seed: int, index: int) -> np.random.Generator:
  """The generator of example `index` under run seed `seed` (both integers >= 0)."""
  return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def degrade(image: np.ndarray, rng: np.random.Generator, spec: SyntheticBlur) -> Degraded:
  """Blurs (H, W, 3) `image` with a random kernel, then adds noise and JPEG per `spec`.

  The kernel, the noise and the JPEG quality come from separate child streams
  of `rng`, so turning noise or JPEG on or off keeps the kernels the same.
  """
  kernel_rng, noise_rng, jpeg_rng = rng.spawn(3)
  family = spec.kernels[kernel_rng.integers(len(spec.kernels))]
  kernel, params = kernels_lib.sample_kernel(kernel_rng, family, spec.kernel_size)
  out = blur_image(image, kernel)
  sigma = float(noise_rng.uniform(*_as_range(spec.noise_sigma, 'noise_sigma')))
  if sigma > 0:
    out = add_gaussian_noise(out, sigma, noise_rng)
  else:
    out = np.clip(out, 0.0, 1.0)
  low, high = _as_range(spec.jpeg_quality, 'jpeg_quality')
  quality = int(jpeg_rng.integers(low, high + 1))
  if quality > 0:
    out = jpeg_compress(out, quality)
  return Degraded(out, kernel, family, params, sigma, quality)


def degrade_example(image: np.ndarray, seed: int, index: int, spec: SyntheticBlur) -> np.ndarray:
  """The degraded float32 image of example `index`: for `tf.numpy_function`."""
  return degrade(np.asarray(image, np.float32), example_rng(seed, index), spec).image
