"""The embedded demo source: blurred crops of bundled photos, held-out pairs written once."""

import os

import numpy as np
import pytest
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline
from deblur_jax.data.sources import demo
from helpers import train_batches


def test_demo_batches_are_blurred_crops_of_the_photos():
  config = mimo.get_config('tiny').data
  (batch,), num_images = train_batches(config, 1)
  assert num_images == len(config.demo.train_photos.split(','))
  assert batch['blur'].shape == (4, 32, 32, 3)
  levels = batch['blur'] * 255
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # stored as 8-bit

def test_demo_eval_pairs_are_written_once_per_blur(tmp_path):
  config = mimo.get_config('tiny').data
  config.demo.eval_blurs = 'gauss7,motion'
  config.max_eval_images = 0
  found, _ = pipeline.find_eval_pairs(config, str(tmp_path), min_size=11)
  assert sorted(p.name for p in found) == ['gauss7/chelsea.png', 'gauss7/coffee.png',
                                           'motion/chelsea.png', 'motion/coffee.png']
  for pair in found:
    assert Image.open(pair.blur).size == Image.open(pair.sharp).size
  written = {p.blur: os.path.getmtime(p.blur) for p in found}
  config.max_eval_images = 3
  again, _ = pipeline.find_eval_pairs(config, str(tmp_path), min_size=11)
  assert len(again) == 3
  assert all(os.path.getmtime(p.blur) == written[p.blur] for p in again)

def test_unknown_demo_blur_is_an_error(tmp_path):
  config = mimo.get_config('tiny').data
  config.demo.eval_blurs = 'gauss7,defocus'
  with pytest.raises(ValueError, match=r"eval_blurs names \['defocus'\]"):
    pipeline.find_eval_pairs(config, str(tmp_path), min_size=11)


def test_grey_photos_train_as_three_equal_channels():
  config = mimo.get_config('tiny').data
  config.demo.train_photos = 'camera, grass'
  (batch,), num_images = train_batches(config, 1)
  assert num_images == 2
  np.testing.assert_array_equal(batch['sharp'][..., 0], batch['sharp'][..., 2])
  np.testing.assert_array_equal(batch['blur'][..., 1], batch['blur'][..., 2])
  assert demo.load_photo('camera').shape == (512, 512, 3)


def test_the_motion_bank_holds_the_configured_number_of_kernels():
  bank, probs = demo.training_kernel_bank(0.25, num_motion_kernels=100)
  assert bank.shape == (103, demo.KERNEL_SIZE, demo.KERNEL_SIZE)
  np.testing.assert_allclose(bank.sum(axis=(1, 2)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(probs[3:].sum(), 0.25)
  np.testing.assert_allclose(probs.sum(), 1.0)


@pytest.mark.parametrize('field,value,message', [
    ('crop_size', 480, r'config\.data\.crop_size=480 is too large for the demo photos .*use at '
                       r'most \d+'),
    ('motion_fraction', 1.5, r'config\.data\.demo\.motion_fraction=1\.5 must lie in \[0, 1\]'),
    ('motion_kernels', 0, r'config\.data\.demo\.motion_kernels=0 must be at least 1'),
    ('train_photos', 'astronaut,chelsea', r"config\.data\.demo\.train_photos names \['chelsea'\]; "
                                          r'choose from astronaut, '),
    ('train_photos', ' , ', r"config\.data\.demo\.train_photos names no photo"),
])
def test_bad_demo_settings_name_the_field(field, value, message):
  config = mimo.get_config('tiny').data
  if field == 'crop_size':
    config.crop_size = value
  else:
    config.demo[field] = value
  with pytest.raises(InputError, match=message):
    train_batches(config, 1)


def test_the_demo_is_chosen_explicitly_or_by_an_empty_dir_and_reads_no_dir(tmp_path):
  config = mimo.get_config('tiny').data
  config.source = 'demo'
  (batch,), num_images = train_batches(config, 1)
  assert num_images == len(config.demo.train_photos.split(','))
  assert batch['blur'].shape == (4, 32, 32, 3)
  config.dir = str(tmp_path)
  with pytest.raises(InputError, match=r"source='demo' does not read config\.data\.dir"):
    train_batches(config, 1)
