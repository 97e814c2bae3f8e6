"""Data sources: where training and evaluation pairs come from, behind one interface.

Each source module (folders, gopro_tfds, synthetic, demo) defines SOURCE, a
`Source`; `resolve(config.data)` picks one by `config.data.source` and checks
that the other data fields agree with it. The pipeline turns a source's
`TrainExamples` into examples the same way for all of them (pipeline.py).
"""

import dataclasses
import importlib
from typing import Any, Callable, Optional, Sequence

from deblur_jax.core.errors import InputError
from deblur_jax.core.lookup import lookup

# config.data.source -> the module defining its SOURCE (imported on use: TFDS is slow to import).
MODULES = {
    'folders': 'deblur_jax.data.sources.folders',
    'tfds': 'deblur_jax.data.sources.gopro_tfds',
    'synthetic': 'deblur_jax.data.sources.synthetic',
    'demo': 'deblur_jax.data.sources.demo',
}
AUTO = 'auto'  # 'demo' when config.data.dir is empty, else 'folders'.
# The values of config.data.cache that fit every source ('auto': a cache for 'folders' only).
CACHE_FOR_ANY_SOURCE = ('auto', 'none')


@dataclasses.dataclass(frozen=True)
class TrainExamples:
  """A source's training set: `num_images` images, and how to cut an example.

  make(i, g, seeds) -> {'blur', 'sharp'}, (crop, crop, 3) each: the example of
  global index g (a tensor) from image i (a tensor in [0, num_images)), cropped,
  flipped and degraded with `seeds`, `num_seeds` stateless seeds of g. Images of
  files are levels as stored (uint8, or uint16: transforms.decode_levels), for the
  device to turn into floats; images computed in float are float32 in [0, 1].
  With `cut_batch`, make(i, g, seeds) gives the example's window instead (a dict of
  scalar tensors), and cut_batch(windows) the batch {'blur', 'sharp'} of a batch of
  them (the pipeline adds 'vflip' and 'transpose' for transforms.turn to each).
  """
  num_images: int
  make: Callable
  num_seeds: int = 2
  # Skip (and log) the examples whose image is corrupt inside (files checked by header only).
  skip_errors: bool = False
  # Cuts a batch of make's windows (cache.DecodedPairs.cut_batch); None: make cuts examples.
  cut_batch: Optional[Callable] = None


# read_pairs(pairs) -> unbatched tf.data.Dataset of their full-size {'blur', 'sharp'}, in order.
ReadPairs = Callable[[Sequence], Any]


@dataclasses.dataclass(frozen=True)
class Source:
  """One value of config.data.source.

  train_examples(data_config, *, crop_size, hflip, seed) -> TrainExamples.
  eval_pairs(data_config, workdir, *, min_size, max_pairs) -> (pairs.ImagePair
    list, ReadPairs): the evaluation pairs (first max_pairs by name; None = all)
    and the function reading them.
  """
  train_examples: Callable[..., TrainExamples]
  eval_pairs: Callable[..., tuple[list, ReadPairs]]
  # What config.data.dir must hold, for the sources that read it; '' for those that do not.
  reads_dir: str = ''


def source_name(data_config) -> str:
  """config.data.source with 'auto' (or '') resolved; an InputError when it is unknown
  or the other data fields do not fit it (config.data.dir, config.data.cache)."""
  name = data_config.source or AUTO
  if name == AUTO:
    name = 'folders' if data_config.dir else 'demo'
  else:
    lookup({AUTO: None, **MODULES}, name, 'config.data.source')
  cache = data_config.get('cache', 'auto')
  if name != 'folders' and cache not in CACHE_FOR_ANY_SOURCE:
    raise InputError(f'config.data.cache={cache!r} applies to source=\'folders\'; '
                     f"set it to 'auto' or 'none' for source={name!r}.")
  return name


def resolve(data_config) -> Source:
  """The Source config.data.source names (see source_name), checked against data.dir."""
  name = source_name(data_config)
  source = importlib.import_module(MODULES[name]).SOURCE
  if source.reads_dir and not data_config.dir:
    raise InputError(f'config.data.dir is empty, and config.data.source={name!r} reads '
                     f'{source.reads_dir} from it: set config.data.dir, or '
                     "config.data.source='demo' for the embedded demo photos.")
  if not source.reads_dir and data_config.dir:
    raise InputError(f'config.data.source={name!r} does not read config.data.dir='
                     f"{data_config.dir!r}: clear config.data.dir, or set config.data.source="
                     "'folders' (or 'synthetic') to read it.")
  return source
