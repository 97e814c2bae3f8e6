"""Multi-process training: 2 processes x 2 CPU devices train what 1 process x 4 does.

The multi-process run goes through launch/multiprocess_cpu.sh, as users start it;
the single-process reference trains in this test process (4 CPU devices) meanwhile.
"""

import glob
import socket
import sys
import time

import jax
import numpy as np
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.inference import deblur
from deblur_jax.parallel import distributed
from deblur_jax.training import loop
from helpers import FAST_COMPILE_XLA_FLAGS, finish, make_pair_tree, start, train_scalars

TIMEOUT_S = 600  # per command; the training runs take 1-5 min on 2 busy CPU cores


def final_params(workdir, step):
  """The parameters saved at `step`, restored onto one device of this process as
  predict loads them."""
  _, variables, loaded_step = deblur.load_model(str(workdir), step)
  assert loaded_step == step
  return variables['params']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Workdirs of the tiny config trained as 2 processes x 2 devices by
  launch/multiprocess_cpu.sh and, at the same time, as 1 process x 4 devices here."""
  from deblur_jax.configs import mimo  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('runs')
  data_dir = make_pair_tree(root / 'data')
  single, multi = root / 'one_process', root / 'two_processes'
  launched = start(['timeout', str(TIMEOUT_S), 'launch/multiprocess_cpu.sh', '2', '2',
                    'configs/mimo.py:tiny', str(multi), f'--config.data.dir={data_dir}'],
                   # The launcher appends its device count to these flags: the same
                   # compiled programs as this process's reference run.
                   {'XLA_FLAGS': FAST_COMPILE_XLA_FLAGS, 'PYTHON': sys.executable},
                   root / 'two_processes.log')
  try:
    config = mimo.get_config('tiny')
    config.data.dir = str(data_dir)
    loop.train_and_evaluate(config, str(single))
  finally:
    statuses = finish([launched])
  logs = {'two_processes': (root / 'two_processes.log').read_text(),
          'process_1': (multi / 'logs' / 'process_1.log').read_text()}
  assert statuses == [0], {name: log[-3000:] for name, log in logs.items()}
  return single, multi, logs


def test_each_process_sees_all_devices(runs):
  _, _, logs = runs
  assert 'process 0 of 2, 2 local devices, 4 global devices (cpu)' in logs['two_processes']
  assert 'process 1 of 2, 2 local devices, 4 global devices (cpu)' in logs['process_1']


def test_only_process_0_writes_event_files(runs):
  _, multi, _ = runs
  assert len(glob.glob(str(multi / 'events.out.tfevents.*'))) == 1


def test_same_loss_curve_and_evaluation(runs):
  """Same global batches: the same losses step by step, up to the order of sums."""
  single, multi, _ = runs
  expected, actual = train_scalars(str(single)), train_scalars(str(multi))
  assert sorted(expected['train/loss']) == [1, 2, 3]
  for tag in ('train/loss', 'train/grad_norm', 'eval/psnr', 'eval/ssim'):
    assert actual[tag].keys() == expected[tag].keys(), tag
    np.testing.assert_allclose(list(actual[tag].values()), list(expected[tag].values()),
                               rtol=1e-5, err_msg=tag)


def test_same_final_parameters(runs):
  """Equal up to the order of sums in the gradient all-reduce: Adam turns that
  into at most a thousandth of one step (learning rate 1e-3) on near-zero gradients."""
  single, multi, _ = runs
  leaves_single = jax.tree.leaves(final_params(single, 3))
  leaves_multi = jax.tree.leaves(final_params(multi, 3))
  assert len(leaves_single) == len(leaves_multi) > 0
  for a, b in zip(leaves_single, leaves_multi):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.parametrize('process_id', [0, 1], ids=['only_process_0', 'no_coordinator'])
def test_missing_processes_are_a_clear_error_not_a_hang(tmp_path, process_id):
  """Process 0 alone waits for a process that never comes; process 1 alone finds
  no coordinator. Both give up after --coordinator_timeout_s with advice."""
  start_time = time.monotonic()
  proc = start([sys.executable, '-m', 'deblur_jax.main', '--config=configs/mimo.py:tiny',
                f'--workdir={tmp_path}', '--distributed',
                f'--coordinator_address=127.0.0.1:{free_port()}', '--num_processes=2',
                f'--process_id={process_id}', '--coordinator_timeout_s=3'],
               {'XLA_FLAGS': ''}, tmp_path / 'log')
  [status] = finish([proc], timeout_s=120)
  output = (tmp_path / 'log').read_text()
  assert status == 2, output[-3000:]
  assert time.monotonic() - start_time < 60
  assert 'Error: The multi-process job did not come together: waited 3 s' in output
  assert f'num_processes=2, process_id={process_id}' in output
  assert '--coordinator_timeout_s' in output


def test_multi_process_flags_without_distributed_are_an_error():
  with pytest.raises(InputError, match=r'--num_processes, --process_id apply only to a '
                                       r'multi-process job: add --distributed'):
    distributed.initialize(False, num_processes=2, process_id=0)


@pytest.mark.parametrize('num_processes,process_id,message', [
    (2, 2, r'--process_id=2 must be below --num_processes=2'),
    (0, None, r'--num_processes=0 must be at least 1'),
    (None, -1, r'--process_id=-1 must be >= 0'),
])
def test_bad_process_counts_are_an_error(num_processes, process_id, message):
  with pytest.raises(InputError, match=message):
    distributed.initialize(True, '127.0.0.1:1', num_processes, process_id)


def test_single_process_needs_nothing():
  distributed.initialize(False)
  assert distributed.describe().startswith('process 0 of 1, 4 local devices, 4 global devices')
