"""Deblurring a folder of photos into files that look like the originals.

`deblur_photos` reads each image (upright, see data.image_files), runs a
deblurring function on it and writes the result under the output folder with
the input's relative name, displayed orientation, size, bit depth, alpha,
colour profile and EXIF: a lossless PNG ('png') or the input's own format
('same'; JPEG at a given quality). A progress bar shows the ETA. A file that
cannot be read, or whose output would overwrite an input or another result, is
skipped with its reason while the others are still written; a summary ends the
run. Every file is written atomically, so nothing already written is lost.
"""

import dataclasses
import os
import sys
import time
from typing import Callable, Optional

import numpy as np
import tqdm
from absl import logging

from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files

FILE_FORMATS = ('png', 'same')


@dataclasses.dataclass
class Summary:
  written: list[str]  # The deblurred files (without the _compare ones), in input order.
  skipped: list[tuple[str, str]]  # (input file, why nothing was written for it).
  megapixels: float  # Of the images written.
  seconds: float  # Reading, deblurring and writing them, compilation included.

  @property
  def seconds_per_megapixel(self) -> float:
    return self.seconds / self.megapixels if self.megapixels else float('nan')

  def lines(self, output_dir: str) -> list[str]:
    """The summary, one line each: what was written, then each file skipped and why."""
    total = len(self.written) + len(self.skipped)
    lines = [f'Wrote {len(self.written)} deblurred images of {total} to {output_dir}.']
    if self.written:
      lines[0] = (f'{lines[0][:-1]}: {self.megapixels:.3g} megapixels in {self.seconds:.1f} s, '
                  f'{self.seconds_per_megapixel:.2f} s per megapixel (compilation included).')
    if self.skipped:
      lines.append(f'Skipped {len(self.skipped)} of {total}:')
      lines += [f'  {path}: {reason}' for path, reason in self.skipped]
    return lines


def check_options(output_dir: str, *, file_format: str = 'png', jpeg_quality: int = 95,
                  tile: int = 0, tile_overlap: int = 32, bucket: Optional[int] = None) -> None:
  """Raises an InputError, naming predict's flag, for options it cannot run with."""
  if os.path.isfile(output_dir):
    raise InputError(f'--output={output_dir!r} is a file; give a folder.')
  if file_format not in FILE_FORMATS:
    raise InputError(f'--format={file_format!r} must be one of {FILE_FORMATS}.')
  if not 1 <= jpeg_quality <= 100:
    raise InputError(f'--jpeg_quality={jpeg_quality} must lie in [1, 100].')
  if tile and (tile < 0 or tile <= tile_overlap):
    raise InputError(f'--tile={tile} must be larger than --tile_overlap={tile_overlap} (and a '
                     "multiple of the model's padding bucket).")
  if bucket is not None and bucket < 1:
    raise InputError(f'--bucket={bucket} must be positive.')


def output_path(output_dir: str, name: str, file_format: str = 'png', suffix: str = '') -> str:
  """Where the result for the input `name` (relative to the input folder) goes:
  NAME`suffix`.png, or for 'same' without a suffix the input's own name."""
  stem, extension = os.path.splitext(name)
  if file_format == 'png' or suffix:
    extension = '.png'
  return os.path.join(output_dir, stem + suffix + extension)


@dataclasses.dataclass(frozen=True)
class _Job:
  path: str  # The input file.
  name: str  # Its name relative to the input folder.
  output: str
  compare: Optional[str]  # The side-by-side file, or None.


def _plan(files, output_dir: str, file_format: str, compare: bool):
  """(the jobs, (path, reason) of the inputs skipped since an output of theirs would
  overwrite an input or another job's output)."""
  inputs = {os.path.abspath(path) for path, _ in files}
  owners = {}  # output file -> the input it is the result of
  jobs, skipped = [], []
  for path, name in files:
    outputs = [output_path(output_dir, name, file_format)]
    if compare:
      outputs.append(output_path(output_dir, name, suffix='_compare'))
    keys = [os.path.abspath(out) for out in outputs]
    if any(key in inputs for key in keys):
      skipped.append((path, f'its output {outputs[0]} would overwrite an input; '
                            'choose another --output'))
    elif any(key in owners for key in keys):
      other = next(owners[key] for key in keys if key in owners)
      skipped.append((path, f'its output would overwrite that of {other}; rename one' +
                     (' or use --format=same' if file_format == 'png' else '')))
    else:
      owners.update(dict.fromkeys(keys, path))
      jobs.append(_Job(path, name, outputs[0], outputs[1] if compare else None))
  return jobs, skipped


def _warn(message: str) -> None:
  """Logs a warning above the progress bar, not through it."""
  with tqdm.tqdm.external_write_mode(file=sys.stderr):
    logging.warning('%s', message)


def deblur_photos(files: list[tuple[str, str]], output_dir: str,
                  deblur_fn: Callable[[np.ndarray], np.ndarray], *, file_format: str = 'png',
                  jpeg_quality: int = 95, compare: bool = False,
                  show_progress: Optional[bool] = None) -> Summary:
  """Deblurs `files` ((path, name relative to the input), as image_files.list_images
  gives them) into `output_dir`, and logs the summary it returns.

  `deblur_fn` maps float32 (H, W, 3) in [0, 1] to the deblurred image, same shape.
  file_format: 'png' (lossless PNGs) or 'same' (the input's format; JPEG at
  `jpeg_quality`). compare: also NAME_compare.png, input | deblurred.
  show_progress: the progress bar on stderr; None: when stderr is a terminal.
  """
  jobs, skipped = _plan(files, output_dir, file_format, compare)
  for path, reason in skipped:
    _warn(f'Skipped {path}: {reason}')
  written, megapixels = [], 0.0
  start = time.perf_counter()
  bar = tqdm.tqdm(jobs, unit='image', file=sys.stderr, dynamic_ncols=True,
                  disable=None if show_progress is None else not show_progress)
  for job in bar:
    bar.set_postfix_str(job.name, refresh=False)
    try:
      image = image_files.read_image(job.path)
    except image_files.UnreadableImageError as e:
      skipped.append((job.path, e.reason))
      _warn(f'Skipped {job.path}: {e.reason}')
      continue
    deblurred = deblur_fn(image.rgb)
    output, out_format = job.output, 'PNG'
    if file_format == 'same' and image.file_format in image_files.WRITE_FORMATS:
      out_format = image.file_format
    elif file_format == 'same':  # A format Pillow reads but does not write: PNG.
      output = output_path(output_dir, job.name)
    try:
      image_files.write_image(output, deblurred, image, out_format, jpeg_quality=jpeg_quality)
      if job.compare:
        side = np.concatenate([image.rgb, deblurred], axis=1)
        alpha = None if image.alpha is None else np.concatenate([image.alpha] * 2, axis=1)
        image_files.write_image(job.compare, side, dataclasses.replace(
            image, rgb=side, alpha=alpha, exif=None))
    except OSError as e:
      skipped.append((job.path, f'cannot write {output}: {e}'))
      _warn(f'Skipped {job.path}: cannot write {output}: {e}')
      continue
    written.append(output)
    megapixels += image.rgb.shape[0] * image.rgb.shape[1] / 1e6
  bar.close()
  order = {path: i for i, (path, _) in enumerate(files)}
  skipped.sort(key=lambda item: order[item[0]])
  summary = Summary(written, skipped, megapixels, time.perf_counter() - start)
  for line in summary.lines(output_dir):
    logging.info('%s', line)
  return summary
