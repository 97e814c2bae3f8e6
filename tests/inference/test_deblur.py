"""Whole-image inference: any size, tiles, self-ensemble, and image files in and out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from deblur_jax.core.errors import InputError
from deblur_jax.data import image_files
from deblur_jax.inference import deblur
from deblur_jax.models import fftformer, mimo_unet, nafnet, restormer


@pytest.fixture(scope='module')
def restore_fns():
  model = mimo_unet.MIMOUNet(base_width=8, num_res=1)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  identity = jax.tree.map(jnp.zeros_like, variables)  # all-zero weights return the input
  return deblur.make_deblur_fn(model, variables), deblur.make_deblur_fn(model, identity)


def image(height, width, seed=0):
  return np.random.default_rng(seed).uniform(size=(height, width, 3)).astype(np.float32)


@pytest.mark.parametrize('height,width', [(33, 47), (64, 64), (5, 90)])
def test_odd_sizes_come_back_at_their_size(restore_fns, height, width):
  deblur_fn, _ = restore_fns
  out = deblur.deblur_image(deblur_fn, image(height, width), bucket=64)
  assert out.shape == (height, width, 3)
  assert 0.0 <= out.min() and out.max() <= 1.0


def test_buckets_do_not_change_an_image_of_the_bucket_size(restore_fns):
  deblur_fn, _ = restore_fns
  x = image(64, 128)
  np.testing.assert_allclose(deblur.deblur_whole(deblur_fn, x, 64),
                             deblur.deblur_whole(deblur_fn, x, 4), atol=1e-6)


def test_tiles_blend_without_seams(restore_fns):
  """The identity model makes any seam visible: tiled output must equal the input."""
  _, identity = restore_fns
  x = image(150, 230)
  np.testing.assert_allclose(deblur.deblur_tiled(identity, x, 64, 16, multiple=4), x,
                             atol=1e-6)


def test_tiled_inference_equals_whole_image_inference(restore_fns):
  """A real (random) model: tiles see less context than the whole image, so a
  little differs near tile edges, far below one 8-bit level on average."""
  deblur_fn, _ = restore_fns
  x = image(150, 230)
  whole = deblur.deblur_whole(deblur_fn, x, 4)
  tiled = deblur.deblur_tiled(deblur_fn, x, 64, 32, multiple=4)
  assert np.abs(tiled - whole).mean() < 5e-4
  assert np.abs(tiled - whole).max() < 1e-2


def test_self_ensemble_averages_the_four_rotations(restore_fns):
  deblur_fn, identity = restore_fns
  x = image(24, 40)
  np.testing.assert_allclose(deblur.deblur_image(identity, x, bucket=4, ensemble=True), x,
                             atol=1e-6)
  rotated = [np.rot90(deblur.deblur_whole(deblur_fn, np.ascontiguousarray(np.rot90(x, k)), 4),
                      -k) for k in range(4)]
  np.testing.assert_allclose(deblur.deblur_image(deblur_fn, x, bucket=4, ensemble=True),
                             np.mean(rotated, axis=0), atol=1e-6)


@pytest.mark.parametrize('mode', ['RGB', 'L', 'RGBA', 'LA', 'P'])
def test_files_are_written_back_in_their_own_kind(tmp_path, mode):
  rgb = (image(12, 20) * 255).astype(np.uint8)
  source = Image.fromarray(rgb).convert(mode)
  source.save(tmp_path / 'in.png')
  loaded = image_files.read_image(str(tmp_path / 'in.png'))
  assert loaded.rgb.shape == (12, 20, 3) and loaded.bit_depth == 8
  assert loaded.gray == (mode in ('L', 'LA'))
  assert (loaded.alpha is not None) == (mode in ('RGBA', 'LA'))
  image_files.write_image(str(tmp_path / 'out.png'), loaded.rgb, loaded)
  written = Image.open(tmp_path / 'out.png')
  expected = np.asarray(source.convert('RGB') if mode == 'P' else source)
  np.testing.assert_array_equal(np.asarray(written), expected)  # lossless round trip


def test_16_bit_files_round_trip_at_full_depth(tmp_path):
  gray = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 211)
  Image.fromarray(gray).save(tmp_path / 'gray16.png')
  colour = np.stack([gray, gray[::-1], 65535 - gray], axis=-1)
  (tmp_path / 'rgb16.png').write_bytes(image_files.encode_png_16(colour))
  for name, expected in (('gray16', gray), ('rgb16', colour)):
    loaded = image_files.read_image(str(tmp_path / f'{name}.png'))
    assert loaded.bit_depth == 16
    image_files.write_image(str(tmp_path / f'{name}_out.png'), loaded.rgb, loaded)
    back = image_files.read_image(str(tmp_path / f'{name}_out.png'))
    got = image_files.to_levels(back.rgb[..., 0] if loaded.gray else back.rgb, 16)
    np.testing.assert_array_equal(got, expected)


def test_levels_round_to_nearest():
  values = np.array([0.0, 0.5 / 255, 0.49 / 255, 2.5 / 255, 1.2, -0.1])
  np.testing.assert_array_equal(image_files.to_levels(values, 8), [0, 1, 0, 3, 255, 0])


def test_unreadable_files_are_errors_naming_them(tmp_path):
  (tmp_path / 'bad.png').write_bytes(b'not a png')
  with pytest.raises(InputError, match=r'Cannot read image .*bad\.png'):
    image_files.read_image(str(tmp_path / 'bad.png'))


def test_list_images_walks_folders_and_rejects_empty_ones(tmp_path):
  for name in ('b.png', 'sub/a.jpg', 'notes.txt'):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b'')
  assert [n for _, n in image_files.list_images(str(tmp_path))] == ['b.png', 'sub/a.jpg']
  (tmp_path / 'empty').mkdir()
  with pytest.raises(InputError, match='holds no'):
    image_files.list_images(str(tmp_path / 'empty'))
  with pytest.raises(InputError, match='neither an image file nor a folder'):
    image_files.list_images(str(tmp_path / 'missing'))


def test_images_are_padded_to_buckets_unless_the_model_sees_the_whole_image():
  assert deblur.size_bucket(mimo_unet.MIMOUNet()) == 64
  assert deblur.size_bucket(mimo_unet.MIMOUNet(), 6) == 12  # a multiple of size_multiple 4
  assert deblur.size_bucket(nafnet.NAFNet()) == 1  # padding would change every pixel
  assert deblur.size_bucket(nafnet.NAFNet(), 16) == 16
  assert deblur.size_bucket(fftformer.FFTformer()) == 32  # as the official test pads


def test_a_work_directory_without_checkpoints_is_named(tmp_path):
  with pytest.raises(InputError, match=f'{tmp_path} has no checkpoints/ folder'):
    deblur.load_model(str(tmp_path))


def test_tiles_are_multiples_of_the_models_bucket_and_the_log_says_what_tiling_changes():
  restormer_model = restormer.Restormer()
  bucket = deblur.size_bucket(restormer_model)
  assert bucket == 8  # the official test script's multiple, no more
  with pytest.raises(InputError, match=r'^--tile=100 must be a multiple of 8, the multiple '
                                       r'Restormer pads image sides to \(--bucket\), '
                                       r'e\.g\. 104\.$'):
    deblur.check_tile(restormer_model, 100, bucket)
  note = deblur.check_tile(restormer_model, 96, bucket)
  assert 'near tile seams' in note and 'every output pixel can differ' in note
  local = deblur.check_tile(mimo_unet.MIMOUNet(), 128, deblur.size_bucket(mimo_unet.MIMOUNet()))
  assert 'near tile seams' in local and 'every output pixel' not in local
