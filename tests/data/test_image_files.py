"""Image files read without TensorFlow: 16-bit colour PNGs at full depth, listing, and
photos as cameras, phones and editors write them (orientation, formats, colour profiles)."""

import os
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import ExifTags, Image, ImageCms, ImageOps, JpegImagePlugin

from deblur_jax.data import image_files
from helpers import smooth_image

_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
          (1, 0, 2, 1))  # (first row, first column, row step, column step) of each pass


def interlaced_png_16(array):
  """A 16-bit Adam7-interlaced PNG of uint16 (H, W, C) (no encoder at hand writes one)."""
  height, width, channels = array.shape
  raw = b''
  for row0, col0, row_step, col_step in _ADAM7:
    sub = array[row0::row_step, col0::col_step]
    if sub.size:
      rows = np.ascontiguousarray(sub, '>u2').reshape(sub.shape[0], -1).view(np.uint8)
      raw += np.concatenate([np.zeros((len(rows), 1), np.uint8), rows], axis=1).tobytes()

  def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

  colour_type = {3: 2, 4: 6}[channels]
  header = struct.pack('>IIBBBBB', width, height, 16, colour_type, 0, 0, 1)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw))
          + chunk(b'IEND', b''))


@pytest.mark.parametrize('channels', [3, 4])
@pytest.mark.parametrize('encoder', ['unfiltered', 'libpng_filters', 'interlaced'])
def test_16_bit_colour_pngs_are_read_at_full_depth(tmp_path, channels, encoder):
  rng = np.random.default_rng(channels)
  levels = rng.integers(0, 65536, (13, 21, channels), dtype=np.uint16)
  levels[:6] = np.cumsum(rng.integers(0, 900, (6, 21, channels)), axis=1)  # smooth: filtered
  data = {'unfiltered': image_files.encode_png_16,
          'libpng_filters': lambda a: tf.io.encode_png(a).numpy(),
          'interlaced': interlaced_png_16}[encoder](levels)
  path = tmp_path / 'deep.png'
  path.write_bytes(data)
  loaded = image_files.read_image(str(path))
  assert loaded.bit_depth == 16 and not loaded.gray
  np.testing.assert_array_equal(image_files.to_levels(loaded.rgb, 16), levels[..., :3])
  if channels == 4:
    np.testing.assert_array_equal(image_files.to_levels(loaded.alpha, 16), levels[..., 3])
  else:
    assert loaded.alpha is None
  # The values TensorFlow's decoder (which the training pipeline uses) gives.
  decoded = tf.io.decode_png(data, channels=channels, dtype=tf.uint16).numpy()
  np.testing.assert_array_equal(decoded, levels)


def test_image_names_keep_image_extensions_of_any_case_but_not_hidden_files(tmp_path):
  names = ['b.PNG', 'a.jpeg', '.hidden.png', 'notes.txt', 'c.bmp', 'd.JPG']
  assert image_files.image_names(names) == ['a.jpeg', 'b.PNG', 'c.bmp', 'd.JPG']
  for name in names:
    (tmp_path / name).write_bytes(b'')
  found = image_files.images_in_folder(str(tmp_path))
  assert found == {n: str(tmp_path / n) for n in ['a.jpeg', 'b.PNG', 'c.bmp', 'd.JPG']}


# Photos as cameras, phones and editors write them.

_DISPLAYED = {3: lambda a: a[::-1, ::-1],  # what a viewer shows for each EXIF orientation
              6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
              8: lambda a: np.rot90(a, 1)}


def exif_bytes(orientation):
  exif = Image.Exif()
  exif[ExifTags.Base.Orientation] = orientation
  exif[ExifTags.Base.Make] = 'TestCam'
  return exif.tobytes()


def srgb_profile():
  return ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()


def photo(seed=0, height=10, width=14):
  return smooth_image(np.random.default_rng(seed), height, width)


def deep(seed=0, height=9, width=13, channels=3):
  """Random 16-bit levels whose low bytes differ from their high bytes."""
  return np.random.default_rng(seed).integers(0, 65536, (height, width, channels), np.uint16)


def levels_of(loaded):
  """The file's levels (H, W, C) back from a LoadedImage."""
  colour = loaded.rgb[..., :1] if loaded.gray else loaded.rgb
  values = colour if loaded.alpha is None else np.concatenate([colour, loaded.alpha[..., None]],
                                                               axis=-1)
  return image_files.to_levels(values, loaded.bit_depth)


@pytest.mark.parametrize('orientation', [3, 6, 8])
def test_a_jpeg_comes_upright_and_is_written_without_a_rotating_tag(tmp_path, orientation):
  Image.fromarray(photo(orientation, 12, 20)).save(tmp_path / 'phone.jpg', quality=95,
                                                   exif=exif_bytes(orientation))
  with Image.open(tmp_path / 'phone.jpg') as stored:  # Pillow does not turn it
    expected = _DISPLAYED[orientation](np.asarray(stored))
  loaded = image_files.read_image(str(tmp_path / 'phone.jpg'))
  assert loaded.file_format == 'JPEG' and loaded.bit_depth == 8 and not loaded.gray
  np.testing.assert_array_equal(levels_of(loaded), expected)
  for file_format in ('PNG', 'JPEG'):
    out = tmp_path / f'out.{file_format}'
    image_files.write_image(str(out), loaded.rgb, loaded, file_format)
    with Image.open(out) as written:
      assert written.format == file_format
      assert written.size == (expected.shape[1], expected.shape[0])
      assert ExifTags.Base.Orientation not in written.getexif()
      assert written.getexif()[ExifTags.Base.Make] == 'TestCam'  # the rest of EXIF kept
      shown = np.asarray(ImageOps.exif_transpose(written))  # as a viewer shows it
    if file_format == 'PNG':
      np.testing.assert_array_equal(shown, expected)
    else:
      assert np.abs(shown.astype(int) - expected).mean() < 5  # a wrong turn: ~50


@pytest.mark.parametrize('kind', ['rgb', 'gray'])
def test_16_bit_pngs_are_turned_by_their_exif_orientation_too(tmp_path, kind):
  levels = deep(1, channels=3 if kind == 'rgb' else 1)
  if kind == 'rgb':
    (tmp_path / 'deep.png').write_bytes(image_files.encode_png_16(levels, exif=exif_bytes(6)))
  else:
    Image.fromarray(levels[..., 0]).save(tmp_path / 'deep.png', exif=exif_bytes(6))
  loaded = image_files.read_image(str(tmp_path / 'deep.png'))
  assert loaded.bit_depth == 16 and loaded.gray == (kind == 'gray')
  np.testing.assert_array_equal(levels_of(loaded), np.rot90(levels, -1))
  exif = Image.Exif()
  exif.load(loaded.exif)
  assert ExifTags.Base.Orientation not in exif and exif[ExifTags.Base.Make] == 'TestCam'


def ycck_jpeg(path, rgb):
  """A YCCK JPEG (Adobe transform 2, as Photoshop writes CMYK) of `rgb` with no black.

  Pillow writes CMYK JPEGs inverted, untransformed (Adobe transform 0); stored
  inverted as YCbCr of the inverted colours and marked as transform 2, libjpeg
  decodes the file back to the CMYK of `rgb`."""
  ycc = np.asarray(Image.fromarray(255 - rgb).convert('YCbCr'))
  channels = np.dstack([255 - ycc, np.zeros(rgb.shape[:2], np.uint8)])
  Image.frombytes('CMYK', rgb.shape[1::-1], channels.tobytes()).save(path, quality=95)
  data = bytearray(path.read_bytes())
  adobe = data.find(b'Adobe')
  assert data[adobe + 11] == 0  # the transform flag
  data[adobe + 11] = 2
  path.write_bytes(bytes(data))


@pytest.mark.parametrize('kind', ['cmyk', 'ycck'])
def test_cmyk_and_ycck_jpegs_are_read_as_rgb(tmp_path, kind):
  rgb = photo(2, 16, 24)
  if kind == 'cmyk':
    Image.fromarray(rgb).convert('CMYK').save(tmp_path / 'print.jpg', quality=95)
  else:
    ycck_jpeg(tmp_path / 'print.jpg', rgb)
  with Image.open(tmp_path / 'print.jpg') as stored:
    assert stored.mode == 'CMYK'
  loaded = image_files.read_image(str(tmp_path / 'print.jpg'))
  assert loaded.rgb.shape == (16, 24, 3) and not loaded.gray and loaded.icc_profile is None
  assert np.abs(loaded.rgb * 255 - rgb).mean() < 3  # read as the other kind: ~45


def write_16_bit(path, levels, encoder):
  if encoder == 'ours':
    suffix = os.path.splitext(path)[1]
    encode = image_files.encode_png_16 if suffix == '.png' else image_files.encode_tiff_16
    path.write_bytes(encode(levels))
  elif encoder == 'pillow':  # 16-bit gray only; raw (not libtiff) for TIFF
    Image.fromarray(levels[..., 0]).save(path)
  else:
    tifffile = pytest.importorskip('tifffile')  # scikit-image's own dependency
    tifffile.imwrite(path, levels, photometric='rgb' if levels.shape[-1] >= 3 else 'minisblack',
                     byteorder='>' if encoder == 'tifffile_big_endian' else '<')


@pytest.mark.parametrize('name,channels,encoder', [
    ('rgb.png', 3, 'ours'), ('rgba.png', 4, 'ours'), ('gray_alpha.png', 2, 'ours'),
    ('gray.png', 1, 'pillow'), ('rgb.tif', 3, 'ours'), ('rgba.tif', 4, 'ours'),
    ('gray.tif', 1, 'pillow'), ('gray_deflate.tif', 1, 'ours'), ('rgb_tifffile.tif', 3, 'tifffile'),
    ('rgb_big_endian.tif', 3, 'tifffile_big_endian'),
])
def test_16_bit_pngs_and_tiffs_stay_16_bit(tmp_path, name, channels, encoder):
  levels = deep(channels, channels=channels)
  write_16_bit(tmp_path / name, levels, encoder)
  loaded = image_files.read_image(str(tmp_path / name))
  assert loaded.bit_depth == 16 and loaded.gray == (channels <= 2)
  assert loaded.file_format == ('PNG' if name.endswith('.png') else 'TIFF')
  np.testing.assert_array_equal(levels_of(loaded), levels)
  for file_format in {'PNG', loaded.file_format}:
    out = tmp_path / f'out.{file_format}'
    image_files.write_image(str(out), loaded.rgb, loaded, file_format)
    back = image_files.read_image(str(out))
    assert back.bit_depth == 16 and back.file_format == file_format
    np.testing.assert_array_equal(levels_of(back), levels)


def test_our_16_bit_tiffs_read_the_same_elsewhere(tmp_path):
  tifffile = pytest.importorskip('tifffile')
  levels = deep(5, channels=3)
  (tmp_path / 'rgb.tif').write_bytes(image_files.encode_tiff_16(levels, srgb_profile()))
  np.testing.assert_array_equal(tifffile.imread(tmp_path / 'rgb.tif'), levels)
  with Image.open(tmp_path / 'rgb.tif') as image:  # Pillow's own (8-bit) view
    np.testing.assert_array_equal(np.asarray(image), levels >> 8)


@pytest.mark.parametrize('mode', ['L', 'P', 'RGBA', 'LA'])
def test_gray_palette_and_alpha_pngs_keep_their_alpha_unchanged(tmp_path, mode):
  rgba = np.dstack([photo(3), np.arange(140, dtype=np.uint8).reshape(10, 14)])
  source = Image.fromarray(rgba).convert(mode)
  if mode == 'P':
    source.info['transparency'] = 0  # palette entry 0 is transparent
  source.save(tmp_path / 'in.png')
  with Image.open(tmp_path / 'in.png') as image:
    expected = np.asarray(image.convert('RGBA' if 'A' in mode or mode == 'P' else 'L'))
  loaded = image_files.read_image(str(tmp_path / 'in.png'))
  assert loaded.gray == (mode in ('L', 'LA')) and loaded.bit_depth == 8
  assert (loaded.alpha is not None) == (mode != 'L')
  image_files.write_image(str(tmp_path / 'out.png'), 1 - loaded.rgb, loaded)  # new colours
  with Image.open(tmp_path / 'out.png') as written:
    got = np.asarray(written)
  if loaded.alpha is None:
    np.testing.assert_array_equal(got, 255 - expected)
  else:
    np.testing.assert_array_equal(got[..., -1], expected[..., -1])  # alpha as it was
    colour = expected[..., :1] if loaded.gray else expected[..., :3]
    np.testing.assert_array_equal(got[..., :-1], 255 - colour)


@pytest.mark.parametrize('name,mode,options', [
    ('web.webp', 'RGB', {'lossless': True}), ('web_alpha.webp', 'RGBA', {'lossless': True}),
    ('old.bmp', 'RGB', {}), ('old_gray.bmp', 'L', {}), ('scan.tif', 'RGB', {}),
])
def test_webp_bmp_and_tiff_round_trip_losslessly(tmp_path, name, mode, options):
  source = Image.fromarray(np.dstack([photo(4), np.full((10, 14), 200, np.uint8)])).convert(mode)
  source.save(tmp_path / name, **options)
  loaded = image_files.read_image(str(tmp_path / name))
  expected_format = {'webp': 'WEBP', 'bmp': 'BMP', 'tif': 'TIFF'}[name.rsplit('.', 1)[1]]
  assert loaded.file_format == expected_format and loaded.gray == (mode == 'L')
  np.testing.assert_array_equal(levels_of(loaded), np.asarray(source).reshape(10, 14, -1))
  image_files.write_image(str(tmp_path / f'out_{name}'), loaded.rgb, loaded, expected_format)
  back = image_files.read_image(str(tmp_path / f'out_{name}'))
  assert back.file_format == expected_format
  np.testing.assert_array_equal(levels_of(back), levels_of(loaded))


@pytest.mark.parametrize('kind', ['png', 'png16', 'jpeg', 'tiff', 'tiff16', 'webp'])
def test_the_colour_profile_is_written_back(tmp_path, kind):
  profile = srgb_profile()
  path = tmp_path / {'png': 'a.png', 'png16': 'a.png', 'jpeg': 'a.jpg', 'tiff': 'a.tif',
                     'tiff16': 'a.tif', 'webp': 'a.webp'}[kind]
  if kind == 'png16':
    path.write_bytes(image_files.encode_png_16(deep(), profile))
  elif kind == 'tiff16':
    path.write_bytes(image_files.encode_tiff_16(deep(), profile))
  else:
    Image.fromarray(photo(6)).save(path, icc_profile=profile, **({'lossless': True}
                                                                  if kind == 'webp' else {}))
  loaded = image_files.read_image(str(path))
  assert loaded.icc_profile == profile
  for file_format in {'PNG', loaded.file_format}:
    out = tmp_path / f'out.{file_format}'
    image_files.write_image(str(out), loaded.rgb, loaded, file_format)
    with Image.open(out) as written:
      assert written.info['icc_profile'] == profile


def test_jpegs_are_written_at_the_quality_asked_with_full_size_colour(tmp_path):
  Image.fromarray(photo(7, 32, 48)).save(tmp_path / 'in.jpg')
  loaded = image_files.read_image(str(tmp_path / 'in.jpg'))
  sizes = {}
  for quality in (60, 95):
    out = tmp_path / f'q{quality}.jpg'
    image_files.write_image(str(out), loaded.rgb, loaded, 'JPEG', jpeg_quality=quality)
    with Image.open(out) as written:
      assert JpegImagePlugin.get_sampling(written) == 0  # 4:4:4
    sizes[quality] = out.stat().st_size
  assert sizes[60] < sizes[95]


def truncated_jpeg(path):
  Image.fromarray(photo(8, 64, 64)).save(path, quality=95)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize('name,make,reason', [
    ('cut.jpg', truncated_jpeg, 'cannot decode it: image file is truncated'),
    ('x.jpg', lambda p: p.write_text('not an image\n'),
     'not an image, or in a format Pillow cannot read'),
    ('empty.png', lambda p: p.write_bytes(b''), 'empty file'),
    ('IMG_0001.heic', lambda p: p.write_bytes(b'\x00\x00\x00\x18ftypheic' + b'\x00' * 64),
     'HEIC/HEIF, a format Pillow cannot read'),
])
def test_unreadable_files_are_one_line_errors_naming_them(tmp_path, name, make, reason):
  make(tmp_path / name)
  with pytest.raises(image_files.UnreadableImageError) as caught:
    image_files.read_image(str(tmp_path / name))
  assert caught.value.reason.startswith(reason) and '\n' not in str(caught.value)
  assert str(caught.value).startswith(f'Cannot read image {tmp_path / name}: ')


def test_photos_are_looked_for_in_more_formats_than_datasets(tmp_path):
  names = ['a.png', 'b.TIF', 'c.tiff', 'd.webp', 'e.HEIC', 'f.jpg', 'g.txt']
  for name in names:
    (tmp_path / name).write_bytes(b'')
  found = [n for _, n in image_files.list_images(str(tmp_path))]
  assert found == ['a.png', 'f.jpg']
  found = [n for _, n in image_files.list_images(str(tmp_path),
                                                 extensions=image_files.PHOTO_EXTENSIONS)]
  assert found == names[:-1]
