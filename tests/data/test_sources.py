"""The data-source interface: one dispatch on config.data.source, the same contract
for every source, and a clear error for every inconsistent source/dir/cache."""

import numpy as np
import pytest

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline, sources, transforms
from deblur_jax.data.sources import demo, folders, gopro_tfds, synthetic
from helpers import make_pair_tree, smooth_image, write_png


def config_for(name, tmp_path):
  """(config.data reading source `name` from small files under tmp_path, its
  number of training images, its number of evaluation pairs)."""
  config = mimo.get_config('tiny').data
  config.source = name
  config.crop_size = 16
  if name == 'folders':
    config.dir = str(make_pair_tree(tmp_path / 'pairs', size=(24, 32)))
    config.cache_dir = str(tmp_path / 'cache')  # cache 'auto': a file cache there
    return config, 6, 6
  if name == 'synthetic':
    rng = np.random.default_rng(0)
    for relative in ('train/a.png', 'train/sub/b.png', 'test/c.png'):
      write_png(tmp_path / 'photos' / relative, smooth_image(rng, 40, 48))
    config.dir = str(tmp_path / 'photos')
    config.synthetic.kernels = 'gauss7'
    return config, 2, 1
  assert name == 'demo'
  # One blur: gauss7.
  return config, len(config.demo.train_photos.split(',')), len(demo.HELD_OUT_PHOTOS)


def unbatch(batch):
  return [{key: images[k] for key, images in batch.items()} for k in range(len(batch['blur']))]


# What each source's training crops leave the host as: the levels of image files (the
# device turns them into floats), float32 in [0, 1] where the blur is computed.
TRAIN_DTYPES = {'folders': np.uint8, 'synthetic': np.float32, 'demo': np.float32}


@pytest.mark.parametrize('name', ['folders', 'synthetic', 'demo'])
def test_every_source_gives_seeded_crops_and_readable_eval_pairs(name, tmp_path):
  config, num_train, num_eval = config_for(name, tmp_path)
  source = sources.resolve(config)
  examples = source.train_examples(config, crop_size=16, hflip=True, seed=0)
  assert examples.num_images == num_train

  indices = transforms.global_example_indices(0, 4, range(4))
  first, again = ([example for batch in pipeline.batched_examples(examples, 0, indices, 1)
                   .take(5).as_numpy_iterator() for example in unbatch(batch)]
                  for _ in range(2))
  for a, b in zip(first, again):
    assert a['blur'].shape == a['sharp'].shape == (16, 16, 3)
    assert a['blur'].dtype == a['sharp'].dtype == TRAIN_DTYPES[name]
    if name != 'folders':
      assert 0 <= a['sharp'].min() <= a['sharp'].max() <= 1
    np.testing.assert_array_equal(a['blur'], b['blur'])
  # Blurred and sharp pairs (a demo crop of a flat region, or under gauss3, may not change).
  assert sum(not np.array_equal(a['blur'], a['sharp']) for a in first) >= 2
  assert not np.array_equal(first[0]['sharp'], first[1]['sharp'])

  pairs, read_pairs = source.eval_pairs(config, str(tmp_path / 'work'), min_size=16,
                                        max_pairs=None)
  assert len(pairs) == num_eval
  for pair, images in zip(pairs, read_pairs(pairs).as_numpy_iterator()):
    assert images['blur'].shape == images['sharp'].shape == (pair.height, pair.width, 3)
    assert images['blur'].dtype == np.float32  # evaluation reads floats from every source
  capped, _ = source.eval_pairs(config, str(tmp_path / 'work'), min_size=16, max_pairs=1)
  assert capped == pairs[:1]


@pytest.mark.parametrize('source,data_dir,expected', [
    ('auto', '', demo.SOURCE), ('', '', demo.SOURCE), ('auto', '/d', folders.SOURCE),
    ('demo', '', demo.SOURCE), ('folders', '/d', folders.SOURCE),
    ('synthetic', '/d', synthetic.SOURCE), ('tfds', '', gopro_tfds.SOURCE)])
def test_one_dispatch_picks_the_source(source, data_dir, expected):
  config = mimo.get_config('tiny').data
  config.source, config.dir = source, data_dir
  assert config.cache == 'auto'  # the default fits every source
  assert sources.resolve(config) is expected
  assert sources.source_name(config) in sources.MODULES


@pytest.mark.parametrize('source,data_dir,cache,message', [
    ('folders', '', 'none', r"config\.data\.dir is empty, and config\.data\.source='folders' "
                            r"reads a paired dataset .*config\.data\.source='demo'"),
    ('synthetic', '', 'none', r"config\.data\.dir is empty, and config\.data\.source="
                              r"'synthetic' reads a folder of sharp images"),
    ('demo', '/d', 'none', r"config\.data\.source='demo' does not read config\.data\.dir='/d'"),
    ('tfds', '/d', 'none', r"config\.data\.source='tfds' does not read config\.data\.dir='/d'"),
    ('lmdb', '/d', 'none', r"Unknown config\.data\.source 'lmdb'; choose one of \['auto', "
                           r"'demo', 'folders', 'synthetic', 'tfds'\]"),
    ('auto', '', 'memory', r"config\.data\.cache='memory' applies to source='folders'; set "
                           r"it to 'auto' or 'none' for source='demo'"),
    ('synthetic', '/d', 'file', r"config\.data\.cache='file' applies to source='folders'"),
])
def test_inconsistent_source_dir_and_cache_are_errors_naming_the_fields(source, data_dir, cache,
                                                                        message, tmp_path):
  config = mimo.get_config('tiny').data
  config.source, config.dir, config.cache = source, data_dir, cache
  for check in (pipeline.check_config,
                lambda c: pipeline.find_eval_pairs(c, str(tmp_path), min_size=16),
                lambda c: pipeline.create_train_dataset(c, seed=0, global_batch=4,
                                                        rows=range(4), start_step=0)):
    with pytest.raises(InputError, match=message):
      check(config)


@pytest.mark.parametrize('field,value,message', [
    ('crop_size', 0, r'config\.data\.crop_size=0 must be positive'),
    ('max_eval_images', -1, r'config\.data\.max_eval_images=-1 must be >= 0'),
    ('cache', 'ram', r"Unknown config\.data\.cache 'ram'"),
])
def test_bad_data_fields_are_errors_before_any_data_is_read(field, value, message):
  config = mimo.get_config('tiny').data
  config.dir = '/nowhere'  # never looked at
  config[field] = value
  with pytest.raises(InputError, match=message):
    pipeline.check_config(config)
