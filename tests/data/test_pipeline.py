"""tf.data pipelines: shapes, dtypes, determinism, resume, process sharding, threads,
evaluation coverage."""

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import pairs as pairs_lib
from deblur_jax.data import pipeline, stages, transforms
from helpers import contains_window, make_pair_tree, train_batches


@pytest.fixture
def data_config(pair_tree, tmp_path):
  config = mimo.get_config('tiny').data
  config.dir = str(pair_tree)
  config.cache_dir = str(tmp_path / 'cache')  # cache 'auto': a file cache there
  return config


def test_train_batches_are_paired_uint8_crops(data_config):
  (batch,), num_images = train_batches(data_config, 1)
  assert num_images == 6
  assert batch['blur'].shape == batch['sharp'].shape == (4, 32, 32, 3)
  assert batch['blur'].dtype == batch['sharp'].dtype == np.uint8
  # The blurred crop is the blur of the sharp crop (box blur of the tree): close, not equal.
  difference = np.abs(batch['blur'].astype(np.float32) - batch['sharp']) / 255
  assert 0 < difference.mean() < 0.1


def test_the_devices_floats_of_the_crops_are_those_of_tensorflows_png_decode(data_config,
                                                                            pair_tree):
  """The train step turns uint8 levels v into float32(v * 257) * float32(1 / 65535): the
  floats the pipeline sent before (crops of transforms.decode_image), bit for bit."""
  batch = train_batches(data_config, 1)[0][0]
  sharp_files = sorted((pair_tree / 'train').glob('*/sharp/*.png'))
  decoded = [transforms.decode_image(str(path)).numpy() for path in sharp_files]
  for crop in batch['sharp']:
    floats = (crop.astype(np.uint16) * np.uint16(257)).astype(np.float32) * np.float32(1 / 65535)
    assert any(is_exact_window(image, floats) for image in decoded)


def is_exact_window(image, window):
  """Whether `window` (or its mirror image) is a sub-array of `image`, bit for bit."""
  size = window.shape[0]
  return any(np.array_equal(image[y:y + size, x:x + size], candidate)
             for candidate in (window, window[:, ::-1])
             for y in range(image.shape[0] - size + 1) for x in range(image.shape[1] - size + 1))


def test_same_seed_same_batches_other_seed_other_train_batches(data_config):
  a, _ = train_batches(data_config, 3)
  b, _ = train_batches(data_config, 3)
  c, _ = train_batches(data_config, 3, seed=1)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['blur'], y['blur'])
  assert not np.array_equal(a[0]['sharp'], c[0]['sharp'])


def test_resumed_pipeline_continues_with_the_following_train_batches(data_config):
  uninterrupted, _ = train_batches(data_config, 5)
  resumed, _ = train_batches(data_config, 2, start_step=3)
  for x, y in zip(uninterrupted[3:], resumed):
    np.testing.assert_array_equal(x['sharp'], y['sharp'])


def test_processes_read_disjoint_slices_of_the_same_global_batch(data_config):
  whole, _ = train_batches(data_config, 2, global_batch=4, rows=range(4))
  parts = [train_batches(data_config, 2, global_batch=4, rows=rows)[0]
           for rows in (range(0, 2), range(2, 4))]
  for step in range(2):
    joined = np.concatenate([parts[0][step]['sharp'], parts[1][step]['sharp']])
    np.testing.assert_array_equal(joined, whole[step]['sharp'])


STAGES = ((2, 16, 4), (3, 24, 2))  # steps, crop size, global batch


def staged_batches(data_config, start_step, stop_step, rows_of=range):
  """The local batches of steps start_step + 1 ... stop_step, read as the loop reads them:
  the pipeline's dataset of each stage in turn, of the rows_of(global batch) rows."""
  batches, step = [], start_step
  while step < stop_step:
    stage = stages.stage_of_step(stages.from_config(data_config, 4), step + 1)
    dataset, _ = pipeline.create_train_dataset(data_config, seed=0, global_batch=4,
                                               rows=rows_of(stage.global_batch), start_step=step)
    batches += list(dataset.take(stop_step - step).as_numpy_iterator())
    step = start_step + len(batches)
  return batches


def test_each_stage_has_its_crop_and_batch_whatever_the_rows_of_each_process(data_config):
  data_config.stages = STAGES
  whole = staged_batches(data_config, 0, 5)
  assert [b['sharp'].shape for b in whole] == [(4, 16, 16, 3)] * 2 + [(2, 24, 24, 3)] * 3
  halves = [staged_batches(data_config, 0, 5, lambda n: range(0, n // 2)),
            staged_batches(data_config, 0, 5, lambda n: range(n // 2, n))]
  for step, batch in enumerate(whole):
    for key in ('blur', 'sharp'):
      np.testing.assert_array_equal(
          np.concatenate([halves[0][step][key], halves[1][step][key]]), batch[key])


def test_a_stage_continues_the_example_indices_of_the_stages_before(data_config):
  """Stage 2's batch n holds examples 2 * 4 + 2n and 2 * 4 + 2n + 1: those of an unstaged
  run of its crops and batch at step 4 + n."""
  data_config.crop_size = 16
  first_unstaged, _ = train_batches(data_config, 2, global_batch=4)
  data_config.crop_size = 24
  second_unstaged, _ = train_batches(data_config, 3, start_step=4, global_batch=2, rows=range(2))
  data_config.stages = STAGES
  for staged, unstaged in zip(staged_batches(data_config, 0, 5),
                              first_unstaged + second_unstaged):
    np.testing.assert_array_equal(staged['sharp'], unstaged['sharp'])


@pytest.mark.parametrize('start_step', [1, 2, 3])
def test_a_run_resumed_in_or_between_stages_reads_the_batches_it_would_have(data_config,
                                                                           start_step):
  data_config.stages = STAGES
  uninterrupted = staged_batches(data_config, 0, 5)
  resumed = staged_batches(data_config, start_step, 5)
  assert len(resumed) == 5 - start_step
  for x, y in zip(uninterrupted[start_step:], resumed):
    np.testing.assert_array_equal(x['blur'], y['blur'])


def test_every_stage_draws_from_the_images_large_enough_for_the_largest_crop(data_config,
                                                                            pair_tree):
  make_pair_tree(pair_tree, splits=('train',), num_sequences=1, per_sequence=2, size=(24, 32),
                 seed=5)  # two of the six training pairs: too small for 32x32 crops
  data_config.stages = ((1, 16, 4), (1, 32, 4))
  for start_step in (0, 1):
    _, num_images = pipeline.create_train_dataset(data_config, seed=0, global_batch=4,
                                                  rows=range(4), start_step=start_step)
    assert num_images == 4


def test_eval_plan_covers_every_image_once_in_same_size_batches(tmp_path):
  root = make_pair_tree(tmp_path / 'a', splits=('test',), per_sequence=3, size=(24, 32))
  make_pair_tree(tmp_path / 'a', splits=('test',), num_sequences=1, per_sequence=2,
                 size=(16, 20), seed=5)  # overwrites GOPR0000 with two other-size images
  found = pairs_lib.find_pairs(str(root), 'test').pairs
  chunks = pipeline.plan_eval_batches(found, global_batch=4)
  valid = [p.name for c in chunks for p in c.pairs[:c.num_valid]]
  assert sorted(valid) == sorted(p.name for p in found)
  for chunk in chunks:
    assert len(chunk.pairs) == 4
    assert len({(p.height, p.width) for p in chunk.pairs}) == 1
  # Two processes with two images each read every padded slot exactly once.
  loaded = [list(pipeline.eval_dataset(chunks, rows).as_numpy_iterator())
            for rows in (range(0, 2), range(2, 4))]
  assert [len(x) for x in loaded] == [len(chunks)] * 2
  for c, chunk in enumerate(chunks):
    expected = [np.asarray(Image.open(p.sharp)) / 255.0 for p in chunk.pairs]
    got = np.concatenate([loaded[0][c]['sharp'], loaded[1][c]['sharp']])
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-6)


def corrupt_png_body(path):
  """Flips bytes inside the image data, keeping the header and the IEND trailer:
  the file passes find_pairs' checks and fails only when decoded."""
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
  path.write_bytes(bytes(data))


def test_a_training_image_corrupt_inside_is_skipped(data_config, pair_tree):
  blurs = sorted((pair_tree / 'train').glob('*/blur/*.png'))
  for path in blurs[1:]:
    corrupt_png_body(path)
  found = pairs_lib.find_pairs(str(pair_tree), 'train')
  assert len(found.pairs) == 6  # the damage is invisible to the header checks
  data_config.cache = 'none'
  (batch, _), _ = train_batches(data_config, 2)
  assert batch['blur'].shape == (4, 32, 32, 3)
  intact = np.asarray(Image.open(blurs[0]))
  for crop in batch['blur']:  # every crop comes from the one image that decodes
    assert contains_window(intact, crop)


def test_an_eval_image_corrupt_inside_is_an_error_naming_its_batch(pair_tree):
  found = pairs_lib.find_pairs(str(pair_tree), 'test').pairs
  corrupt_png_body(pathlib.Path(found[0].blur))
  chunks = pipeline.plan_eval_batches(found, global_batch=2)
  with pytest.raises(InputError, match=r'Could not decode an evaluation image among .*000000\.png'):
    list(pipeline.eval_batches(chunks, range(2)))


def orientation(crop, reference):
  """(vertical flip, transpose) turning `reference` (H, W, C) into `crop`, or None."""
  for vflip in (False, True):
    for transpose in (False, True):
      turned = reference[::-1] if vflip else reference
      turned = turned.transpose(1, 0, 2) if transpose else turned
      if np.array_equal(turned, crop):
        return vflip, transpose
  return None


def test_flips_and_rotations_turn_each_crop_pair_the_same_random_way(data_config):
  """'flips_rot90' (BasicSR's augment: hflip, vflip, 90-degree rotation) is 'hflip'
  then a random vertical flip and transpose per example, the same for both images."""
  plain, _ = train_batches(data_config, 8)
  data_config.augment = 'flips_rot90'
  turned, _ = train_batches(data_config, 8)
  seen = set()
  for a, b in zip(plain, turned):
    for k in range(len(a['sharp'])):
      found = orientation(b['sharp'][k], a['sharp'][k])
      assert found is not None and found == orientation(b['blur'][k], a['blur'][k])
      seen.add(found)
  assert len(seen) == 4


def test_an_unknown_augmentation_is_an_error_naming_the_field(data_config):
  data_config.augment = 'rot45'
  with pytest.raises(InputError, match=r"config\.data\.augment 'rot45'.*flips_rot90"):
    pipeline.check_config(data_config)


def test_a_negative_thread_count_is_an_error_naming_the_field(data_config):
  data_config.threads = -1
  with pytest.raises(InputError, match=r'config\.data\.threads=-1 must be >= 0'):
    pipeline.check_config(data_config)


def test_the_pipeline_runs_in_its_own_pool_of_the_given_size(data_config):
  data_config.threads = 1
  dataset, _ = pipeline.create_train_dataset(data_config, seed=0, global_batch=2, rows=range(2),
                                             start_step=0)
  assert dataset.options().threading.private_threadpool_size == 1
  assert dataset.options().autotune.initial_parallelism == 1
  assert next(iter(dataset))['blur'].shape[0] == 2


def test_by_default_one_thread_per_cpu_the_process_may_run_on(data_config, monkeypatch):
  """A SLURM task or a cpuset container sees all the machine's CPUs in os.cpu_count()."""
  monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 2, 5}, raising=False)
  assert pipeline.usable_cpus() == 3
  dataset, _ = pipeline.create_train_dataset(data_config, seed=0, global_batch=2, rows=range(2),
                                             start_step=0)
  assert dataset.options().threading.private_threadpool_size == 3
  assert dataset.options().autotune.initial_parallelism == 3
  monkeypatch.delattr(os, 'sched_getaffinity')  # as on macOS
  assert pipeline.usable_cpus() == os.cpu_count()


def test_the_training_pipeline_has_no_autotuning_thread(data_config):
  # That thread sleeps up to 60 s between rounds, and the iterator's destructor waited for
  # it at the end of training (stacks in the CPU issue's notes).
  dataset, _ = pipeline.create_train_dataset(data_config, seed=0, global_batch=2, rows=range(2),
                                             start_step=0)
  assert dataset.options().autotune.enabled is False
  assert dataset.options().autotune.initial_parallelism == pipeline.usable_cpus()  # no cap at 16
  assert next(iter(dataset))['blur'].shape[0] == 2
