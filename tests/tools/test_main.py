"""The command line: one device count or four give the same model; bad input exits cleanly."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from helpers import run_tool


def run_main(workdir, *overrides, devices=1, mode='train'):
  return run_tool('deblur_jax.main', '--config=configs/tiny.py', f'--workdir={workdir}',
                  f'--mode={mode}', *overrides, num_devices=devices)


def final_params(workdir, step):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  restored = manager.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore()))
  return restored['model']


def test_one_and_four_devices_train_the_same_model(pair_tree, tmp_path):
  """3 steps of the same global batch (4) on 1 and on 4 CPU devices, with dropout
  so that the masks must not depend on the sharding either.

  Only the order of floating-point sums differs; Adam turns that into at most a
  small fraction of one step (learning rate 1e-3) on near-zero gradients.
  """
  overrides = [f'--config.data.dir={pair_tree}', '--config.model.dropout_rate=0.2',
               '--config.train.eval_every_steps=100']
  results = {}
  for devices in (1, 4):
    workdir = tmp_path / f'devices{devices}'
    proc = run_main(workdir, *overrides, devices=devices)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"mesh {{'data': {devices}}}" in proc.stderr
    results[devices] = final_params(workdir, 3)
  leaves1 = jax.tree.leaves(results[1])
  leaves4 = jax.tree.leaves(results[4])
  assert len(leaves1) == len(leaves4) > 0
  for a, b in zip(leaves1, leaves4):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize('overrides,message', [
    (['--config.model.numres=3'], 'Error: cannot apply --config.model.numres=3: \'numres\' '
                                   'Did you mean "num_res"'),
    (['--config.model.name=mimo_unet_xl'], "Error: Unknown model 'mimo_unet_xl' in "
                                           'config.model.name'),
    (['--config.data.dir=/nonexistent/GOPRO_Large'],
     "Error: config.data.dir='/nonexistent/GOPRO_Large' is not a directory"),
    (['--config.optimizer.name=adagrad'], "Error: Unknown optimizer 'adagrad'"),
])
def test_bad_input_exits_with_a_message_naming_the_field(tmp_path, overrides, message):
  proc = run_main(tmp_path / 'w', *overrides)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert 'Traceback' not in proc.stderr


def test_eval_mode_without_a_checkpoint_says_so(tmp_path, pair_tree):
  proc = run_main(tmp_path / 'empty', f'--config.data.dir={pair_tree}', mode='eval')
  assert proc.returncode == 2
  assert 'No checkpoint in' in proc.stderr and 'train first' in proc.stderr
