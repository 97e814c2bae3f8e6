"""DPDD defocus deblurring's scoring, as Restormer's Defocus_Deblurring scripts
(github.com/swz30/Restormer, test_single_image_defocus_deblur.py and
test_dual_pixel_defocus_deblur.py with utils.py), on the host in NumPy and
scikit-image, for float (H, W, 3) images in [0, 1] at the files' own depth (the
single-image script reads 8-bit files, the dual-pixel one 16-bit, / 65535):

- PSNR = 10 log10(1 / the mean squared error over every pixel and channel),
  100 for identical images;
- SSIM = scikit-image's `structural_similarity(data_range=1)` with its defaults
  (a uniform 7x7 window, the sample covariance), per channel, averaged;
- MAE = the mean absolute error of each channel, averaged over the channels
  (scikit-learn's `mean_absolute_error` per channel in the script).

LPIPS, which the scripts also report, needs AlexNet weights that are not
downloaded here; it is left out.
"""

from typing import Optional

import numpy as np
from skimage.metrics import structural_similarity

IDENTICAL_PSNR = 100.0  # utils.PSNR's value for a zero error.


def psnr(target: np.ndarray, result: np.ndarray) -> float:
  error = np.mean((np.asarray(target, np.float64) - result) ** 2)
  return IDENTICAL_PSNR if error == 0 else float(10 * np.log10(1 / error))


def ssim(target: np.ndarray, result: np.ndarray) -> float:
  return float(structural_similarity(target, result, data_range=1, channel_axis=2))


def mae(target: np.ndarray, result: np.ndarray) -> float:
  errors = np.abs(np.asarray(target, np.float64) - result)
  return float(np.mean(np.mean(errors, axis=(0, 1))))


def score(result: np.ndarray, target: np.ndarray) -> dict:
  """{'psnr', 'ssim', 'mae'} of one result against its target."""
  result, target = (np.asarray(x, np.float32) for x in (result, target))
  return {'psnr': psnr(target, result), 'ssim': ssim(target, result), 'mae': mae(target, result)}


def score_with_input(result: np.ndarray, target: np.ndarray,
                     blurred: Optional[np.ndarray]) -> dict:
  """The evaluation's scores of one image: `score` of the result, and unless
  `blurred` is None, input_psnr and input_ssim of the blurred input under the
  same definitions."""
  scores = score(result, target)
  if blurred is not None:
    blurred_scores = score(blurred, target)
    scores.update(input_psnr=blurred_scores['psnr'], input_ssim=blurred_scores['ssim'])
  return scores
