"""Progressive training (config.data.stages): the crop size and global batch by step range.

Stage k lasts its `steps` training steps from the end of stage k - 1, with square
crops of `crop_size` in global batches of `global_batch`; the last stage goes on to
the end of training (as BasicSR's progressive training does). Global example
indices run on across the stages: row j of the n-th batch (from 0) of stage k is
example (the examples of stages 0 ... k - 1) + n * global_batch + j. Each example
being a function of (seed, its index) (transforms.py), the data does not depend
on the number of processes, and a run resumed mid-stage reads the batches it
would have read. Without stages, training is one stage of data.crop_size crops in
batches of train.batch_size. Training steps count from 1, as in the loop.
"""

import dataclasses
import numbers
from typing import Optional

from deblur_jax.core.errors import InputError


@dataclasses.dataclass(frozen=True)
class Stage:
  """Training steps start + 1 ... start + steps of crop_size x crop_size crops in global
  batches of global_batch."""
  number: int  # From 1.
  start: int  # Training steps before it.
  steps: Optional[int]  # None: to the end of training (the last stage).
  crop_size: int
  global_batch: int
  first_example: int  # The global example index of its first batch's row 0.
  # The config fields its crop_size and global_batch come from, for error messages.
  crop_field: str = 'config.data.crop_size'
  batch_field: str = 'config.train.batch_size'

  @property
  def first_step(self) -> int:
    return self.start + 1

  @property
  def end(self) -> Optional[int]:
    """Its last training step; None: the last step of training."""
    return None if self.steps is None else self.start + self.steps

  def holds(self, step: int) -> bool:
    """Whether training step `step` is one of this stage's."""
    return self.start < step and (self.end is None or step <= self.end)


def configured_triples(data_config) -> tuple[tuple[int, int, int], ...]:
  """config.data.stages as (steps, crop_size, global_batch) triples of positive ints;
  an InputError naming the field when it is not."""
  triples = data_config.get('stages', ())
  if not isinstance(triples, (tuple, list)):
    raise InputError(f'config.data.stages={triples!r} must be a sequence of (steps, crop_size, '
                     'global_batch) triples, or () for none.')
  for k, triple in enumerate(triples):
    if not (isinstance(triple, (tuple, list)) and len(triple) == 3
            and all(_is_positive_int(x) for x in triple)):
      raise InputError(f'config.data.stages[{k}]={triple!r} must be a triple of positive ints '
                       '(steps, crop_size, global_batch).')
  return tuple(tuple(int(x) for x in triple) for triple in triples)


def _is_positive_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def from_config(data_config, train_batch_size: int) -> tuple[Stage, ...]:
  """The stages of config.data.stages; without them, one stage of data.crop_size crops
  in batches of `train_batch_size` (config.train.batch_size) that never ends."""
  triples = configured_triples(data_config)
  if not triples:
    return (Stage(1, 0, None, data_config.crop_size, train_batch_size, 0),)
  stages, start, first_example = [], 0, 0
  for k, (steps, crop_size, global_batch) in enumerate(triples):
    last = k == len(triples) - 1
    stages.append(Stage(k + 1, start, None if last else steps, crop_size, global_batch,
                        first_example, crop_field=f'config.data.stages[{k}] crop_size',
                        batch_field=f'config.data.stages[{k}] global_batch'))
    start += steps
    first_example += steps * global_batch
  return tuple(stages)


def largest_crop_size(data_config, default: int) -> int:
  """The largest crop of config.data.stages (`default` without stages): the least size
  of the training images, so that every stage draws from the same images."""
  return max((crop_size for _, crop_size, _ in configured_triples(data_config)),
             default=default)


def stage_of_step(stages: tuple[Stage, ...], step: int) -> Stage:
  """The stage training step `step` (from 1) is in."""
  return next(stage for stage in stages if stage.holds(step))


def stages_after(stages: tuple[Stage, ...], start_step: int) -> tuple[Stage, ...]:
  """The stages left to train after `start_step` steps: from the one holding step
  start_step + 1 on."""
  return tuple(stage for stage in stages if stage.end is None or stage.end > start_step)
