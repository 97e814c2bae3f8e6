"""Fine-tuning (config.train.init_from, config.gan.init_from): a run starts at step 0 from
another checkpoint's model variables with a fresh optimizer, the run's own checkpoints win,
and a source that does not fit is a one-line error."""

import logging
import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

from deblur_jax import models
from deblur_jax.configs import gan as gan_configs
from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline
from deblur_jax.parallel import sharding
from deblur_jax.training import init_from, loop, losses, optimizers, train_step
from deblur_jax.training.state import create_train_state
from deblur_jax.weights import official
from helpers import FIXTURES, make_pair_tree, saved_item, train_batches, train_scalars

OFFICIAL = str(FIXTURES / 'mimo_unet_tiny_zip.pkl')  # base width 4, 2 ResBlocks per level


def flat(tree):
  return traverse_util.flatten_dict(tree, sep='/')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(make_pair_tree(tmp_path_factory.mktemp('pairs') / 'data'))


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """A work directory holding the converted official weights (step 0, no optimizer state)."""
  workdir = tmp_path_factory.mktemp('converted')
  official.convert_file(OFFICIAL, 'mimo_unet', str(workdir))
  return workdir


def official_config(data_dir, converted):
  """configs/mimo.py:tiny at the official fixture's sizes, fine-tuning from it."""
  config = mimo.get_config('tiny')
  config.model.update(base_width=4, num_res=2)
  config.data.dir = data_dir
  config.optimizer.learning_rate = 3e-3
  config.train.init_from = str(converted)
  return config


def train_recording_starts(config, workdir) -> list:
  """Trains `config` in `workdir`; returns the variables each init_from.init_state call
  gave its network (the model's, then any discriminator's) before the first step."""
  starts, real_init_state = [], init_from.init_state

  def init_state(*args, **kwargs):
    state = real_init_state(*args, **kwargs)
    starts.append(jax.device_get(state.variables()))  # before the first step donates them
    return state

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(init_from, 'init_state', init_state)
    loop.train_and_evaluate(config, str(workdir))
  return starts


@pytest.fixture(scope='module')
def fine_tuned(data_dir, converted, tmp_path_factory):
  """(workdir, step-0 variables): the converted weights fine-tuned 2 steps (checkpoint at
  2), and the variables the loop's state held before its first step."""
  config = official_config(data_dir, converted)
  config.train.num_train_steps = 2
  workdir = tmp_path_factory.mktemp('fine_tuned')
  return workdir, train_recording_starts(config, workdir)[0]


def test_a_fine_tune_starts_from_converted_weights_and_lowers_the_loss(fine_tuned, converted):
  workdir, started = fine_tuned
  jax.tree.map(np.testing.assert_array_equal, started, saved_item(converted, 0))
  loss = train_scalars(str(workdir))['train/loss']
  assert loss[2] < loss[1]


def test_the_first_step_is_one_from_the_checkpoint_with_a_fresh_optimizer(
    fine_tuned, data_dir, converted, tmp_path):
  """From a trained run's step 2 (Adam moments non-zero), the fine-tune's first step is
  the one a new Adam takes from that step's parameters on the same batch."""
  source = fine_tuned[0]
  config = official_config(data_dir, converted)
  config.train.init_from, config.train.init_from_step = str(source), 2
  config.train.num_train_steps = 1
  loop.train_and_evaluate(config, str(tmp_path))

  mesh = sharding.create_mesh()
  tx, schedule = optimizers.build_optimizer(config.optimizer, 1, 1)
  init_rng, dropout_rng, _ = jax.random.split(jax.random.key(config.seed), 3)
  state = create_train_state(init_rng, models.build_model(config.model), tx,
                             config.data.crop_size, mesh)
  state = state.replace(params=jax.device_put(saved_item(source, 2)['params'],
                                              sharding.replicated(mesh)))
  step = train_step.jit_train_step(mesh, loss_fn=losses.build_loss_fn(config.loss),
                                   learning_rate_fn=schedule, rng=dropout_rng)
  (batch,), _ = train_batches(config.data, 1, seed=config.seed)
  expected, _ = step(state, sharding.make_global_batch(batch, mesh))
  jax.tree.map(np.testing.assert_array_equal, saved_item(tmp_path, 1)['params'],
               jax.device_get(expected.params))


def test_a_mismatch_names_the_arrays_and_non_strict_loads_the_rest(converted, tiny_config):
  """A BatchNorm variant of the official network: its convs have no biases, and it has
  BatchNorm scales, offsets and statistics that the checkpoint lacks."""
  tiny_config.model.update(base_width=4, num_res=2, batch_norm=True)
  template = models.variables_template(models.build_model(tiny_config.model))
  expected, saved = flat(template), flat(saved_item(converted, 0))
  matching = {k for k, v in expected.items() if k in saved and saved[k].shape == v.shape}
  missing, unexpected = set(expected) - set(saved), set(saved) - set(expected)
  assert matching and missing and unexpected
  with pytest.raises(InputError, match=(
      rf"^config\.train\.init_from='.*converted.*': the checkpoint .*/checkpoints/0 does not "
      rf"hold this network's model variables: {len(missing)} of its {len(expected)} keys are "
      rf"missing: \[batch_stats/.*\]; {len(unexpected)} keys are unexpected: \[params/.*"
      r"init_from_strict=False")):
    init_from.load_variables(template, str(converted))

  loaded = init_from.load_variables(template, str(converted), strict=False)
  assert set(loaded.arrays) == matching
  assert (set(loaded.fresh), set(loaded.ignored)) == (set(expected) - matching,
                                                      set(saved) - matching)
  for name, value in loaded.arrays.items():
    np.testing.assert_array_equal(value, saved[name], err_msg=name)


def test_the_runs_own_checkpoints_win_over_init_from(fine_tuned, data_dir, converted, tmp_path,
                                                      caplog):
  """A preempted fine-tune, run again with the same config, resumes."""
  workdir = tmp_path / 'work'
  shutil.copytree(fine_tuned[0], workdir)
  config = official_config(data_dir, converted)
  config.train.num_train_steps = 3
  caplog.set_level(logging.INFO, logger='absl')
  loop.train_and_evaluate(config, str(workdir))
  assert 'Resumed from the checkpoint at step 2 (config.train.init_from=' in caplog.text
  assert 'ignored: the run resumes from its own checkpoint' in caplog.text
  assert 'starting from the model variables' not in caplog.text
  assert int(saved_item(workdir, 3, 'train')['step']) == 3


@pytest.mark.parametrize('change,message', [
    (lambda c, tmp: setattr(c.train, 'init_from', str(tmp / 'nothing')),
     r"^config\.train\.init_from='.*nothing' is not a directory"),
    (lambda c, tmp: setattr(c.train, 'init_from_step', -2),
     r'^config\.train\.init_from_step=-2 must be a step'),
    (lambda c, tmp: setattr(c.gan, 'init_from', str(tmp)),
     r"^config\.gan\.init_from=.* is set, but there is no discriminator"),
])
def test_bad_init_from_fields_fail_before_any_data_is_read(change, message, data_dir, converted,
                                                            tmp_path, monkeypatch):
  def no_data(*args, **kwargs):
    raise AssertionError('data was read before the config was checked')
  for name in ('create_train_dataset', 'find_eval_pairs'):
    monkeypatch.setattr(pipeline, name, no_data)
  config = official_config(data_dir, converted)
  change(config, tmp_path)
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / 'work'))


def test_a_source_without_the_checkpoint_asked_for_is_a_clear_error(converted, tmp_path):
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'no_steps' / 'checkpoints').mkdir(parents=True)
  cases = [
      (tmp_path / 'empty', -1, r"^config\.train\.init_from='.*empty' holds no checkpoints: "
                               r'give a work directory'),
      (tmp_path / 'no_steps', -1, r"^config\.train\.init_from='.*no_steps' holds no checkpoints "
                                  r'\(.*no_steps/checkpoints has none\)'),
      (converted, 7, r"^config\.train\.init_from='.*': No checkpoint at step 7 in "
                     r'.*checkpoints; it has steps \[0\]; set config\.train\.init_from_step'),
  ]
  for path, step, message in cases:
    with pytest.raises(InputError, match=message):
      init_from.load_variables({}, str(path), step)


def test_a_checkpoint_of_another_architecture_names_the_misshapen_arrays(converted,
                                                                        tiny_config):
  template = models.variables_template(models.build_model(tiny_config.model))  # width 8
  with pytest.raises(InputError, match=(
      r"^config\.train\.init_from='.*converted.*': the checkpoint .* \d+ keys are misshapen: "
      r'\[params/\S+ \(expected float \([\d, ]+\), found float32 \([\d, ]+\)\)')):
    init_from.load_variables(template, str(converted))


def test_a_work_directory_with_checkpoints_of_another_model_stays_an_error(
    fine_tuned, data_dir, converted, tmp_path):
  shutil.copytree(fine_tuned[0], tmp_path / 'work')
  config = official_config(data_dir, converted)
  config.model.dropout_rate = 0.1
  with pytest.raises(InputError, match=r'checkpoints/2 was written for another model or '
                                       r'optimizer: config\.model\.dropout_rate: checkpoint '
                                       r'has 0\.0, config has 0\.1'):
    loop.train_and_evaluate(config, str(tmp_path / 'work'))


def test_a_gan_starts_both_networks_from_a_gan_run(data_dir, tmp_path):
  """The generator from a GAN run's work directory, the discriminator (and its BatchNorm
  statistics) from one of its step folders."""
  config = gan_configs.get_config('tiny')
  config.data.dir = data_dir
  config.train.num_train_steps = 1
  source = tmp_path / 'source'
  loop.train_and_evaluate(config, str(source))
  config.train.init_from = str(source)
  config.gan.init_from = str(source / 'checkpoints' / '1')
  generator, discriminator = train_recording_starts(config, tmp_path / 'work')
  jax.tree.map(np.testing.assert_array_equal, generator, saved_item(source, 1))
  jax.tree.map(np.testing.assert_array_equal, discriminator,
               saved_item(source, 1, 'train')['discriminator']['variables'])
