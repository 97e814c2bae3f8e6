"""Training and evaluation datasets built from `config.data`.

The source (sources/) is the one config.data.source names. Training: a tf.data
stream of this process's slice of each global batch of random crops, from step
`start_step` on to the end of its stage (config.data.stages, stages.py; without
stages, endless); example g is a pure function of (seed, g) whatever the source
(example_dataset, transforms.py). The crops of image files leave the host as
their levels, uint8 (uint16 for a set with a 16-bit PNG), a quarter (half) of the
bytes of float32; the train step turns them into the floats TensorFlow decodes an
8-bit PNG to, float32(level x 257) x float32(1 / 65535)
(16-bit levels: float32(level) x float32(1 / 65535)), bit for bit. For JPEG and BMP
files TensorFlow's float decode gives float32(level) x float32(1 / 255): 134 of the
256 levels differ from that by 1 ulp. Synthetic blur ('synthetic', 'demo') leaves
as float32 in [0, 1].
Evaluation: full-size test pairs as float32, batched by image size across all
devices, the last batch of each size padded and masked, each image seen exactly once.
"""

import dataclasses
import itertools
import os
from typing import Sequence

import tensorflow as tf

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup
from deblur_jax.data import cache as cache_lib
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import sources, stages, transforms
from deblur_jax.data.sources import folders

read_pair_files = folders.read_pair_files

# config.data.augment -> (horizontal flips, vertical flips and transposes).
AUGMENTATIONS = {'none': (False, False), 'hflip': (True, False), 'flips_rot90': (True, True)}


def check_config(data_config) -> sources.Source:
  """Checks the fields of config.data that need no data to check; returns the
  source they pick (sources.resolve). An InputError names the bad field."""
  if data_config.crop_size <= 0:
    raise InputError(f'config.data.crop_size={data_config.crop_size} must be positive.')
  if data_config.max_eval_images < 0:
    raise InputError(f'config.data.max_eval_images={data_config.max_eval_images} must be >= 0.')
  if data_config.get('threads', 0) < 0:
    raise InputError(f'config.data.threads={data_config.threads} must be >= 0 '
                     '(0: one per usable CPU).')
  lookup(AUGMENTATIONS, data_config.augment, 'config.data.augment')
  cache_lib.check_mode(data_config.get('cache', 'auto'))
  return sources.resolve(data_config)


def usable_cpus() -> int:
  """The CPUs this process may run on: its affinity mask (as a SLURM task or a
  cpuset container sets it; os.cpu_count() counts the whole machine), or the
  machine's CPUs where there is no such mask (macOS)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def pipeline_threads(data_config) -> int:
  """The threads of the training input pipeline: config.data.threads, 0 = usable_cpus()."""
  return data_config.get('threads', 0) or usable_cpus()


def example_dataset(examples: sources.TrainExamples, seed: int,
                    example_indices: tf.data.Dataset, *,
                    flips_rot90: bool = False) -> tf.data.Dataset:
  """Unbatched {'blur', 'sharp'}, one per global example index g: image
  shuffled_index(g) of `examples`, cut with the stateless seeds of (seed, g);
  with `flips_rot90`, then turned by the transforms.turn_draws of
  augment_seed(g, seed). For examples cut a batch at a time (examples.cut_batch),
  their windows instead, the turn added as 'vflip' and 'transpose'."""

  def make_example(g):
    i = transforms.shuffled_index(g, examples.num_images, seed)
    seeds = transforms.example_seeds(g, seed, examples.num_seeds)
    example = examples.make(i, g, seeds)
    if flips_rot90:
      vflip, transpose = transforms.turn_draws(transforms.augment_seed(g, seed))
      if examples.cut_batch is None:
        example = transforms.turn(example, vflip, transpose)
      else:
        example = {**example, 'vflip': vflip, 'transpose': transpose}
    return example

  dataset = example_indices.map(make_example, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.ignore_errors(log_warning=True) if examples.skip_errors else dataset


def batched_examples(examples: sources.TrainExamples, seed: int,
                     example_indices: tf.data.Dataset, batch_size: int, *,
                     flips_rot90: bool = False) -> tf.data.Dataset:
  """The examples of `example_dataset` in batches of `batch_size` {'blur', 'sharp'}:
  (batch_size, crop, crop, 3) each, the dtype the source gives."""
  dataset = example_dataset(examples, seed, example_indices, flips_rot90=flips_rot90)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  if examples.cut_batch is not None:
    dataset = dataset.map(examples.cut_batch, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset


def create_train_dataset(data_config, *, seed: int, global_batch: int, rows: range,
                         start_step: int):
  """(dataset of this process's `rows` of each global batch, as {'blur', 'sharp'}:
  (len(rows), crop, crop, 3) each, uint8 or uint16 levels or float32 in [0, 1] by
  source (see the module docstring); number of training images, which sets the
  length of an epoch).

  The batches are those of the stage (stages.py) holding step start_step + 1, from
  that step to the stage's end: with config.data.stages, its crop size and global
  batch (`rows` of it); without, one endless stage of data.crop_size crops in
  batches of `global_batch`.
  """
  stage = stages.stage_of_step(stages.from_config(data_config, global_batch), start_step + 1)
  if rows.stop > stage.global_batch:
    raise ValueError(f'Rows {rows} are not rows of stage {stage.number}\'s global batch of '
                     f'{stage.global_batch}.')
  hflip, flips_rot90 = AUGMENTATIONS[data_config.augment]
  examples = check_config(data_config).train_examples(
      data_config, crop_size=stage.crop_size, hflip=hflip, seed=seed)
  steps_taken = start_step - stage.start
  indices = transforms.global_example_indices(
      steps_taken, stage.global_batch, rows, first_example=stage.first_example,
      num_steps=None if stage.steps is None else stage.steps - steps_taken)
  dataset = batched_examples(examples, seed, indices, len(rows), flips_rot90=flips_rot90)
  threads = pipeline_threads(data_config)
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = threads
  # No autotuning thread: at the end of training, destroying the iterator waits for that
  # thread's sleep (up to 60 s) to end. Each parallel map then runs min(initial_parallelism,
  # pool threads) calls; tf.data's initial_parallelism of 16 would cap hosts with more cores.
  options.autotune.enabled = False
  options.autotune.initial_parallelism = threads
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options), examples.num_images


def find_eval_pairs(data_config, workdir: str, min_size: int):
  """(the evaluation pairs, a function reading a list of them as an unbatched dataset):
  `data.eval_split` (or `data.eval_pairs_file`) of `data.dir`, the test split of
  the GoPro TFDS dataset, the synthetic blur of `data.dir/eval_split` (written
  under workdir/synthetic_eval on first use), or the demo's held-out photos
  (written under workdir/demo_data on first use)."""
  return check_config(data_config).eval_pairs(
      data_config, workdir, min_size=min_size, max_pairs=data_config.max_eval_images or None)


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
