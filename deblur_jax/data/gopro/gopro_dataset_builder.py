"""TFDS builder for GoPro (Nah et al., CVPR 2017) from a hand-downloaded GOPRO_Large.

Splits 'train' (2103 pairs) and 'test' (1111 pairs); builder configs 'blur'
(default, what MIMO-UNet, NAFNet, ... use) and 'blur_gamma' pick the blurred
folder. Pairs are found and their headers checked by pairs.find_pairs; the
PNG bytes are stored as they are, after a full decode that makes a corrupt
file fail the build by name rather than fail a training run later.

Records are written in name order (index i is the i-th of
`info.metadata[split]['names']`, whose sizes are alongside) and in the
ArrayRecord format by default, so that tfds_source.py can read example i
directly: `as_data_source()`, not `as_dataset()`. Pass
`GoPro(file_format='tfrecord')` for a dataset that `as_dataset()` can stream
instead.
"""

import io

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from deblur_jax.core.errors import InputError
from deblur_jax.data import pairs as pairs_lib

SPLITS = ('train', 'test')
FOLDER_NAME = 'GOPRO_Large'
ZIP_NAME = 'GOPRO_Large.zip'
_KEY_SPACE = 2 ** 128  # TFDS sorts records by 128-bit keys.

_DESCRIPTION = """\
GoPro deblurring pairs (Nah et al., CVPR 2017): 1280x720 frames of 33 GoPro
HERO4 sequences, each blurred frame the average of 7-13 consecutive sharp
frames. 2103 training pairs from 22 sequences and 1111 test pairs from 11.
"""

_CITATION = """\
@inproceedings{Nah_2017_CVPR,
  author = {Nah, Seungjun and Kim, Tae Hyun and Lee, Kyoung Mu},
  title = {Deep Multi-Scale Convolutional Neural Network for Dynamic Scene Deblurring},
  booktitle = {The IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2017}
}
"""


class GoPro(tfds.core.GeneratorBasedBuilder):
  """GoPro blurred/sharp pairs with their sequence and frame names."""

  name = 'gopro'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(
          name='blur', description="The 'blur' frames, averaged as stored; used by most papers."),
      tfds.core.BuilderConfig(
          name='blur_gamma', description="The 'blur_gamma' frames, averaged after gamma decoding."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = 'blur'
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
GoPro cannot be downloaded automatically. Download {ZIP_NAME} (about 9 GB) from
https://seungjunnah.github.io/Datasets/gopro and put in the manual directory DIR
(config.data.tfds_manual_dir for deblur_jax training, which prepares the dataset
on first use; or `GoPro(data_dir=...).download_and_prepare(
download_config=tfds.download.DownloadConfig(manual_dir=DIR))`) one of:
  DIR/{ZIP_NAME}                      (extracted under the download directory)
  DIR/{FOLDER_NAME}/{{train,test}}/GOPRxxxx_yy_zz/{{blur,blur_gamma,sharp}}/NNNNNN.png
  DIR/{{train,test}}/...                  (DIR is the {FOLDER_NAME} folder itself)
"""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10 finds it through `importlib_resources`, which it only
    # requires before Python 3.9; this file's path is what it is looking for.
    return epath.Path(__file__)

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    if file_format is None and not self.is_prepared():
      # Random access is what training needs; a prepared dataset keeps its format.
      self.info.set_file_format('array_record', override=True)

  def _info(self) -> tfds.core.DatasetInfo:
    image = tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format='png')
    return tfds.core.DatasetInfo(
        builder=self,
        description=_DESCRIPTION,
        features=tfds.features.FeaturesDict({
            'blur': image,  # uint8 HxWx3, the stored file's pixels.
            'sharp': image,
            'sequence': tfds.features.Text(),  # 'GOPR0372_07_00' ('' if flattened).
            'frame': tfds.features.Text(),  # File stem: '000047'.
            'name': tfds.features.Text(),  # 'GOPR0372_07_00/000047.png'.
        }),
        supervised_keys=('blur', 'sharp'),
        homepage='https://seungjunnah.github.io/Datasets/gopro',
        citation=_CITATION,
        disable_shuffling=True,  # Index i is the i-th pair by name.
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_gopro_root(dl_manager.manual_dir, dl_manager.extract)
    generators = {}
    for split in SPLITS:
      pairs = pairs_lib.find_pairs(str(root), split, self.builder_config.name).pairs
      self.info.metadata[split] = {'names': [p.name for p in pairs],
                                   'heights': [p.height for p in pairs],
                                   'widths': [p.width for p in pairs]}
      generators[split] = self._generate_examples(pairs)
    return generators

  def _generate_examples(self, pairs):
    # With shuffling disabled TFDS writes records in key order; spreading the
    # keys over the whole key space keeps its on-disk sort buckets small.
    spacing = _KEY_SPACE // len(pairs)
    for i, pair in enumerate(pairs):
      yield i * spacing, {
          'blur': checked_image_bytes(pair.blur),
          'sharp': checked_image_bytes(pair.sharp),
          'sequence': pair.group,
          'frame': epath.Path(pair.name).stem,
          'name': pair.name,
      }


def _has_splits(folder: epath.Path) -> bool:
  return all((folder / split).is_dir() for split in SPLITS)


def find_gopro_root(manual_dir: epath.PathLike, extract) -> epath.Path:
  """The folder holding train/ and test/: manual_dir/GOPRO_Large, manual_dir
  itself, or the inside of manual_dir/GOPRO_Large.zip, extracted by `extract`
  (path -> extracted folder)."""
  manual_dir = epath.Path(manual_dir)
  for folder in (manual_dir / FOLDER_NAME, manual_dir):
    if _has_splits(folder):
      return folder
  zip_path = manual_dir / ZIP_NAME
  if zip_path.exists():
    extracted = epath.Path(extract(zip_path))
    for folder in (extracted / FOLDER_NAME, extracted):
      if _has_splits(folder):
        return folder
    raise InputError(f'{zip_path} does not hold {FOLDER_NAME}/train/ and {FOLDER_NAME}/test/ '
                     f'(extracted to {extracted}: {sorted(p.name for p in extracted.iterdir())}).')
  raise InputError(
      f'The manual directory {manual_dir} holds no GoPro dataset: expected {ZIP_NAME}, '
      f'{FOLDER_NAME}/train/ and {FOLDER_NAME}/test/, or train/ and test/ in it, but it has '
      f'{sorted(p.name for p in manual_dir.iterdir())}.\n{GoPro.MANUAL_DOWNLOAD_INSTRUCTIONS}')


def checked_image_bytes(path: str) -> bytes:
  """The file's bytes, once its pixels decode; an InputError naming it otherwise."""
  data = epath.Path(path).read_bytes()
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    raise InputError(f'{path} cannot be decoded ({e}); replace or remove it (and its '
                     'partner) and build the dataset again.') from None
  return data
