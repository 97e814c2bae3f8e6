"""Blurred/sharp image files under `config.data.dir` (config.data.source = 'folders').

The pairs are found by pairs.find_pairs (GOPRO_Large's or the flattened
layout under the split folder) or listed by a pairs file. Training crops are
levels (uint8, or uint16 for a set with a 16-bit PNG: transforms.decode_levels),
cut from both files of a pair decoded for every crop, or a batch at a time from
the images decoded once (config.data.cache, see cache.py): the same levels.
"""

import functools
from typing import Optional, Sequence

import tensorflow as tf

from deblur_jax.data import cache as cache_lib
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import stages, transforms
from deblur_jax.data.sources import Source, TrainExamples


def find_folder_pairs(data_config, which: str, min_size: int,
                      max_pairs: Optional[int] = None) -> pairs_lib.PairList:
  """The checked pairs of `data.dir` for `which` ('train' or 'eval'): listed by
  data.{which}_pairs_file when set, else found under data.{which}_split."""
  pairs_file = data_config.get(f'{which}_pairs_file', '')
  if pairs_file:
    order = data_config.get('pairs_file_order', 'blur_sharp')
    return pairs_lib.read_pairs_file(data_config.dir, pairs_file, order,
                                     min_size=min_size, max_pairs=max_pairs,
                                     field=f'config.data.{which}_pairs_file')
  return pairs_lib.find_pairs(data_config.dir, data_config[f'{which}_split'],
                              data_config.blur_folder, data_config.sharp_folder,
                              min_size=min_size, max_pairs=max_pairs)


def pair_examples(pairs: Sequence[pairs_lib.ImagePair], *, crop_size: int, hflip: bool,
                  decoded: Optional[cache_lib.DecodedPairs] = None) -> TrainExamples:
  """Paired random crops (and flips) of the blurred/sharp files of `pairs` as levels,
  decoded for every crop, or cut a batch at a time from `decoded` (cache.load of
  `pairs`)."""
  # find_pairs already checked every header and PNG trailer; an image corrupt
  # inside is logged by TensorFlow and skipped (the cache records it as such).
  if decoded is not None:
    def window(i, g, seeds):
      del g  # The crop depends on the example through its seeds only.
      return decoded.window(i, crop_size, hflip, crop_seed=seeds[0], flip_seed=seeds[1])

    return TrainExamples(len(pairs), window, skip_errors=True,
                         cut_batch=functools.partial(decoded.cut_batch, size=crop_size))

  sixteen_bit, dtype = pairs_lib.level_format(pairs)
  sixteen_bit = tf.constant(sixteen_bit)
  blur_paths = tf.constant([p.blur for p in pairs])
  sharp_paths = tf.constant([p.sharp for p in pairs])

  def make(i, g, seeds):
    del g
    both = tf.concat([transforms.decode_levels(blur_paths[i], sixteen_bit[i, 0], dtype),
                      transforms.decode_levels(sharp_paths[i], sixteen_bit[i, 1], dtype)],
                     axis=-1)
    both = transforms.random_crop_flip(both, crop_size, hflip, crop_seed=seeds[0],
                                       flip_seed=seeds[1])
    return {'blur': both[..., :3], 'sharp': both[..., 3:]}

  return TrainExamples(len(pairs), make, skip_errors=True)


def train_examples(data_config, *, crop_size: int, hflip: bool, seed: int) -> TrainExamples:
  del seed  # Crops depend on the example's seeds only.
  # Pairs large enough for the largest crop of any stage: every stage draws from the same.
  min_size = stages.largest_crop_size(data_config, default=crop_size)
  pairs = find_folder_pairs(data_config, 'train', min_size=min_size).pairs
  name = cache_lib.cache_name(data_config.dir,
                              data_config.get('train_pairs_file') or data_config.train_split,
                              data_config.blur_folder, data_config.sharp_folder)
  decoded = cache_lib.load(pairs, data_config.get('cache', 'auto'),
                           data_config.get('cache_dir', ''), name)
  return pair_examples(pairs, crop_size=crop_size, hflip=hflip, decoded=decoded)


def read_pair_files(pairs: Sequence[pairs_lib.ImagePair]) -> tf.data.Dataset:
  """Full-size {'blur', 'sharp'} of `pairs` read from their files, in order, unbatched."""
  paths = tf.data.Dataset.from_tensor_slices(([p.blur for p in pairs], [p.sharp for p in pairs]))

  def load(blur_path, sharp_path):
    return {'blur': transforms.decode_image(blur_path),
            'sharp': transforms.decode_image(sharp_path)}

  return paths.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def written_eval_pairs(root: str, min_size: int, max_pairs: Optional[int]):
  """(the pairs of root/test/{blur,sharp} or root/test/SEQ/{blur,sharp}, read_pair_files):
  the evaluation sets that sources write into the work directory."""
  pairs = pairs_lib.find_pairs(root, 'test', min_size=min_size, max_pairs=max_pairs).pairs
  return pairs, read_pair_files


def eval_pairs(data_config, workdir: str, *, min_size: int, max_pairs: Optional[int]):
  del workdir  # Nothing to write.
  return find_folder_pairs(data_config, 'eval', min_size, max_pairs).pairs, read_pair_files


SOURCE = Source(train_examples, eval_pairs,
                reads_dir='a paired dataset (GOPRO_Large, or SPLIT/{blur,sharp}/ folders)')
