"""Training and evaluation datasets built from `config.data`.

Training: an endless tf.data stream of this process's slice of each global
batch of random crops, from step `start_step` on (see transforms.py).
Evaluation: full-size test pairs, batched by image size across all devices,
the last batch of each size padded and masked, each image seen exactly once.
"""

import dataclasses
import functools
import itertools
import os
from typing import Optional, Sequence

import tensorflow as tf

from deblur_jax.data import cache as cache_lib
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import transforms
from deblur_jax.data.sources import demo, synthetic
from deblur_jax.errors import InputError


def pairs_train_dataset(pairs: Sequence[pairs_lib.ImagePair], *, crop_size: int, hflip: bool,
                        seed: int, example_indices: tf.data.Dataset,
                        decoded: Optional[cache_lib.DecodedPairs] = None) -> tf.data.Dataset:
  """Paired random crops (and flips) of blurred/sharp image files.

  With `decoded` (cache.load of `pairs`) crops are cut from images decoded once
  instead of decoding both files for every crop: the same crops, bit for bit.
  """
  if decoded is not None:
    crop_pair = functools.partial(decoded.random_crop_pair, size=crop_size, hflip=hflip)
  else:
    blur_paths = tf.constant([p.blur for p in pairs])
    sharp_paths = tf.constant([p.sharp for p in pairs])

    def crop_pair(i, crop_seed, flip_seed):
      both = tf.concat([transforms.decode_image(blur_paths[i]),
                        transforms.decode_image(sharp_paths[i])], axis=-1)
      both = transforms.random_crop_flip(both, crop_size, hflip, crop_seed, flip_seed)
      return both[..., :3], both[..., 3:]

  def make_example(g):
    i = transforms.shuffled_index(g, len(pairs), seed)
    crop_seed, flip_seed = transforms.example_seeds(g, seed, 2)
    blur, sharp = crop_pair(i, crop_seed=crop_seed, flip_seed=flip_seed)
    return {'blur': blur, 'sharp': sharp}

  # find_pairs already checked every header and PNG trailer; an image corrupt
  # inside is logged by TensorFlow and skipped (the cache records it as such).
  examples = example_indices.map(make_example, num_parallel_calls=tf.data.AUTOTUNE)
  return examples.ignore_errors(log_warning=True)


def create_train_dataset(data_config, *, seed: int, global_batch: int, rows: range,
                         start_step: int):
  """(dataset of this process's `rows` of each global batch, as {'blur', 'sharp'}:
  float32 (len(rows), crop, crop, 3) in [0, 1]; number of training images, which
  sets the length of an epoch)."""
  crop = data_config.crop_size
  if crop <= 0:
    raise InputError(f'config.data.crop_size={crop} must be positive.')
  cache_mode = cache_lib.check_mode(data_config.get('cache', 'none'))
  indices = transforms.global_example_indices(start_step, global_batch, rows)
  common = dict(crop_size=crop, hflip=data_config.hflip, seed=seed, example_indices=indices)
  source = _source(data_config)
  if source != 'folders' and cache_mode != 'none':
    raise InputError(f'config.data.cache={cache_mode!r} applies to source=\'folders\'; '
                     f"set it to 'none' for source={source!r}.")
  if source == 'synthetic':
    dataset, num_images = synthetic.train_dataset(data_config, **common)
  elif source == 'tfds':
    from deblur_jax.data.sources import gopro_tfds  # pylint: disable=g-import-not-at-top  (slow import)
    split = gopro_tfds.load_gopro_split(data_config, data_config.train_split, min_size=crop)
    dataset, num_images = gopro_tfds.tfds_train_dataset(split, **common), len(split)
  elif data_config.dir:
    pairs = find_folder_pairs(data_config, 'train', min_size=crop).pairs
    name = cache_lib.cache_name(data_config.dir,
                                data_config.get('train_pairs_file') or data_config.train_split,
                                data_config.blur_folder, data_config.sharp_folder)
    decoded = cache_lib.load(pairs, cache_mode, data_config.get('cache_dir', ''), name)
    dataset, num_images = pairs_train_dataset(pairs, decoded=decoded, **common), len(pairs)
  else:  # The demo photos are held decoded in memory whatever the cache.
    dataset, num_images = demo.train_dataset(data_config.demo, **common), len(demo.TRAIN_PHOTOS)
  options = tf.data.Options()
  options.deterministic = True
  dataset = dataset.batch(len(rows), drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return dataset.with_options(options), num_images


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


SOURCES = ('folders', 'tfds', 'synthetic')


def _source(data_config) -> str:
  if data_config.source not in SOURCES:
    raise InputError(f'Unknown config.data.source {data_config.source!r}; choose one of '
                     f'{list(SOURCES)}.')
  return data_config.source


def read_pair_files(pairs: Sequence[pairs_lib.ImagePair]) -> tf.data.Dataset:
  """Full-size {'blur', 'sharp'} of `pairs` read from their files, in order, unbatched."""
  paths = tf.data.Dataset.from_tensor_slices(([p.blur for p in pairs], [p.sharp for p in pairs]))

  def load(blur_path, sharp_path):
    return {'blur': transforms.decode_image(blur_path),
            'sharp': transforms.decode_image(sharp_path)}

  return paths.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def find_eval_pairs(data_config, workdir: str, min_size: int):
  """(the evaluation pairs, a function reading a list of them as an unbatched dataset):
  `data.eval_split` (or `data.eval_pairs_file`) of `data.dir`, the test split of
  the GoPro TFDS dataset, the synthetic blur of `data.dir/eval_split` (written
  under workdir/synthetic_eval on first use), or the demo's held-out photos
  (written under workdir/demo_data on first use)."""
  if data_config.max_eval_images < 0:
    raise InputError(f'config.data.max_eval_images={data_config.max_eval_images} must be >= 0.')
  max_pairs = data_config.max_eval_images or None
  source = _source(data_config)
  if source == 'tfds':
    from deblur_jax.data.sources import gopro_tfds  # pylint: disable=g-import-not-at-top  (slow import)
    split = gopro_tfds.load_gopro_split(data_config, data_config.eval_split,
                                         min_size=min_size, max_pairs=max_pairs)
    return list(split.pairs), lambda pairs: gopro_tfds.tfds_eval_dataset(
        split, [p.name for p in pairs])
  if source == 'folders' and data_config.dir:
    return find_folder_pairs(data_config, 'eval', min_size, max_pairs).pairs, read_pair_files
  if source == 'synthetic':
    root = synthetic.write_eval_set(data_config, workdir)
  else:
    blurs = [b.strip() for b in data_config.demo.eval_blurs.split(',') if b.strip()]
    root = demo.write_eval_pairs(os.path.join(workdir, 'demo_data'), blurs)
  # Both are written as root/test/{blur,sharp}/NAME.png.
  pairs = pairs_lib.find_pairs(root, 'test', min_size=min_size, max_pairs=max_pairs).pairs
  return pairs, read_pair_files


@dataclasses.dataclass(frozen=True)
class EvalChunk:
  """One global evaluation batch: images of one size; padding repeats the first."""
  pairs: tuple[pairs_lib.ImagePair, ...]
  num_valid: int


def plan_eval_batches(pairs: Sequence[pairs_lib.ImagePair],
                      global_batch: int) -> list[EvalChunk]:
  """Splits `pairs` into global batches of equal-sized images, padding each size's last."""
  by_size = sorted(pairs, key=lambda p: (p.height, p.width, p.name))
  chunks = []
  for _, group in itertools.groupby(by_size, key=lambda p: (p.height, p.width)):
    group = list(group)
    for start in range(0, len(group), global_batch):
      chunk = group[start:start + global_batch]
      padded = tuple(chunk + [chunk[0]] * (global_batch - len(chunk)))
      chunks.append(EvalChunk(padded, len(chunk)))
  return chunks


def eval_dataset(chunks: Sequence[EvalChunk], rows: range, read_pairs=read_pair_files
                 ) -> tf.data.Dataset:
  """This process's `rows` of each chunk, as local batches {'blur', 'sharp'}."""
  mine = [c.pairs[r] for c in chunks for r in rows]
  return read_pairs(mine).batch(len(rows)).prefetch(2)


def eval_batches(chunks: Sequence[EvalChunk], rows: range, read_pairs=read_pair_files):
  """Yields (chunk, this process's `rows` of it) for every chunk.

  An image that cannot be decoded is an error naming the files of its batch.
  """
  batches = eval_dataset(chunks, rows, read_pairs).as_numpy_iterator()
  for chunk in chunks:
    try:
      batch = next(batches)
    except tf.errors.OpError as e:
      files = [p.blur for p in chunk.pairs[:chunk.num_valid]]
      raise InputError(f'Could not decode an evaluation image among {files} (or their sharp '
                       f'partners): {e.message}') from None
    yield chunk, batch
