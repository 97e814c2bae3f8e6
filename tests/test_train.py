"""The training loop end to end on a generated PNG tree (4 CPU devices)."""

import csv
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from deblur_jax.errors import InputError
from deblur_jax.training import checkpoints, loop
from helpers import saved_item


def saved_params(workdir, step):
  return saved_item(workdir, step)['params']


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture
def config(tiny_config, pair_tree):
  tiny_config.data.dir = str(pair_tree)
  return tiny_config


def test_trains_evaluates_checkpoints_and_logs(config, tmp_path):
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary['num_images'] == 2
  for key in ('psnr', 'ssim', 'input_psnr', 'input_ssim'):
    assert np.isfinite(summary[key])
  assert 10 < summary['input_psnr'] < 60 and 0 < summary['input_ssim'] <= 1
  manager = checkpoints.create_manager(str(tmp_path), keep=1, read_only=True)
  assert list(manager.all_steps()) == [2, 3]
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path))
  saved = manager.restore(3, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']
  assert saved['model']['base_width'] == 8


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


def test_eval_mode_writes_per_image_csv_and_summary_json(config, tmp_path):
  loop.train_and_evaluate(config, str(tmp_path))
  config.eval.checkpoint_step = 2
  summary = loop.evaluate_checkpoint(config, str(tmp_path))
  assert summary['step'] == 2
  with open(tmp_path / 'eval' / 'step_2.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['name'] for r in rows] == ['GOPR0000_00_00/000000.png', 'GOPR0000_00_00/000001.png']
  assert set(rows[0]) == {'name', 'psnr', 'ssim', 'mse', 'input_psnr', 'input_ssim'}
  for row in rows:  # each row's input PSNR is that of its own files
    folder = os.path.join(config.data.dir, 'test', os.path.dirname(row['name']))
    blur, sharp = (np.asarray(Image.open(os.path.join(folder, kind, os.path.basename(row['name']))),
                              np.float64) / 255 for kind in ('blur', 'sharp'))
    expected = 10 * np.log10(1 / np.mean((blur - sharp) ** 2))
    assert float(row['input_psnr']) == pytest.approx(expected, abs=1e-3)
  with open(tmp_path / 'eval' / 'step_2.json') as f:
    saved = json.load(f)
  assert saved['psnr'] == pytest.approx(np.mean([float(r['psnr']) for r in rows]), abs=1e-5)
  assert saved['groups']['GOPR0000_00_00']['ssim'] == pytest.approx(saved['ssim'])
  config.eval.checkpoint_step = 7
  with pytest.raises(InputError, match=r'No checkpoint at step 7.*\[2, 3\]'):
    loop.evaluate_checkpoint(config, str(tmp_path))


def test_checkpoint_of_another_model_is_a_clear_error(config, tmp_path):
  config.train.num_train_steps = 1
  loop.train_and_evaluate(config, str(tmp_path))
  config.model.base_width = 16
  message = r'config\.model\.base_width: checkpoint has 8, config has 16'
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path))


def test_checkpoint_with_another_optimizer_state_is_a_clear_error(config, tmp_path):
  config.train.num_train_steps = 1
  loop.train_and_evaluate(config, str(tmp_path))
  config.optimizer.grad_clip_norm = 1.0
  with pytest.raises(InputError, match=r'config\.optimizer\.grad_clip_norm > 0: checkpoint has '
                                       r'False, config has True'):
    loop.train_and_evaluate(config, str(tmp_path))


def test_a_partial_checkpoint_from_a_crash_is_ignored(config, tmp_path):
  config.train.num_train_steps = 2
  loop.train_and_evaluate(config, str(tmp_path))
  partial = tmp_path / 'checkpoints' / '5.orbax-checkpoint-tmp-1234'
  (partial / 'model').mkdir(parents=True)
  (partial / 'model' / 'garbage').write_bytes(b'\x00' * 10)
  config.train.num_train_steps = 3
  loop.train_and_evaluate(config, str(tmp_path))
  manager = checkpoints.create_manager(str(tmp_path), keep=1, read_only=True)
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
])
def test_bad_config_values_are_errors_naming_the_field(config, tmp_path, field, value, message):
  config[field[0]][field[1]] = value
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path))
