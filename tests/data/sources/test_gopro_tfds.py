"""The GoPro TFDS dataset: building from GOPRO_Large (folder or zip), failures, and reading it."""

import pathlib
import shutil
import tempfile
import zipfile

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from deblur_jax.core.errors import InputError
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import pipeline, transforms
from deblur_jax.data.gopro import GoPro
from deblur_jax.data.sources import folders, gopro_tfds
from helpers import make_pair_tree, write_png

SIZE = (16, 24)
TRAIN_NAMES = ['GOPR0000_00_00/000000.png', 'GOPR0000_00_00/000001.png',
               'GOPR0001_00_00/000000.png', 'GOPR0001_00_00/000001.png']


def make_gopro_large(root):
  """GOPRO_Large in miniature: train 2 sequences x 2 frames, test 1 x 2, 16x24 PNGs,
  with 'blur_gamma' the upside-down 'blur' so that the two are told apart."""
  root = pathlib.Path(root)
  make_pair_tree(root, splits=('train',), num_sequences=2, per_sequence=2, size=SIZE, seed=0)
  make_pair_tree(root, splits=('test',), num_sequences=1, per_sequence=2, size=SIZE, seed=1)
  for blur in root.glob('*/*/blur/*.png'):
    gamma = blur.parent.parent / 'blur_gamma' / blur.name
    write_png(gamma, np.asarray(Image.open(blur))[::-1])
  return root


def read_png(path):
  return np.asarray(Image.open(path))


def build(data_dir, manual_dir, config='blur', **kwargs):
  builder = GoPro(data_dir=str(data_dir), config=config, **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  manual = tmp_path_factory.mktemp('manual')
  make_gopro_large(manual / 'GOPRO_Large')
  return manual


@pytest.fixture(scope='module')
def prepared(tmp_path_factory, manual_dir):
  """The 'blur' config built once (ArrayRecord) for the reading tests."""
  data_dir = tmp_path_factory.mktemp('tfds')
  build(data_dir, manual_dir)
  return data_dir


def data_config(data_dir='', manual='', blur_folder='blur'):
  return ml_collections.ConfigDict(dict(
      tfds_data_dir=str(data_dir), tfds_manual_dir=str(manual), blur_folder=blur_folder,
      sharp_folder='sharp', train_split='train', eval_split='test'))


class TestGoProWithTfdsTooling(tfds.testing.DatasetBuilderTestCase):
  """TFDS's own checks of both configs (as TFRecord, which `as_dataset` reads)."""
  DATASET_CLASS = GoPro
  SPLITS = {'train': 4, 'test': 2}

  @classmethod
  def setUpClass(cls):
    cls._example_dir = tempfile.mkdtemp()
    cls.EXAMPLE_DIR = str(make_gopro_large(pathlib.Path(cls._example_dir) / 'GOPRO_Large'))
    super().setUpClass()

  @classmethod
  def tearDownClass(cls):
    super().tearDownClass()
    shutil.rmtree(cls._example_dir)

  def _make_builder(self, config=None):
    return self.dataset_class(data_dir=self.tmp_dir, config=config, version=self.VERSION,
                              file_format='tfrecord')


def test_examples_are_the_files_in_name_order_with_sequence_and_frame(prepared, manual_dir):
  builder = GoPro(data_dir=str(prepared), config='blur')
  assert builder.is_prepared()
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  assert {s: builder.info.splits[s].num_examples for s in ('train', 'test')} == {
      'train': 4, 'test': 2}
  train = builder.as_data_source('train')
  assert [train[i]['name'].decode() for i in range(4)] == TRAIN_NAMES
  assert builder.info.metadata['train']['names'] == TRAIN_NAMES
  assert builder.info.metadata['train']['heights'] == [16] * 4
  example = train[3]
  assert example['sequence'] == b'GOPR0001_00_00' and example['frame'] == b'000001'
  folder = manual_dir / 'GOPRO_Large' / 'train' / 'GOPR0001_00_00'
  assert example['blur'].shape == example['sharp'].shape == SIZE + (3,)
  np.testing.assert_array_equal(example['blur'], read_png(folder / 'blur' / '000001.png'))
  np.testing.assert_array_equal(example['sharp'], read_png(folder / 'sharp' / '000001.png'))


def test_blur_gamma_config_reads_the_blur_gamma_folder(tmp_path, manual_dir):
  example = build(tmp_path, manual_dir, 'blur_gamma').as_data_source('test')[1]
  folder = manual_dir / 'GOPRO_Large' / 'test' / 'GOPR0000_00_00'
  np.testing.assert_array_equal(example['blur'], read_png(folder / 'blur_gamma' / '000001.png'))
  np.testing.assert_array_equal(example['sharp'], read_png(folder / 'sharp' / '000001.png'))


@pytest.mark.parametrize('layout', ['folder_itself', 'zip'])
def test_manual_dir_may_be_the_gopro_folder_or_hold_its_zip(tmp_path, manual_dir, layout):
  source = manual_dir / 'GOPRO_Large'
  if layout == 'folder_itself':
    manual = source
  else:
    manual = tmp_path / 'manual'
    manual.mkdir()
    with zipfile.ZipFile(manual / 'GOPRO_Large.zip', 'w') as z:
      for path in sorted(source.rglob('*.png')):
        z.write(path, path.relative_to(manual_dir))
  builder = build(tmp_path / 'data', manual)
  assert builder.info.splits['train'].num_examples == 4
  assert builder.info.splits['test'].num_examples == 2


def test_records_stay_in_name_order_when_tfds_sorts_on_disk(tmp_path, manual_dir, monkeypatch):
  monkeypatch.setattr(tfds.core.shuffle, 'MAX_MEM_BUFFER_SIZE', 0)  # GoPro-sized splits do.
  train = build(tmp_path, manual_dir).as_data_source('train')
  assert [train[i]['name'].decode() for i in range(4)] == TRAIN_NAMES


def test_manual_dir_without_gopro_names_it_and_what_was_expected(tmp_path):
  manual = tmp_path / 'manual'
  (manual / 'photos').mkdir(parents=True)
  with pytest.raises(InputError, match=rf"manual directory {manual} holds no GoPro dataset.*"
                                       r"GOPRO_Large\.zip.*it has \['photos'\]"):
    build(tmp_path / 'data', manual)


def test_a_file_with_a_bad_header_is_left_out_like_the_folder_reader_does(tmp_path):
  root = make_gopro_large(tmp_path / 'GOPRO_Large')
  (root / 'train' / 'GOPR0000_00_00' / 'blur' / '000001.png').write_bytes(b'')
  builder = build(tmp_path / 'data', tmp_path)
  assert builder.info.splits['train'].num_examples == 3
  assert 'GOPR0000_00_00/000001.png' not in builder.info.metadata['train']['names']


def test_a_corrupt_png_stops_the_build_by_name_and_leaves_no_dataset(tmp_path):
  root = make_gopro_large(tmp_path / 'GOPRO_Large')
  bad = root / 'train' / 'GOPR0001_00_00' / 'sharp' / '000000.png'  # third of four pairs
  data = bytearray(bad.read_bytes())
  middle = len(data) // 2  # inside the pixel data: header and trailer stay valid
  data[middle:middle + 16] = bytes(16)
  bad.write_bytes(bytes(data))
  pairs_lib.read_image_header(str(bad))  # passes the header checks
  data_dir = tmp_path / 'data'
  with pytest.raises(InputError, match=rf'{bad} cannot be decoded'):
    build(data_dir, tmp_path)
  assert not GoPro(data_dir=str(data_dir), config='blur').is_prepared()
  assert not list((data_dir / 'gopro' / 'blur').iterdir())  # no partial or temporary folder
  with pytest.raises(InputError, match='No prepared GoPro dataset'):
    gopro_tfds.load_gopro_split(data_config(data_dir), 'train')


def test_tfds_source_prepares_on_first_use_then_reads_the_prepared_dataset(tmp_path, manual_dir):
  config = data_config(tmp_path / 'data', manual_dir)
  split = gopro_tfds.load_gopro_split(config, 'train')
  assert [p.name for p in split.pairs] == TRAIN_NAMES
  assert (split.pairs[0].height, split.pairs[0].width) == SIZE
  config.tfds_manual_dir = ''
  assert len(gopro_tfds.load_gopro_split(config, 'test')) == 2


def test_train_crops_equal_the_folder_readers_and_are_deterministic(prepared, manual_dir):
  split = gopro_tfds.load_gopro_split(data_config(prepared), 'train', min_size=8)
  pairs = pairs_lib.find_pairs(str(manual_dir / 'GOPRO_Large'), 'train').pairs
  indices = transforms.global_example_indices(2, 4, range(1, 3))

  def crops(examples):
    return list(pipeline.example_dataset(examples, 3, indices).take(6).as_numpy_iterator())

  ours = crops(gopro_tfds.split_examples(split, crop_size=8, hflip=True))
  again = crops(gopro_tfds.split_examples(split, crop_size=8, hflip=True))
  folder = crops(folders.pair_examples(pairs, crop_size=8, hflip=True))
  assert ours[0]['blur'].shape == (8, 8, 3) and ours[0]['blur'].dtype == np.uint8
  for a, b, c in zip(ours, again, folder):
    for key in ('blur', 'sharp'):
      np.testing.assert_array_equal(a[key], b[key])
      np.testing.assert_array_equal(a[key], c[key])


def test_eval_dataset_reads_full_pairs_by_name(prepared, manual_dir):
  split = gopro_tfds.load_gopro_split(data_config(prepared), 'test')
  names = ['GOPR0000_00_00/000001.png', 'GOPR0000_00_00/000000.png']
  got = list(gopro_tfds.tfds_eval_dataset(split, names).as_numpy_iterator())
  for name, pair in zip(names, got):
    for key in ('blur', 'sharp'):
      path = manual_dir / 'GOPRO_Large' / 'test' / name.replace('/', f'/{key}/')
      np.testing.assert_array_equal(pair[key], transforms.decode_image(str(path)))


def test_min_size_and_max_pairs_select_like_find_pairs(prepared):
  assert len(gopro_tfds.load_gopro_split(data_config(prepared), 'train', max_pairs=3)) == 3
  with pytest.raises(InputError, match='at least 17x17'):
    gopro_tfds.load_gopro_split(data_config(prepared), 'train', min_size=17)


@pytest.mark.parametrize('manual,message', [('', 'tfds_manual_dir is empty'),
                                             ('missing', 'is not a directory or is empty')])
def test_unprepared_without_manual_dir_explains_the_manual_download(tmp_path, manual, message):
  manual = manual and str(tmp_path / manual)
  with pytest.raises(InputError, match=rf'(?s){message}.*GOPRO_Large\.zip'):
    gopro_tfds.load_gopro_split(data_config(tmp_path, manual), 'train')


def test_a_tfrecord_dataset_cannot_be_read_by_index(tmp_path, manual_dir):
  build(tmp_path, manual_dir, file_format='tfrecord')
  with pytest.raises(InputError, match='tfrecord files.*prepare it again'):
    gopro_tfds.load_gopro_split(data_config(tmp_path), 'train')


@pytest.mark.parametrize('field,value', [('blur_folder', 'input'), ('sharp_folder', 'target')])
def test_other_folder_names_are_config_errors(tmp_path, field, value):
  config = data_config(tmp_path)
  config[field] = value
  with pytest.raises(InputError, match=f'config.data.{field}'):
    gopro_tfds.load_gopro_split(config, 'train')


def test_training_reads_gopro_from_tfds_when_the_config_says_so(prepared, manual_dir, tmp_path):
  """The train loop end to end with data.source='tfds': crops from the prepared
  dataset, evaluation over its test split."""
  from deblur_jax.configs import mimo  # pylint: disable=g-import-not-at-top
  from deblur_jax.training import loop  # pylint: disable=g-import-not-at-top
  config = mimo.get_config('tiny')
  config.data.source = 'tfds'
  config.data.tfds_data_dir = str(prepared)
  config.data.crop_size = 16
  config.train.num_train_steps = 1
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary['num_images'] == 2 and np.isfinite(summary['psnr'])
  config.data.source = 'lmdb'
  with pytest.raises(InputError, match=r"config\.data\.source 'lmdb'"):
    loop.train_and_evaluate(config, str(tmp_path / 'other'))
