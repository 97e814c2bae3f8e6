"""`python -m deblur_jax.predict` end to end on a tiny checkpoint (the library it runs is
tested in-process: tests/inference/test_photos.py, tests/data/test_image_files.py)."""

import numpy as np
from PIL import ExifTags, Image

from helpers import run_tool, smooth_image, write_tiny_checkpoint


def test_a_folder_of_photos_is_deblurred_in_kind_and_a_bad_file_reported(tmp_path):
  write_tiny_checkpoint(tmp_path / 'run', step=5)
  rng = np.random.default_rng(0)
  inputs, out = tmp_path / 'in', tmp_path / 'out'
  (inputs / 'sub').mkdir(parents=True)
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = 6
  Image.fromarray(smooth_image(rng, 20, 24)).save(inputs / 'phone.jpg', exif=exif.tobytes())
  Image.fromarray(smooth_image(rng, 70, 150)[..., 0]).save(inputs / 'sub' / 'wide.png')
  (inputs / 'broken.jpg').write_text('not an image')
  proc = run_tool('deblur_jax.predict', f'--checkpoint={tmp_path}/run/checkpoints/5',
                  f'--input={inputs}', f'--output={out}', '--format=same', '--jpeg_quality=90',
                  '--tile=64', '--tile_overlap=16', '--ensemble', '--compare')
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert f'Skipped {inputs / "broken.jpg"}: not an image' in proc.stderr
  assert f'Wrote 2 deblurred images of 3 to {out}' in proc.stderr
  assert 'Exit status 1: 1 of 3 images were not written' in proc.stderr
  with Image.open(out / 'phone.jpg') as written:
    assert written.format == 'JPEG' and written.size == (20, 24)  # upright
    assert ExifTags.Base.Orientation not in written.getexif()
  with Image.open(out / 'sub' / 'wide.png') as written:  # tiled
    assert written.mode == 'L' and written.size == (150, 70)
  assert Image.open(out / 'phone_compare.png').size == (40, 24)
  assert not (out / 'broken.jpg').exists()
