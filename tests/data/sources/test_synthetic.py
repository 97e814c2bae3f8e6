"""config.data.source='synthetic': a folder of sharp images blurred on the fly for
training, and blurred once into a fixed evaluation set."""

import os

import numpy as np
import pytest
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline
from deblur_jax.data.sources import synthetic
from deblur_jax.training import loop
from helpers import contains_window, smooth_image, train_batches, write_png

SIZE = (72, 80)


@pytest.fixture
def photos(tmp_path):
  """photos/train/{a,b,sub/c}.png and photos/test/{d,e}.png, all sharp."""
  rng = np.random.default_rng(0)
  root = tmp_path / 'photos'
  for relative in ('train/a.png', 'train/b.png', 'train/sub/c.png', 'test/d.png', 'test/e.png'):
    write_png(root / relative, smooth_image(rng, *SIZE))
  return root


@pytest.fixture
def data_config(photos):
  config = mimo.get_config('tiny').data
  config.source = 'synthetic'
  config.dir = str(photos)
  config.synthetic.kernels = 'gauss11'
  return config


def total_variation(images):
  return np.abs(np.diff(images, axis=1)).mean() + np.abs(np.diff(images, axis=2)).mean()


def test_training_pairs_are_crops_of_the_sharp_images_and_their_blur(data_config, photos):
  (batch,), num_images = train_batches(data_config, 1)
  assert num_images == 3  # train/ searched recursively; test/ left for evaluation
  assert batch['blur'].shape == batch['sharp'].shape == (4, 32, 32, 3)
  sources = [np.asarray(Image.open(photos / 'train' / p), np.float32) / 255.0
             for p in ('a.png', 'b.png', 'sub/c.png')]
  for sharp in batch['sharp']:
    assert any(contains_window(source, sharp) for source in sources)
  # An 11x11 Gaussian smooths: same mean, less variation; quantized to 8 bits.
  np.testing.assert_allclose(batch['blur'].mean(), batch['sharp'].mean(), atol=0.01)
  assert total_variation(batch['blur']) < 0.8 * total_variation(batch['sharp'])
  np.testing.assert_allclose(batch['blur'] * 255, np.round(batch['blur'] * 255), atol=1e-3)


def test_same_seed_same_pairs_and_a_resume_continues_with_the_following_ones(data_config):
  data_config.synthetic.kernels = 'shake,motion'  # random kernels: the blur is seeded too
  data_config.synthetic.noise_sigma = '0,0.02'
  first, _ = train_batches(data_config, 4)
  again, _ = train_batches(data_config, 4)
  resumed, _ = train_batches(data_config, 2, start_step=2)
  other_seed, _ = train_batches(data_config, 1, seed=1)
  for x, y in zip(first, again):
    np.testing.assert_array_equal(x['blur'], y['blur'])
  for x, y in zip(first[2:], resumed):
    np.testing.assert_array_equal(x['blur'], y['blur'])
    np.testing.assert_array_equal(x['sharp'], y['sharp'])
  assert not np.array_equal(first[0]['blur'], other_seed[0]['blur'])
  # Two processes' halves of a global batch are the rows of the whole one.
  halves = [train_batches(data_config, 1, rows=rows)[0][0] for rows in (range(0, 2), range(2, 4))]
  np.testing.assert_array_equal(np.concatenate([h['blur'] for h in halves]), first[0]['blur'])


def test_the_evaluation_set_is_written_once_and_keyed_by_its_seed(data_config, tmp_path):
  workdir = str(tmp_path / 'work')
  found, _ = pipeline.find_eval_pairs(data_config, workdir, min_size=16)
  assert sorted(p.name for p in found) == ['d.png', 'e.png']
  written = {p.blur: os.path.getmtime(p.blur) for p in found}
  again, _ = pipeline.find_eval_pairs(data_config, workdir, min_size=16)
  assert [os.path.getmtime(p.blur) for p in again] == [written[p.blur] for p in again]
  data_config.synthetic.eval_seed = 1
  data_config.synthetic.kernels = 'shake'
  other, _ = pipeline.find_eval_pairs(data_config, workdir, min_size=16)
  assert os.path.dirname(other[0].blur) != os.path.dirname(found[0].blur)
  assert (other[0].height, other[0].width) == SIZE


@pytest.mark.parametrize('field, value, message', [
    ('kernels', 'gauss7,blurry', r'config\.data\.synthetic: kernels=gauss7,blurry'),
    ('noise_sigma', '0,0.1,0.2', r'config\.data\.synthetic\.noise_sigma'),
    ('jpeg_quality', 'high', r'config\.data\.synthetic\.jpeg_quality'),
    ('kernel_size', 8, r'kernel_size=8 must be odd'),
])
def test_bad_degradations_name_the_field(data_config, field, value, message):
  data_config.synthetic[field] = value
  with pytest.raises(InputError, match=message):
    train_batches(data_config, 1)


def test_images_too_small_for_the_crop_and_kernel_are_skipped_then_an_error(data_config, photos):
  write_png(photos / 'train' / 'small.png', np.zeros((40, 40, 3), np.uint8))
  (photos / 'train' / 'empty.png').write_bytes(b'')
  assert train_batches(data_config, 1)[1] == 3
  data_config.crop_size = 64  # + 2 x 5 margin for the 11x11 kernel: more than 72
  with pytest.raises(InputError, match='smaller than 74x74'):
    train_batches(data_config, 1)


def test_missing_folders_and_a_cache_are_errors(data_config, tmp_path):
  data_config.cache = 'memory'
  with pytest.raises(InputError, match="applies to source='folders'"):
    train_batches(data_config, 1)
  data_config.cache = 'none'
  data_config.dir = str(tmp_path / 'nowhere')
  with pytest.raises(InputError, match="has no 'train' folder"):
    train_batches(data_config, 1)
  with pytest.raises(InputError, match="has no 'test' folder"):
    pipeline.find_eval_pairs(data_config, str(tmp_path / 'work'), min_size=16)


def test_training_runs_on_synthetic_blur_end_to_end(photos, tmp_path):
  config = mimo.get_config('tiny')
  config.data.source = 'synthetic'
  config.data.dir = str(photos)
  config.train.num_train_steps = 2
  summary = loop.train_and_evaluate(config, str(tmp_path / 'work'))
  assert summary['num_images'] == 2 and np.isfinite(summary['psnr'])
  margin = synthetic.kernel_margin(synthetic.blur_spec(config.data.synthetic))
  assert margin == 15  # gauss7 and shake (31x31) by default
