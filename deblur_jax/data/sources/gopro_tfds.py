"""GoPro read from its TFDS dataset (config.data.source = 'tfds') instead of folders.

The dataset ('gopro', data/gopro/) is prepared once from GOPRO_Large into
`data.tfds_data_dir`, then read by record index: its ArrayRecord files give
random access, so training example g is the same pure function of (seed, g)
as with the folder reader (folders.py, transforms.py), and a resumed run restarts exactly.
A tf.numpy_function fetches the serialized record (a memory copy under the
GIL); parsing and PNG decoding run in TensorFlow's threads. Streaming a
TFRecord split through a shuffle buffer would avoid the Python call but could
not resume where it stopped, nor give every process its own examples.
"""

import dataclasses
import os
from typing import Optional, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from deblur_jax.core.errors import InputError
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import transforms
from deblur_jax.data.gopro import gopro_dataset_builder
from deblur_jax.data.sources import Source, TrainExamples

BLUR_FOLDERS = tuple(c.name for c in gopro_dataset_builder.GoPro.BUILDER_CONFIGS)


@dataclasses.dataclass(frozen=True)
class TfdsSplit:
  """The usable pairs of one prepared split, by name, and where their records are."""
  source: Sequence[bytes]  # Serialized records, by record index.
  features: tfds.features.FeaturesDict
  records: tuple[int, ...]  # Record index of each usable pair.
  pairs: tuple[pairs_lib.ImagePair, ...]  # blur/sharp hold 'gopro/blur/1.0.0:test[12]/blur'.

  def __len__(self) -> int:
    return len(self.records)


def _builder(data_config) -> gopro_dataset_builder.GoPro:
  blur_folder = data_config.blur_folder
  if blur_folder not in BLUR_FOLDERS:
    raise InputError(f"config.data.blur_folder={blur_folder!r} must be one of {BLUR_FOLDERS} "
                     "with config.data.source='tfds'.")
  if data_config.sharp_folder != 'sharp':
    raise InputError(f"config.data.sharp_folder={data_config.sharp_folder!r} must be 'sharp' "
                     "with config.data.source='tfds' (GoPro's sharp folder).")
  return gopro_dataset_builder.GoPro(data_dir=data_config.tfds_data_dir or None,
                                     config=blur_folder)


def _prepare(builder: gopro_dataset_builder.GoPro, manual_dir: str):
  """Builds the dataset from GOPRO_Large in `manual_dir` (one process at a time)."""
  if not manual_dir:
    raise InputError(
        f'No prepared GoPro dataset ({builder.info.full_name}) in {builder.data_dir_root} '
        '(config.data.tfds_data_dir), and config.data.tfds_manual_dir is empty: set it to the '
        'folder holding GoPro to prepare the dataset from it.\n'
        + builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
  if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
    raise InputError(f'config.data.tfds_manual_dir={manual_dir!r} is not a directory or is '
                     f'empty.\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')
  logging.info('Preparing %s in %s from %s.', builder.info.full_name, builder.data_dir_root,
               manual_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def load_gopro_split(data_config, split: str, *, min_size: int = 0,
                     max_pairs: Optional[int] = None) -> TfdsSplit:
  """The pairs of `split` ('train' or 'test'), preparing the dataset first if needed.

  Uses config.data.tfds_data_dir ('' = TFDS's default), tfds_manual_dir and
  blur_folder ('blur' or 'blur_gamma'). Like pairs.find_pairs, pairs smaller
  than `min_size` on either side are left out and `max_pairs` keeps the first
  by name.
  """
  builder = _builder(data_config)
  if not builder.is_prepared():
    _prepare(builder, data_config.tfds_manual_dir)
  if split not in builder.info.splits:
    raise InputError(f'{builder.info.full_name} has no split {split!r}: it has '
                     f'{sorted(builder.info.splits)}.')
  try:
    source = builder.as_data_source(
        split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  except NotImplementedError:
    raise InputError(
        f'{builder.data_dir} holds GoPro as {builder.info.file_format.value} files, which '
        "cannot be read by index: config.data.source='tfds' needs the ArrayRecord files "
        'the builder writes unless given another file_format. Delete that folder and '
        'prepare it again.') from None
  meta = builder.info.metadata.get(split, {})
  names = meta.get('names', [])
  if len(names) != len(source):
    raise InputError(f'{builder.data_dir} lists {len(names)} names for its {len(source)} '
                     f'{split!r} records: it was not prepared by deblur_jax; prepare it again.')
  sizes = list(zip(meta['heights'], meta['widths']))
  records = [i for i, (h, w) in enumerate(sizes) if min(h, w) >= min_size]
  if len(records) < len(sizes):
    logging.warning('Leaving out %d %s pairs smaller than %dx%d.', len(sizes) - len(records),
                    split, min_size, min_size)
  records = records[:max_pairs or None]
  if not records:
    raise InputError(f'No {split!r} pair of {builder.data_dir} is at least '
                     f'{min_size}x{min_size}.')
  ref = f'{builder.info.full_name}:{split}'
  pairs = tuple(pairs_lib.ImagePair(names[i], f'{ref}[{i}]/blur', f'{ref}[{i}]/sharp', *sizes[i])
                for i in records)
  logging.info('Reading %d %s pairs from %s.', len(records), split, builder.data_dir)
  return TfdsSplit(source, builder.info.features, tuple(records), pairs)


def _read_pair(split: TfdsSplit, record, dtype=tf.float32):
  """{'blur', 'sharp'} HxWx3 of record index `record` (a tensor): float32 in [0, 1], or
  dtype uint8 for the levels (every image of the dataset is an 8-bit PNG)."""
  serialized = tf.numpy_function(lambda i: split.source[int(i)], [record], tf.string,
                                 stateful=False)
  skip = tfds.decode.SkipDecoding()
  example = split.features.deserialize_example(tf.ensure_shape(serialized, []),
                                               decoders={'blur': skip, 'sharp': skip})
  return {k: transforms.decode_image_bytes(example[k], dtype) for k in ('blur', 'sharp')}


def split_examples(split: TfdsSplit, *, crop_size: int, hflip: bool) -> TrainExamples:
  """Paired random crops (and flips) of the records of `split` as uint8 levels, as the
  folder reader cuts them from the same images (folders.pair_examples)."""
  records = tf.constant(split.records, tf.int64)

  def make(i, g, seeds):
    del g
    crop_seed, flip_seed = seeds
    pair = _read_pair(split, records[i], tf.uint8)
    both = tf.concat([pair['blur'], pair['sharp']], axis=-1)
    both = transforms.random_crop_flip(both, crop_size, hflip, crop_seed, flip_seed)
    return {'blur': both[..., :3], 'sharp': both[..., 3:]}

  # Every image was decoded when the dataset was built: a failure here is a
  # damaged dataset and stops training.
  return TrainExamples(len(split), make)


def train_examples(data_config, *, crop_size: int, hflip: bool, seed: int) -> TrainExamples:
  del seed
  split = load_gopro_split(data_config, data_config.train_split, min_size=crop_size)
  return split_examples(split, crop_size=crop_size, hflip=hflip)


def tfds_eval_dataset(split: TfdsSplit, names: Sequence[str]) -> tf.data.Dataset:
  """Full-size pairs named `names` (of split.pairs), in that order: {'blur', 'sharp'}
  float32 HxWx3 in [0, 1], unbatched."""
  record_of = {p.name: r for p, r in zip(split.pairs, split.records)}
  records = tf.data.Dataset.from_tensor_slices(tf.constant([record_of[n] for n in names],
                                                           tf.int64))
  return records.map(lambda r: _read_pair(split, r), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


def eval_pairs(data_config, workdir: str, *, min_size: int, max_pairs: Optional[int]):
  del workdir
  split = load_gopro_split(data_config, data_config.eval_split, min_size=min_size,
                           max_pairs=max_pairs)
  return list(split.pairs), lambda pairs: tfds_eval_dataset(split, [p.name for p in pairs])


SOURCE = Source(train_examples, eval_pairs)
