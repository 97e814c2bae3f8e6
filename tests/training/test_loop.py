"""The training loop end to end on a generated PNG tree (4 CPU devices)."""

import csv
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline
from deblur_jax.evaluation import evaluator
from deblur_jax.parallel import sharding
from deblur_jax.training import loop
from helpers import make_pair_tree, saved_item, train_scalars


def saved_params(workdir, step):
  return saved_item(workdir, step)['params']


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def input_psnr(data_dir, name):
  """The PSNR of a test pair's blurred file against its sharp file, from the PNGs."""
  folder = os.path.join(data_dir, 'test', os.path.dirname(name))
  blur, sharp = (np.asarray(Image.open(os.path.join(folder, kind, os.path.basename(name))),
                            np.float64) / 255 for kind in ('blur', 'sharp'))
  return 10 * np.log10(1 / np.mean((blur - sharp) ** 2))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(make_pair_tree(tmp_path_factory.mktemp('pairs') / 'data'))


@pytest.fixture
def config(data_dir):
  config = mimo.get_config('tiny')
  config.data.dir = data_dir
  return config


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
  """A workdir of configs/mimo.py:tiny trained 3 steps (checkpoints 2, 3; logs every step),
  and the summary train_and_evaluate returned."""
  config = mimo.get_config('tiny')
  config.data.dir = data_dir
  workdir = tmp_path_factory.mktemp('trained')
  return workdir, loop.train_and_evaluate(config, str(workdir))


def copy_of(trained, tmp_path):
  shutil.copytree(trained[0], tmp_path / 'work')
  return tmp_path / 'work'


def test_trains_evaluates_checkpoints_and_logs(trained, data_dir):
  workdir, summary = trained
  assert summary['num_images'] == 2
  names = ['GOPR0000_00_00/000000.png', 'GOPR0000_00_00/000001.png']
  assert summary['input_psnr'] == pytest.approx(
      np.mean([input_psnr(data_dir, n) for n in names]), abs=1e-3)
  assert np.isfinite(summary['psnr']) and 0 < summary['ssim'] <= 1
  assert 0 < summary['input_ssim'] <= 1
  manager = checkpoints.create_manager(str(workdir), keep=1, read_only=True)
  assert list(manager.all_steps()) == [2, 3]
  saved = manager.restore(3, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']
  assert saved['model']['base_width'] == 8
  logged = train_scalars(str(workdir))
  assert sorted(logged['train/loss']) == [1, 2, 3]
  assert logged['eval/psnr'] == {3: pytest.approx(summary['psnr'], rel=1e-6)}


def test_a_log_window_averages_its_steps(trained, config, tmp_path):
  """Logging every 3 steps writes the mean of the 3 losses logged one by one."""
  config.train.log_every_steps = 3
  loop.train_and_evaluate(config, str(tmp_path))
  per_step = train_scalars(str(trained[0]))
  windowed = train_scalars(str(tmp_path))
  assert sorted(windowed['train/loss']) == [3]
  for tag in ('train/loss', 'train/grad_norm', 'train/psnr', 'train/psnr_gain'):
    assert windowed[tag][3] == pytest.approx(np.mean(list(per_step[tag].values())), rel=1e-5)


@pytest.fixture
def reads_as_device_copies(monkeypatch):
  """Every read of a jax.Array's value made a device-to-host copy, as on a GPU or TPU.

  On the CPU an array is host memory, so reading it copies nothing and JAX's
  transfer guard never fires; here each read checks the guard as a copy from an
  accelerator would: under 'disallow' (or 'disallow_explicit') it is an error.
  """
  array_type = type(jnp.zeros(()))
  value, copy_to_host = array_type._value, array_type.copy_to_host_async

  def check_guard():
    level = jax.config.jax_transfer_guard_device_to_host
    if level and level.startswith('disallow'):
      raise AssertionError(f'an array was read from the device (transfer guard {level!r})')

  def guarded_value(self):
    check_guard()
    return value.fget(self)

  def guarded_copy(self, *args, **kwargs):
    check_guard()
    return copy_to_host(self, *args, **kwargs)

  monkeypatch.setattr(array_type, '_value', property(guarded_value))
  monkeypatch.setattr(array_type, 'copy_to_host_async', guarded_copy)


def test_nothing_is_read_from_the_devices_between_log_steps(config, tmp_path,
                                                            reads_as_device_copies):
  """Six steps logged every third under the strictest transfer guard: the loop reads
  metrics and non-finite flags only at log, evaluation and checkpoint steps, and
  logs how far the host ran ahead of the devices."""
  del reads_as_device_copies
  config.train.num_train_steps = 6
  config.train.log_every_steps = 3
  config.train.checkpoint_every_steps = 3
  config.train.eval_every_steps = 6
  config.train.transfer_guard = 'disallow_explicit'
  loop.train_and_evaluate(config, str(tmp_path))
  logged = train_scalars(str(tmp_path))
  assert sorted(logged['train/loss']) == [3, 6]
  for step in (3, 6):
    assert 0 <= logged['train/steps_in_flight'][step] <= loop.StepPacer().depth
    assert logged['train/host_ms_per_step'][step] > 0
    assert logged['train/wait_ms_per_step'][step] >= 0


def test_a_read_between_log_steps_fails_under_the_guard(config, tmp_path, monkeypatch,
                                                        reads_as_device_copies):
  """The guard of the test above catches a loop that reads a flag every step."""
  del reads_as_device_copies
  config.train.log_every_steps = 3
  config.train.transfer_guard = 'disallow'
  pace = loop.StepPacer.pace
  monkeypatch.setattr(loop.StepPacer, 'pace', lambda self, x: (float(x), pace(self, x)))
  with pytest.raises(AssertionError, match='read from the device'):
    loop.train_and_evaluate(config, str(tmp_path))


def test_num_epochs_sets_the_number_of_steps():
  train = ml_collections.ConfigDict(dict(num_train_steps=-1, num_epochs=2.5))
  assert loop.num_train_steps(train, steps_per_epoch=4) == 10
  train.num_train_steps = 7
  assert loop.num_train_steps(train, steps_per_epoch=4) == 7
  train.num_train_steps, train.num_epochs = -1, 0.1
  with pytest.raises(InputError, match=r'num_epochs=0\.1 of 4 steps is less than one step'):
    loop.num_train_steps(train, steps_per_epoch=4)


def test_resume_continues_exactly_where_it_stopped(config, tmp_path):
  """A run that crashed after its step-2 checkpoint, resumed, ends with the same
  parameters as the run that was never interrupted. The learning rate changes
  every step (cosine) and dropout draws new masks every step."""
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 1
  config.model.dropout_rate = 0.3
  config.train.num_train_steps = 4
  config.train.eval_every_steps = 100  # evaluate only at the end
  straight, crashed = tmp_path / 'straight', tmp_path / 'crashed'
  loop.train_and_evaluate(config, str(straight))

  shutil.copytree(straight, crashed)
  manager = checkpoints.create_manager(str(crashed), keep=2)
  assert list(manager.all_steps()) == [2, 4]
  manager.delete(4)
  manager.close()
  loop.train_and_evaluate(config, str(crashed))

  assert_trees_equal(saved_params(straight, 4), saved_params(crashed, 4))
  assert not np.array_equal(jax.tree.leaves(saved_params(crashed, 2))[0],
                            jax.tree.leaves(saved_params(crashed, 4))[0])


def test_stages_train_their_crops_and_batches_in_turn(config, tmp_path, monkeypatch, caplog):
  """The tiny run's 3 steps in two stages (the first with its crops and batch, compiled
  already): each stage's dataset is built when it is reached, the steps see its batch
  shape, and data.crop_size and train.batch_size are not used (30 and 6 would be errors
  on 4 devices)."""
  config.data.stages = ((2, 32, 4), (1, 16, 8))
  config.data.crop_size, config.train.batch_size = 30, 6
  events = []
  create, make_global_batch = pipeline.create_train_dataset, sharding.make_global_batch

  def recorded_create(data_config, **kwargs):
    events.append(('dataset', kwargs['start_step'], kwargs['rows']))
    return create(data_config, **kwargs)

  def recorded_batch(batch, mesh):
    events.append(('batch', batch['blur'].shape))
    return make_global_batch(batch, mesh)

  monkeypatch.setattr(pipeline, 'create_train_dataset', recorded_create)
  monkeypatch.setattr(sharding, 'make_global_batch', recorded_batch)
  caplog.set_level(logging.INFO, logger='absl')
  loop.train_and_evaluate(config, str(tmp_path))
  training = [('dataset', 0, range(4)), ('batch', (4, 32, 32, 3)), ('batch', (4, 32, 32, 3)),
              ('dataset', 2, range(8)), ('batch', (8, 16, 16, 3))]
  assert events[:5] == training  # then the evaluation's batches
  assert 'Stage 1 of 2 from step 1: 32x32 crops, global batch 4.' in caplog.text
  assert 'Stage 2 of 2 from step 3: 16x16 crops, global batch 8.' in caplog.text
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved_params(tmp_path, 3)))


def test_eval_mode_writes_per_image_csv_and_summary_json(trained, config):
  workdir = trained[0]
  config.eval.checkpoint_step = 2
  summary = evaluator.evaluate_checkpoint(config, str(workdir))
  assert summary['step'] == 2
  with open(workdir / 'eval' / 'step_2.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['name'] for r in rows] == ['GOPR0000_00_00/000000.png', 'GOPR0000_00_00/000001.png']
  assert set(rows[0]) == {'name', 'psnr', 'ssim', 'mse', 'input_psnr', 'input_ssim', 'protocol'}
  assert {row['protocol'] for row in rows} == {'mimo'}
  for row in rows:  # each row's input PSNR is that of its own files
    assert float(row['input_psnr']) == pytest.approx(input_psnr(config.data.dir, row['name']),
                                                     abs=1e-3)
  with open(workdir / 'eval' / 'step_2.json') as f:
    saved = json.load(f)
  assert saved['psnr'] == pytest.approx(np.mean([float(r['psnr']) for r in rows]), abs=1e-5)
  assert saved['groups']['GOPR0000_00_00']['ssim'] == pytest.approx(saved['ssim'])
  config.eval.checkpoint_step = 7
  with pytest.raises(InputError, match=r'No checkpoint at step 7.*\[2, 3\]'):
    evaluator.evaluate_checkpoint(config, str(workdir))


def test_checkpoint_of_another_model_is_a_clear_error(trained, config, tmp_path):
  config.model.base_width = 16
  message = r'config\.model\.base_width: checkpoint has 8, config has 16'
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(copy_of(trained, tmp_path)))


def test_checkpoint_with_another_optimizer_state_is_a_clear_error(trained, config, tmp_path):
  config.optimizer.grad_clip_norm = 1.0
  with pytest.raises(InputError, match=r'config\.optimizer\.grad_clip_norm > 0: checkpoint has '
                                       r'False, config has True'):
    loop.train_and_evaluate(config, str(copy_of(trained, tmp_path)))


def test_a_partial_checkpoint_from_a_crash_is_ignored(trained, config, tmp_path):
  workdir = copy_of(trained, tmp_path)
  partial = workdir / 'checkpoints' / '5.orbax-checkpoint-tmp-1234'
  (partial / 'model').mkdir(parents=True)
  (partial / 'model' / 'garbage').write_bytes(b'\x00' * 10)
  loop.train_and_evaluate(config, str(workdir))  # finished: nothing to train
  manager = checkpoints.create_manager(str(workdir), keep=1, read_only=True)
  assert list(manager.all_steps()) == [2, 3]
  assert not partial.exists()


def test_keeps_the_latest_checkpoints_and_the_best_by_psnr_across_restarts(tmp_path):

  class State:
    step = jnp.array(0)
    params = {'w': jnp.zeros(2)}
    batch_stats = {}
    opt_state = {'m': jnp.zeros(2)}
    ema_params = None
    plateau = None

    def variables(self):
      return {'params': self.params}

  def save_all(saves):
    manager = checkpoints.create_manager(str(tmp_path), keep=2)
    for step, psnr in saves:
      checkpoints.save(manager, step, State(), {'seed': 0},
                         None if psnr is None else {'psnr': psnr})
    manager.wait_until_finished()
    steps = list(manager.all_steps())
    manager.close()
    return steps

  assert save_all([(1, 20.0), (2, 31.0), (3, 25.0)]) == [2, 3]
  # A new process (a resumed run) still knows step 2 is the best.
  assert save_all([(4, None), (5, 22.0), (6, None)]) == [2, 5, 6]


@pytest.mark.parametrize('field,value,message', [
    (('data', 'crop_size'), 30, r'crop_size=30 must be a multiple of 4'),
    (('train', 'batch_size'), 6, r'batch_size=6 must be a positive multiple of the number of '
                                 r'devices \(4\)'),
    (('train', 'compute_dtype'), 'float16', r"compute_dtype 'float16'"),
    (('train', 'eval_every_steps'), 0, r'eval_every_steps=0 must be positive'),
    (('model', 'name'), 'mimo_unet_xl', r"Unknown config\.model\.name 'mimo_unet_xl'"),
    (('data', 'dir'), '/nonexistent/GOPRO_Large',
     r"config\.data\.dir='/nonexistent/GOPRO_Large' is not a directory"),
])
def test_bad_config_values_are_errors_naming_the_field(config, tmp_path, field, value, message):
  config[field[0]][field[1]] = value
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path))


@pytest.fixture
def fails_on_data_read(monkeypatch):
  """Any read of training or evaluation data fails the test."""
  def no_data(*args, **kwargs):
    raise AssertionError('data was read before the config was checked')
  for name in ('create_train_dataset', 'find_eval_pairs'):
    monkeypatch.setattr(pipeline, name, no_data)


@pytest.mark.parametrize('field,value,message', [
    (('train', 'ema_decay'), 2.0, r'ema_decay=2\.0 must lie in \[0, 1\)'),
    (('train', 'monitor'), 'loss', r"config\.train\.monitor 'loss'"),
    (('train', 'plateau_factor'), 1.5, r'plateau_factor=1\.5'),
    (('train', 'early_stop_patience'), -1, r'early_stop_patience'),
    (('train', 'keep_checkpoints'), 0, r'keep_checkpoints=0 must be positive'),
    (('optimizer', 'name'), 'adagrad', r"Unknown config\.optimizer\.name 'adagrad'"),
    (('gan', 'critic_steps'), 0, r'config\.gan\.discriminator\.name=.* is set'),
    (('data', 'source'), 'demo', r'config\.data\.dir'),
    (('data', 'cache'), 'disk', r'config\.data\.cache'),
])
def test_config_errors_come_before_any_data_is_read(config, tmp_path, fails_on_data_read,
                                                     field, value, message):
  del fails_on_data_read
  config.data.dir = str(tmp_path / 'does_not_exist')
  if field[0] == 'gan':
    config.gan.discriminator.name = 'patchgan'  # the tiny MIMO-UNet is no GAN generator
  config[field[0]][field[1]] = value
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / 'work'))


@pytest.mark.parametrize('stages,num_train_steps,message', [
    (((2, 16),), 4, r'^config\.data\.stages\[0\]=\(2, 16\) must be a triple of positive ints'),
    (((2, 16, 8), (2, 30, 4)), 4,
     r"^config\.data\.stages\[1\] crop_size=30 must be a multiple of 4 for model 'mimo_unet'"),
    (((2, 16, 6),), 4, r'^config\.data\.stages\[0\] global_batch=6 must be a positive multiple '
                       r'of the number of devices \(4\)'),
    (((2, 16, 8),), -1, r'^config\.data\.stages count steps: set config\.train\.num_train_steps '
                        r'\(config\.train\.num_epochs=3000\.0 is not used'),
])
def test_bad_stages_are_errors_before_any_data_is_read(config, tmp_path, fails_on_data_read,
                                                       stages, num_train_steps, message):
  del fails_on_data_read
  config.data.stages = stages
  config.train.num_train_steps = num_train_steps
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / 'work'))
