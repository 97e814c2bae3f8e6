"""Deblurring a folder of photos: files written in kind, bad ones skipped, a summary."""

import os

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files
from deblur_jax.inference import photos
from helpers import smooth_image


def brighter(rgb):
  """A stand-in for a model: changes every pixel, keeps the shape."""
  return np.clip(rgb * 0.5 + 0.25, 0, 1)


def photo(seed, height, width):
  return smooth_image(np.random.default_rng(seed), height, width)


def make_folder(root):
  """A folder as a phone, a scanner and the web leave it, with three bad files."""
  (root / 'sub').mkdir(parents=True)
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = 6
  profile = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
  Image.fromarray(photo(0, 12, 20)).save(root / 'phone.jpg', exif=exif.tobytes(),
                                         icc_profile=profile)
  scan = np.random.default_rng(1).integers(0, 65536, (9, 11, 3), np.uint16)
  (root / 'sub' / 'scan.tif').write_bytes(image_files.encode_tiff_16(scan))
  Image.fromarray(np.dstack([photo(2, 8, 8), np.full((8, 8), 99, np.uint8)])).save(
      root / 'logo.png')
  Image.fromarray(photo(3, 10, 6)).save(root / 'web.webp', lossless=True)
  Image.fromarray(photo(4, 7, 9)).save(root / 'old.bmp')
  data = (root / 'phone.jpg').read_bytes()
  (root / 'cut.jpg').write_bytes(data[:len(data) // 2])
  (root / 'x.jpg').write_text('not an image\n')
  (root / 'IMG_0001.heic').write_bytes(b'\x00\x00\x00\x18ftypheic' + b'\x00' * 64)
  return scan


def test_a_folder_is_written_in_kind_and_bad_files_are_skipped_with_reasons(tmp_path,
                                                                               capsys):
  scan = make_folder(tmp_path / 'in')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'cut.jpg').write_bytes(b'an earlier result')  # not lost when cut.jpg fails
  files = image_files.list_images(str(tmp_path / 'in'), extensions=image_files.PHOTO_EXTENSIONS)
  summary = photos.deblur_photos(files, str(out), brighter, file_format='same', compare=True,
                                 show_progress=True)
  names = ['logo.png', 'old.bmp', 'phone.jpg', 'web.webp', 'sub/scan.tif']  # as listed
  assert summary.written == [str(out / n) for n in names]
  assert [(os.path.basename(p), r.split(':')[0]) for p, r in summary.skipped] == [
      ('IMG_0001.heic', 'HEIC/HEIF, a format Pillow cannot read'),
      ('cut.jpg', 'cannot decode it'),
      ('x.jpg', 'not an image, or in a format Pillow cannot read')]
  formats = {'png': 'PNG', 'bmp': 'BMP', 'jpg': 'JPEG', 'tif': 'TIFF', 'webp': 'WEBP'}
  for name in names:
    with Image.open(out / name) as written:
      assert written.format == formats[name.rsplit('.', 1)[1]]
  with Image.open(out / 'phone.jpg') as written:
    assert written.size == (12, 20)  # upright: 20 x 12 stored, turned
    assert ExifTags.Base.Orientation not in written.getexif()
    assert written.info['icc_profile'] == image_files.read_image(
        str(tmp_path / 'in' / 'phone.jpg')).icc_profile
  deblurred = image_files.read_image(str(out / 'sub' / 'scan.tif'))
  assert deblurred.bit_depth == 16
  np.testing.assert_array_equal(image_files.to_levels(deblurred.rgb, 16),
                                image_files.to_levels(brighter(scan / 65535.0), 16))
  with Image.open(out / 'logo.png') as written:
    assert written.mode == 'RGBA' and (np.asarray(written)[..., 3] == 99).all()
  with Image.open(out / 'phone_compare.png') as written:
    assert written.size == (24, 20)
  assert (out / 'cut.jpg').read_bytes() == b'an earlier result'
  assert not [n for _, _, ns in os.walk(out) for n in ns if '.tmp' in n]
  assert summary.megapixels == pytest.approx((64 + 63 + 240 + 99 + 60) / 1e6)
  err = capsys.readouterr().err
  assert '8/8' in err  # the progress bar, over every file
  lines = summary.lines(str(out))
  assert lines[0].startswith(f'Wrote 5 deblurred images of 8 to {out}: 0.000526 megapixels in ')
  assert 's per megapixel' in lines[0] and lines[1] == 'Skipped 3 of 8:'
  assert lines[2].startswith(f'  {tmp_path / "in" / "IMG_0001.heic"}: HEIC') and len(lines) == 5


def test_pngs_are_the_default_and_outputs_never_overwrite_inputs_or_each_other(tmp_path):
  for name, seed in (('a.jpg', 0), ('a.png', 1), ('b.png', 2)):
    Image.fromarray(photo(seed, 8, 8)).save(tmp_path / name)
  files = image_files.list_images(str(tmp_path))
  summary = photos.deblur_photos(files, str(tmp_path / 'out'), brighter)
  assert summary.written == [str(tmp_path / 'out' / n) for n in ('a.png', 'b.png')]
  assert summary.skipped == [(str(tmp_path / 'a.png'), 'its output would overwrite that of '
                              f'{tmp_path / "a.jpg"}; rename one or use --format=same')]
  with Image.open(tmp_path / 'out' / 'a.png') as written:
    assert written.format == 'PNG'
  before = (tmp_path / 'b.png').read_bytes()
  summary = photos.deblur_photos(files, str(tmp_path), brighter)  # into the input folder
  assert summary.written == []
  assert (tmp_path / 'b.png').read_bytes() == before
  assert [p for p, _ in summary.skipped] == [p for p, _ in files]
  assert 'would overwrite an input' in summary.skipped[0][1]


@pytest.mark.parametrize('options,message', [
    ({'output_dir': '{file}'}, 'is a file; give a folder'),
    ({'jpeg_quality': 0}, '--jpeg_quality=0 must lie in [1, 100]'),
    ({'file_format': 'gif'}, "--format='gif' must be one of"),
    ({'tile': 64, 'tile_overlap': 64}, 'larger than --tile_overlap=64'),
    ({'bucket': 0}, '--bucket=0 must be positive'),
])
def test_options_predict_cannot_run_with_are_input_errors(tmp_path, options, message):
  (tmp_path / 'file.txt').write_text('')
  options = {'output_dir': str(tmp_path / 'out'), **options}
  options['output_dir'] = options['output_dir'].format(file=tmp_path / 'file.txt')
  with pytest.raises(InputError) as caught:
    photos.check_options(**options)
  assert message in str(caught.value)
