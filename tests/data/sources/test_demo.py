"""The embedded demo source: blurred crops of bundled photos, held-out pairs written once."""

import os

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from deblur_jax.data import pipeline
from deblur_jax.data.sources import demo
from deblur_jax.errors import InputError
from helpers import train_batches


def test_demo_batches_are_blurred_crops_of_the_photos():
  config = tiny.get_config().data
  (batch,), num_images = train_batches(config, 1)
  assert num_images == len(demo.TRAIN_PHOTOS)
  assert batch['blur'].shape == (4, 32, 32, 3)
  levels = batch['blur'] * 255
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # stored as 8-bit

def test_demo_eval_pairs_are_written_once_per_blur(tmp_path):
  config = tiny.get_config().data
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
  config = tiny.get_config().data
  config.demo.eval_blurs = 'gauss7,defocus'
  with pytest.raises(ValueError, match=r"eval_blurs names \['defocus'\]"):
    pipeline.find_eval_pairs(config, str(tmp_path), min_size=11)


@pytest.mark.parametrize('field,value,message', [
    ('crop_size', 480, r'config\.data\.crop_size=480 is too large for the demo photos .*use at '
                       r'most \d+'),
    ('motion_fraction', 1.5, r'config\.data\.demo\.motion_fraction=1\.5 must lie in \[0, 1\]'),
])
def test_bad_demo_settings_name_the_field(field, value, message):
  config = tiny.get_config().data
  if field == 'crop_size':
    config.crop_size = value
  else:
    config.demo.motion_fraction = value
  with pytest.raises(InputError, match=message):
    train_batches(config, 1)


def test_the_demo_is_chosen_explicitly_or_by_an_empty_dir_and_reads_no_dir(tmp_path):
  config = tiny.get_config().data
  config.source = 'demo'
  (batch,), num_images = train_batches(config, 1)
  assert num_images == len(demo.TRAIN_PHOTOS) and batch['blur'].shape == (4, 32, 32, 3)
  config.dir = str(tmp_path)
  with pytest.raises(InputError, match=r"source='demo' does not read config\.data\.dir"):
    train_batches(config, 1)
