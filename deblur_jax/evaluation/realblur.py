"""RealBlur's scoring: each result aligned to its ground truth, then PSNR and SSIM
over the pixels the alignment covers. On the host, in NumPy and OpenCV, one image
at a time (callers run images in parallel processes).

Follows the official evaluation_RealBlur_ecc.py (github.com/rimchang/RealBlur at
cf28b80f147f6dd7a017952cfb59ce4a2c03f861), images float32 in [0, 1]:

1. Intensity matching: the result z times sum(x z) / sum(z z), x the ground truth
   (one scalar over all pixels and channels).
2. `cv2.findTransformECC` of the grey ground truth against the grey matched
   result: a homography from the identity, 100 iterations (eps 0),
   `gaussFiltSize=5`.
3. The matched result warped back (`warpPerspective`, cubic, WARP_INVERSE_MAP,
   BORDER_REFLECT), and the mask of the pixels it covers (the same warp of ones,
   nearest, border 0); result and ground truth multiplied by the mask.
4. PSNR = 10 log10(1 / (the float64 sum of squared errors / the mask's sum over
   H x W x 3)).
5. SSIM: scikit-image's `structural_similarity` of the masked images (Gaussian
   sigma 1.5, `use_sample_covariance=False`, data range 1, per channel, full
   map), the map times the mask, 5 pixels cut from each side of map and mask,
   sum(map) / sum(mask) per channel, the mean over channels.

The blurred input is scored without alignment (PSNR over every pixel), as the
official script does; it computes no SSIM for it. RSBlur's script
(github.com/rimchang/RSBlur) aligns the same way and clips the aligned result
and target to [0, 1] before scoring (`clip=True`).

The official script pins OpenCV 4.2.0, which has no wheel for current Pythons;
OpenCV 5 samples the cubic warp at exact positions where 4.x rounds them to 1/32
pixel, which moved the fixture's scores by up to 0.002 dB and 2e-5 SSIM
(tests/fixtures/realblur).
"""

from typing import Optional

import cv2
import numpy as np
from skimage.metrics import structural_similarity

ECC_ITERATIONS = 100
ECC_GAUSSIAN_SIZE = 5
SSIM_BORDER = 5  # Pixels cut from each side of the SSIM map and mask.


class AlignmentError(ValueError):
  """OpenCV's ECC alignment failed for an image (it did not converge)."""


def intensity_matched(result: np.ndarray, target: np.ndarray) -> np.ndarray:
  """`result` scaled by the one factor that fits it best to `target` (least squares)."""
  return (np.sum(target * result) / np.sum(result * result)) * result


def align(result: np.ndarray, target: np.ndarray):
  """(aligned result x mask, target x mask, mask, 3x3 warp) for float32 (H, W, 3)
  images; raises AlignmentError where OpenCV's ECC fails."""
  matched = intensity_matched(result, target)
  criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 0)
  try:
    _, warp = cv2.findTransformECC(
        cv2.cvtColor(target, cv2.COLOR_RGB2GRAY), cv2.cvtColor(matched, cv2.COLOR_RGB2GRAY),
        np.eye(3, dtype=np.float32), cv2.MOTION_HOMOGRAPHY, criteria, None, ECC_GAUSSIAN_SIZE)
  except cv2.error as error:
    message = str(error).strip().splitlines()[-1]
    raise AlignmentError(f'the ECC alignment failed: {message}') from error
  size = (target.shape[1], target.shape[0])
  aligned = cv2.warpPerspective(matched, warp, size, flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
  mask = cv2.warpPerspective(np.ones_like(matched, dtype=np.float32), warp, size,
                             flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  return aligned * mask, target * mask, mask, warp


def masked_psnr(target: np.ndarray, result: np.ndarray, mask: np.ndarray) -> float:
  """PSNR (peak 1) over the mask's pixels, the squared errors summed in float64."""
  error = np.sum((target - result) ** 2, dtype=np.float64) / np.sum(mask)
  return float(10 * np.log10(1 / error))


def masked_ssim(target: np.ndarray, result: np.ndarray, mask: np.ndarray) -> float:
  """scikit-image's Gaussian SSIM map over the mask, SSIM_BORDER pixels cut from
  each side, averaged per channel, then over the channels."""
  _, ssim_map = structural_similarity(target, result, channel_axis=2, gaussian_weights=True,
                                      use_sample_covariance=False, data_range=1.0, full=True)
  b = SSIM_BORDER
  ssim_map, mask = (ssim_map * mask)[b:-b, b:-b], mask[b:-b, b:-b]
  return float(np.mean(np.sum(ssim_map, axis=(0, 1)) / np.sum(mask, axis=(0, 1))))


def score(result: np.ndarray, target: np.ndarray, clip: bool = False) -> dict:
  """{'psnr', 'ssim'} of one float32 (H, W, 3) result in [0, 1] against its target,
  aligned first; `clip` clips both to [0, 1] after the alignment (RSBlur)."""
  result, target = (np.asarray(x, np.float32) for x in (result, target))
  aligned, masked_target, mask, _ = align(result, target)
  if clip:
    aligned, masked_target = np.clip(aligned, 0, 1), np.clip(masked_target, 0, 1)
  return {'psnr': masked_psnr(masked_target, aligned, mask),
          'ssim': masked_ssim(masked_target, aligned, mask)}


def input_psnr(blurred: np.ndarray, target: np.ndarray) -> float:
  """The blurred input's PSNR, without alignment, as the official script scores it."""
  blurred, target = (np.asarray(x, np.float32) for x in (blurred, target))
  return masked_psnr(target, blurred, np.ones_like(target))


def score_with_input(result: np.ndarray, target: np.ndarray, blurred: Optional[np.ndarray],
                     clip: bool = False) -> dict:
  """The evaluation's scores of one image: psnr and ssim of the aligned `result`
  (`score`; NaN where the alignment fails, with 'error' saying why), and unless
  `blurred` is None, input_psnr and input_ssim of the unaligned blurred input
  (SSIM with the border cut, no mask)."""
  target = np.asarray(target, np.float32)
  scores = {}
  if blurred is not None:
    blurred = np.asarray(blurred, np.float32)
    scores = {'input_psnr': input_psnr(blurred, target),
              'input_ssim': masked_ssim(target, blurred, np.ones_like(target))}
  try:
    scores.update(score(result, target, clip=clip))
  except AlignmentError as error:
    scores.update(psnr=float('nan'), ssim=float('nan'), error=str(error))
  return scores
