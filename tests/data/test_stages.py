"""Progressive training stages: their steps, example offsets and checks."""

import ml_collections
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.data import stages

RESTORMER = ((92_000, 128, 64), (64_000, 160, 40), (48_000, 192, 32), (36_000, 256, 16),
             (36_000, 320, 8), (24_000, 384, 8))


def data_config(triples=(), crop_size=32):
  return ml_collections.ConfigDict(dict(crop_size=crop_size, stages=triples))


def test_without_stages_one_endless_stage_of_the_crop_and_batch_fields():
  (stage,) = stages.from_config(data_config(crop_size=48), train_batch_size=8)
  assert (stage.start, stage.steps, stage.crop_size, stage.global_batch) == (0, None, 48, 8)
  assert stage.first_example == 0
  assert stage.holds(1) and stage.holds(10 ** 9)
  assert (stage.crop_field, stage.batch_field) == ('config.data.crop_size',
                                                   'config.train.batch_size')


def test_each_stage_starts_after_the_steps_and_examples_of_those_before():
  found = stages.from_config(data_config(RESTORMER), train_batch_size=4)
  assert [s.number for s in found] == [1, 2, 3, 4, 5, 6]
  assert [s.first_step for s in found] == [1, 92_001, 156_001, 204_001, 240_001, 276_001]
  assert found[1].first_example == 92_000 * 64
  assert found[2].first_example == 92_000 * 64 + 64_000 * 40
  assert [(s.crop_size, s.global_batch) for s in found] == [t[1:] for t in RESTORMER]
  assert found[3].crop_field == 'config.data.stages[3] crop_size'
  assert found[3].batch_field == 'config.data.stages[3] global_batch'


def test_a_step_is_in_the_stage_whose_range_holds_it_and_the_last_goes_on():
  found = stages.from_config(data_config(((2, 16, 4), (3, 24, 2), (1, 32, 2))),
                             train_batch_size=4)
  assert [stages.stage_of_step(found, step).number for step in range(1, 9)] == [
      1, 1, 2, 2, 2, 3, 3, 3]
  assert found[-1].steps is None and found[-1].end is None
  assert stages.stage_of_step(found, 10 ** 6) is found[-1]


def test_the_stages_after_a_checkpoint_begin_with_the_one_of_the_next_step():
  found = stages.from_config(data_config(((2, 16, 4), (3, 24, 2), (1, 32, 2))),
                             train_batch_size=4)
  assert [s.number for s in stages.stages_after(found, 0)] == [1, 2, 3]
  assert [s.number for s in stages.stages_after(found, 1)] == [1, 2, 3]
  assert [s.number for s in stages.stages_after(found, 2)] == [2, 3]  # step 3: stage 2
  assert [s.number for s in stages.stages_after(found, 5)] == [3]
  assert [s.number for s in stages.stages_after(found, 99)] == [3]


def test_the_largest_crop_is_that_of_any_stage_or_the_default_without():
  assert stages.largest_crop_size(data_config(((2, 16, 4), (3, 48, 2), (1, 32, 2))),
                                  default=16) == 48
  assert stages.largest_crop_size(data_config(), default=16) == 16


@pytest.mark.parametrize('triples,message', [
    (((2, 16),), r'^config\.data\.stages\[0\]=\(2, 16\) must be a triple of positive ints'),
    (((2, 16, 4), (0, 24, 2)), r'^config\.data\.stages\[1\]=\(0, 24, 2\) must be a triple'),
    (((2, 16.0, 4),), r'^config\.data\.stages\[0\]=\(2, 16\.0, 4\) must be'),
    (((2, True, 4),), r'^config\.data\.stages\[0\]=\(2, True, 4\) must be'),
    ((5,), r'^config\.data\.stages\[0\]=5 must be a triple'),
    ('2,16,4', r"^config\.data\.stages='2,16,4' must be a sequence of \(steps, crop_size, "
               r'global_batch\) triples'),
])
def test_a_malformed_stage_is_an_error_naming_it(triples, message):
  config = ml_collections.ConfigDict(dict(crop_size=32))
  config.stages = triples
  with pytest.raises(InputError, match=message):
    stages.from_config(config, train_batch_size=4)
