"""The papers' metric protocols: how PSNR and SSIM of an image are computed, by name.

`config.eval.protocol` names one of PROTOCOLS. Each takes (images, sharp), float
(N, H, W, 3) batches in [0, 1] (images may stray outside; each protocol clamps),
and returns {'psnr': (N,), 'ssim': (N,)}, jittable. The evaluation scores the
deblurred output and the blurred input (input_psnr, input_ssim) with the same
function: a protocol treats every image it scores as it treats a model's output.

- 'mimo', the MIMO-UNet code: images clamped to [0, 1] and kept in float, the
  sharp image as read; PSNR and scikit-image's Gaussian SSIM per channel
  (`metrics.psnr`, `metrics.ssim`).
- 'basicsr', BasicSR's basicsr/metrics/psnr_ssim.py (github XPixelGroup/BasicSR
  at 8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a): output and sharp image rounded
  to uint8 as tensor2img saves them, round(clip(x, 0, 1) * 255); `crop_border`
  pixels cut from each side; optionally the Y of BT.601 YCbCr (color_util's
  rgb2ycbcr, y_only: Y = 16 + 65.481 R + 128.553 G + 24.966 B on the 0-255 scale
  for R, G, B in [0, 1], not rounded); calculate_psnr on 0-255; calculate_ssim:
  each channel's SSIM under an 11x11 Gaussian (cv2.getGaussianKernel(11, 1.5)
  outer product), C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, over the positions
  where the window fits ([5:-5, 5:-5] of cv2.filter2D), averaged over channels.
  SSIM does not depend on the scale when the constants scale with it, so this is
  `metrics.ssim` of the uint8 levels on [0, 1]: on 8-bit images with no crop and
  no Y, 'basicsr' and 'mimo' agree; they differ only through the rounding.
- 'nafnet', NAFNet's GoPro numbers (github megvii-research/NAFNet at
  2b4af71ebe098a92a75910c233a3965a3e93ede4, basicsr/metrics/psnr_ssim.py with
  options/test/GoPro/*.yml: crop_border 0, RGB, calculate_ssim's default
  ssim3d=True): uint8 as 'basicsr', PSNR on 0-255, and `_ssim_3d`: one 11x11x11
  Gaussian, the outer product of three sigma-1.5 ones, over the H x W x 3
  volume, each axis padded by 5 replicated edge values (Conv3d
  padding_mode='replicate'), the SSIM map kept whole (H x W x 3, no crop) and
  averaged. Like NAFNet, an image whose uint8 values are all <= 1 is scored with
  a peak of 1 instead of 255 (its `max_value = 1 if img1.max() <= 1 else 255`).

- 'realblur' and 'rsblur', RealBlur's and RSBlur's scripts: each output aligned
  to its sharp image (ECC homography) before PSNR and SSIM over the pixels the
  alignment covers; RSBlur clips after the alignment (evaluation/realblur.py).
  These run on the host, in NumPy and OpenCV (`Protocol.on_host`): the eval step
  returns the outputs and processes score them while the device goes on. The
  blurred input is scored without alignment, as the official script does (its
  SSIM with the same mask-free border crop; the script itself reports none).

The references hold images in BGR order; no number here depends on it. All is
float32 on [0, 1]; the references compute in float64 (NAFNet's 3-D SSIM in
float32 on a GPU). Against their own code (tests/fixtures/metrics/make_fixture.py)
the differences stay under 4e-6 dB and 6e-7 SSIM, on 37x45 and 720x1280 images.
"""

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.evaluation import dpdd, metrics, realblur


def _uint8_levels(images):
  """round(clip(x, 0, 1) * 255) of (N, H, W, C) images: the 0-255 values tensor2img saves."""
  return jnp.round(jnp.clip(images.astype(jnp.float32), 0.0, 1.0) * 255.0)


def _luma(images):
  """BT.601 Y of (N, H, W, 3) RGB in [0, 1], as BasicSR's rgb2ycbcr(y_only=True) / 255:
  (N, H, W, 1) in [16/255, 235/255]."""
  r, g, b = images[..., 0:1], images[..., 1:2], images[..., 2:3]
  # Multiply-adds, not a matmul, which GPUs may run in TF32.
  return (65.481 * r + 128.553 * g + 24.966 * b + 16.0) / 255.0


def _check_crop(crop_border: int, shape) -> None:
  height, width = shape[1] - 2 * crop_border, shape[2] - 2 * crop_border
  window = metrics.ssim_window()
  if min(height, width) < window:
    raise InputError(f'config.eval.crop_border={crop_border} leaves {max(height, 0)}x'
                     f'{max(width, 0)} pixels of a {shape[1]}x{shape[2]} image; the basicsr '
                     f'SSIM needs at least {window}x{window}: lower crop_border.')


def mimo(images, sharp) -> dict:
  """MIMO-UNet's PSNR and SSIM of (N, H, W, 3) `images` (clamped) against `sharp`."""
  images = jnp.clip(images, 0.0, 1.0)
  return {'psnr': metrics.psnr(images, sharp), 'ssim': metrics.ssim(images, sharp)}


def basicsr(images, sharp, *, crop_border: int = 0, y_channel: bool = False) -> dict:
  """BasicSR's calculate_psnr and calculate_ssim of (N, H, W, 3) `images` against `sharp`,
  both rounded to uint8; `crop_border` pixels cut from each side, the Y channel alone if
  `y_channel`."""
  _check_crop(crop_border, images.shape)
  x, y = _uint8_levels(images) / 255.0, _uint8_levels(sharp) / 255.0
  if crop_border:
    x = x[:, crop_border:-crop_border, crop_border:-crop_border]
    y = y[:, crop_border:-crop_border, crop_border:-crop_border]
  if y_channel:
    x, y = _luma(x), _luma(y)
  return {'psnr': metrics.psnr(x, y), 'ssim': metrics.ssim(x, y)}


def _channel_mix(taps: np.ndarray, channels: int) -> np.ndarray:
  """(channels, channels) float32: the Gaussian `taps` along the channel axis with
  edge-replicated padding, as a matrix (row: output channel)."""
  radius = taps.shape[0] // 2
  mix = np.zeros((channels, channels))
  for c in range(channels):
    for k, tap in enumerate(taps.astype(np.float64)):
      mix[c, min(max(c + k - radius, 0), channels - 1)] += tap
  return mix.astype(np.float32)


def _gaussian_3d(stack, channels: int = 3):
  """NAFNet's 3-D Gaussian of each `channels`-channel image in an (N, H, W, k * channels)
  stack: separable, every axis edge-padded by the radius, the same shape out."""
  taps = metrics.gaussian_taps(metrics.SSIM_SIGMA, metrics.SSIM_TRUNCATE)
  radius = taps.shape[0] // 2
  padded = jnp.pad(stack, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='edge')
  spatial = metrics.filter_valid(padded, taps)
  n, h, w, c = spatial.shape
  groups = spatial.reshape(n, h, w, c // channels, channels)
  mix = _channel_mix(taps, channels)
  # Multiply-adds, not a matmul, which GPUs may run in TF32.
  mixed = sum(groups[..., j:j + 1] * mix[:, j] for j in range(channels))
  return mixed.reshape(n, h, w, c)


def nafnet(images, sharp) -> dict:
  """NAFNet's PSNR and 3-D SSIM of (N, H, W, 3) `images` against `sharp`, both rounded
  to uint8."""
  levels = _uint8_levels(images)
  # NAFNet's peak: 1 for an image whose uint8 values are all <= 1, else 255.
  peak = jnp.where(jnp.max(levels, axis=(1, 2, 3)) <= 1.0, 1.0 / 255.0, 1.0)
  x, y = levels / 255.0, _uint8_levels(sharp) / 255.0
  ssim_map = metrics.ssim_map(x, y, _gaussian_3d, max_value=peak[:, None, None, None])
  return {'psnr': metrics.psnr(x, y, max_value=peak), 'ssim': jnp.mean(ssim_map, axis=(1, 2, 3))}


PROTOCOLS = {'mimo': mimo, 'basicsr': basicsr, 'nafnet': nafnet}
# Scored on the host, one image at a time: f(result, target, blurred or None) -> psnr,
# ssim (and mae for 'dpdd'), input_psnr, input_ssim unless blurred is None, and
# 'error' where the image cannot be scored; NumPy (H, W, 3) images in [0, 1].
HOST_PROTOCOLS = {'realblur': functools.partial(realblur.score_with_input, clip=False),
                  'rsblur': functools.partial(realblur.score_with_input, clip=True),
                  'dpdd': dpdd.score_with_input}
# The config.eval options each protocol reads; the others must keep their defaults.
_OPTIONS = {'mimo': (), 'basicsr': ('crop_border', 'y_channel'), 'nafnet': (),
            'realblur': (), 'rsblur': (), 'dpdd': ()}
_WHY_NO_OPTIONS = {'mimo': 'it scores the whole RGB image, as the MIMO-UNet code does',
                   'nafnet': "NAFNet's GoPro numbers score the whole RGB image",
                   'realblur': "RealBlur's script scores the aligned RGB image",
                   'rsblur': "RSBlur's script scores the aligned RGB image",
                   'dpdd': "Restormer's DPDD scripts score the whole RGB image"}
# Per-image scores a protocol gives besides PSNR and SSIM.
_EXTRA_METRICS = {'dpdd': ('mae',)}


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A protocol of PROTOCOLS with its options, checked: call it as
  `protocol(images, sharp)` -> {'psnr': (N,), 'ssim': (N,)}."""
  name: str = 'mimo'
  crop_border: int = 0  # Pixels cut from each side ('basicsr').
  y_channel: bool = False  # Score the Y of YCbCr instead of RGB ('basicsr').

  def __post_init__(self):
    lookup([*PROTOCOLS, *HOST_PROTOCOLS], self.name, 'config.eval.protocol')
    if self.crop_border < 0:
      raise InputError(f'config.eval.crop_border={self.crop_border} must be >= 0 (pixels '
                       'cut from each side).')
    options = {'crop_border': self.crop_border, 'y_channel': self.y_channel}
    for option, value in options.items():
      if value != Protocol.__dataclass_fields__[option].default and (
          option not in _OPTIONS[self.name]):
        raise InputError(f'config.eval.{option}={value} is set, but config.eval.protocol='
                         f'{self.name!r} takes no options ({_WHY_NO_OPTIONS[self.name]}); '
                         "crop_border and y_channel apply to 'basicsr' only.")

  def __call__(self, images, sharp) -> dict:
    """PSNR (dB) and SSIM of each of the (N, H, W, 3) `images` against `sharp`, in [0, 1]."""
    if self.on_host:
      raise TypeError(f'protocol {self.name!r} runs on the host: HOST_PROTOCOLS.')
    options = {k: getattr(self, k) for k in _OPTIONS[self.name]}
    return PROTOCOLS[self.name](images, sharp, **options)

  @property
  def on_host(self) -> bool:
    """Scored on the host after the eval step (HOST_PROTOCOLS), not inside it."""
    return self.name in HOST_PROTOCOLS

  @property
  def extra_metrics(self) -> tuple[str, ...]:
    """Per-image scores besides PSNR and SSIM (and the input's): ('mae',) for 'dpdd'."""
    return _EXTRA_METRICS.get(self.name, ())

  @property
  def min_size(self) -> int:
    """The smallest image side this protocol scores."""
    if self.name == 'nafnet':
      return 1  # Its SSIM pads every axis.
    if self.name == 'dpdd':
      return 7  # scikit-image's default SSIM window.
    if self.on_host:
      return metrics.ssim_window() + 2 * realblur.SSIM_BORDER
    return metrics.ssim_window() + 2 * self.crop_border

  def fields(self) -> dict:
    """{'protocol', 'crop_border', 'y_channel'}: what the results files record."""
    return {'protocol': self.name, 'crop_border': self.crop_border,
            'y_channel': self.y_channel}

  def label(self) -> str:
    """'mimo', 'nafnet' or e.g. 'basicsr crop_border=4 y_channel=True'."""
    return ' '.join([self.name, *(f'{k}={getattr(self, k)}' for k in _OPTIONS[self.name])])


def from_config(eval_config) -> Protocol:
  """The checked protocol of config.eval (fields protocol, crop_border, y_channel)."""
  return Protocol(eval_config.protocol, eval_config.crop_border, eval_config.y_channel)
