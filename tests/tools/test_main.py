"""The main command: it trains what the library trains, on every device, then evaluates;
a bad override exits with a one-line message. The logic is tested in-process in
tests/training and tests/evaluation; these start the command itself."""

import json
import shutil

import jax
import numpy as np

from deblur_jax.training import loop
from helpers import run_tool, saved_item


def run_main(workdir, *overrides, devices=1, mode='train'):
  return run_tool('deblur_jax.main', '--config=configs/mimo.py:tiny', f'--workdir={workdir}',
                  f'--mode={mode}', *overrides, num_devices=devices)


def test_the_command_trains_what_the_library_trains_on_all_devices_then_evaluates(
    pair_tree, tiny_config, tmp_path):
  """The same compiled programs in both processes: the same parameters, bit for bit."""
  proc = run_main(tmp_path / 'command', f'--config.data.dir={pair_tree}', devices=4)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "mesh {'data': 4}" in proc.stderr
  tiny_config.data.dir = str(pair_tree)
  loop.train_and_evaluate(tiny_config, str(tmp_path / 'library'))
  jax.tree.map(np.testing.assert_array_equal, saved_item(tmp_path / 'library', 3),
               saved_item(tmp_path / 'command', 3))

  shutil.rmtree(tmp_path / 'command' / 'eval')  # written by training's evaluation too
  proc = run_main(tmp_path / 'command', f'--config.data.dir={pair_tree}', mode='eval')
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((tmp_path / 'command' / 'eval' / 'step_3.json').read_text())
  assert (tmp_path / 'command' / 'eval' / 'step_3.csv').is_file()
  assert summary['step'] == 3 and np.isfinite(summary['psnr'])


def test_a_misspelt_override_exits_with_a_message_naming_it(tmp_path):
  proc = run_main(tmp_path / 'w', '--config.model.numres=3')
  assert proc.returncode != 0
  assert ('Error: cannot apply --config.model.numres=3: \'numres\' Did you mean "num_res"'
          in proc.stderr)
  assert 'Traceback' not in proc.stderr
