"""The training loop under faults: SIGTERM (preemption, also to one process of two),
SIGKILL, non-finite steps, other device counts; and early stopping, plateau and EMA end to end."""

import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from deblur_jax.core import checkpoints
from deblur_jax.evaluation import evaluator
from deblur_jax.training import loop
from helpers import FAST_COMPILE_XLA_FLAGS, REPO, finish, saved_item, start, xla_flags

TIMEOUT_S = 300


def saved_steps(workdir):
  manager = checkpoints.create_manager(str(workdir), keep=1, read_only=True)
  steps = list(manager.all_steps())
  manager.close()
  return steps


def main_command(workdir, *overrides, config='configs/mimo.py:tiny'):
  return [sys.executable, '-m', 'deblur_jax.main', f'--config={config}', f'--workdir={workdir}',
          *overrides]


def subprocess_env(num_devices=4):
  """The environment of a training subprocess: the XLA flags of this test process
  (the same compiled programs, so the same rounding) with `num_devices` devices."""
  return dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL='2',
              XLA_FLAGS=xla_flags(num_devices))


@pytest.fixture
def config(tiny_config, pair_tree):
  tiny_config.data.dir = str(pair_tree)
  return tiny_config


def run_until_checkpoint(workdir, overrides, step, sig):
  """Starts training, and sends `sig` once the checkpoint at `step` exists."""
  process = subprocess.Popen(main_command(workdir, *overrides), cwd=REPO, env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + TIMEOUT_S
    marker = os.path.join(workdir, 'checkpoints', str(step))
    while not os.path.isdir(marker):
      assert process.poll() is None, process.stdout.read()
      assert time.time() < deadline, 'no checkpoint in time'
      time.sleep(0.2)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=TIMEOUT_S)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  return process.returncode, output


def test_sigterm_saves_the_current_step_and_exits_cleanly_then_resumes(config, tmp_path):
  overrides = [f'--config.data.dir={config.data.dir}', '--config.train.num_train_steps=400',
               '--config.train.checkpoint_every_steps=2', '--config.train.eval_every_steps=1000']
  code, output = run_until_checkpoint(tmp_path, overrides, 2, signal.SIGTERM)
  assert code == 0, output
  assert 'Preempted: saved the checkpoint at step' in output
  last = max(saved_steps(tmp_path))
  assert 2 <= last < 400
  # The latest checkpoint is that of the step where the signal was seen, not a
  # periodic one (unless the signal came right at one).
  config.train.num_train_steps = last + 1
  config.train.checkpoint_every_steps = 2
  loop.train_and_evaluate(config, str(tmp_path))
  assert max(saved_steps(tmp_path)) == last + 1


def test_sigkill_loses_only_steps_since_the_last_checkpoint(config, tmp_path):
  """Killed at any moment, the run resumes from its last checkpoint and ends with
  the parameters of the run that was never interrupted (the multistep schedule
  does not depend on the number of steps, so the killed run may be longer)."""
  killed = tmp_path / 'killed'
  overrides = [f'--config.data.dir={config.data.dir}', '--config.train.num_train_steps=400',
               '--config.train.checkpoint_every_steps=2', '--config.train.eval_every_steps=1000']
  code, _ = run_until_checkpoint(killed, overrides, 2, signal.SIGKILL)
  assert code == -signal.SIGKILL
  last = max(saved_steps(killed))
  config.train.num_train_steps = last + 2
  config.train.checkpoint_every_steps = 2
  config.train.eval_every_steps = 1000
  loop.train_and_evaluate(config, str(killed))
  loop.train_and_evaluate(config, str(tmp_path / 'straight'))
  jax.tree.map(np.testing.assert_array_equal, saved_item(tmp_path / 'straight', last + 2),
               saved_item(killed, last + 2))


def pid_of_process(workdir, process_id):
  """The pid of the training process `process_id` of the multi-process job on `workdir`."""
  wanted = {b'deblur_jax.main', f'--workdir={workdir}'.encode(),
            f'--process_id={process_id}'.encode()}
  for entry in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{entry}/cmdline', 'rb') as file:
        if wanted <= set(file.read().split(b'\0')):
          return int(entry)
    except OSError:  # the process ended meanwhile
      continue
  raise AssertionError(f'no process {process_id} trains {workdir}')


def test_a_run_moves_to_two_processes_where_sigterm_to_one_stops_both_then_back(config,
                                                                                 tmp_path):
  """4 devices (steps 1-2) -> 2 processes x 1 device, where a SIGTERM to process 1
  alone makes both save the same step N and exit cleanly -> 4 devices again up to
  N + 2. Orbax re-shards the state onto each mesh: the result is the parameters of
  a run that never moved, up to float rounding of the cross-device reductions."""
  moved = tmp_path / 'moved'
  config.train.num_train_steps = 2
  config.train.checkpoint_every_steps = 2
  config.train.eval_every_steps = 1000
  loop.train_and_evaluate(config, str(moved))
  log_0, log_1 = tmp_path / 'process_0.log', moved / 'logs' / 'process_1.log'
  launched = start(['timeout', str(TIMEOUT_S), 'launch/multiprocess_cpu.sh', '2', '1',
                    'configs/mimo.py:tiny', str(moved), f'--config.data.dir={config.data.dir}',
                    '--config.train.num_train_steps=400',
                    '--config.train.checkpoint_every_steps=2',
                    '--config.train.eval_every_steps=1000'],
                   {'XLA_FLAGS': FAST_COMPILE_XLA_FLAGS, 'PYTHON': sys.executable}, log_0)
  try:
    deadline = time.time() + TIMEOUT_S
    while not os.path.isdir(moved / 'checkpoints' / '4'):
      assert launched.poll() is None, log_0.read_text()[-3000:]
      assert time.time() < deadline, 'no checkpoint in time'
      time.sleep(0.2)
    os.kill(pid_of_process(moved, 1), signal.SIGTERM)
  finally:
    [status] = finish([launched], timeout_s=TIMEOUT_S)
  logs = [log_0.read_text(), log_1.read_text()]
  assert status == 0, logs[0][-3000:] + logs[1][-3000:]
  for log in logs:
    assert 'Resumed from the checkpoint at step 2' in log
    assert '1 local devices, 2 global devices' in log
  preempted = [re.findall(r'Preempted: saved the checkpoint at step (\d+)', log) for log in logs]
  assert preempted[0] == preempted[1] and len(preempted[0]) == 1, preempted
  last = int(preempted[0][0])
  assert 4 <= last < 400 and max(saved_steps(moved)) == last
  config.train.num_train_steps = last + 2
  loop.train_and_evaluate(config, str(moved))
  loop.train_and_evaluate(config, str(tmp_path / 'straight'))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               saved_item(tmp_path / 'straight', last + 2), saved_item(moved, last + 2))


def test_non_finite_steps_are_skipped_then_stop_training(config, tmp_path):
  """A learning rate of 1e30 sends the parameters to huge values after one step;
  every later step is non-finite, skipped, and the run stops with a clear error."""
  config.optimizer.name = 'sgd'
  config.optimizer.momentum = 0.0
  config.optimizer.learning_rate = 1e30
  config.train.num_train_steps = 20
  config.train.max_nonfinite_steps = 3
  with pytest.raises(loop.TrainingDiverged,
                     match=r'not finite for 3 steps in a row.*max_nonfinite_steps'):
    loop.train_and_evaluate(config, str(tmp_path))
  assert max(saved_steps(tmp_path)) < 20


def test_early_stopping_restores_the_best_weights_and_plateau_lowers_the_rate(config, tmp_path):
  """With an improvement threshold of 100 dB nothing improves after the first
  evaluation: the plateau halves the rate, and training stops at the second
  evaluation with the first one's weights."""
  config.train.num_train_steps = 10
  config.train.eval_every_steps = 1
  config.train.checkpoint_every_steps = 100
  config.train.keep_checkpoints = 5
  config.train.plateau_factor = 0.5
  config.train.plateau_patience = 0
  config.train.plateau_min_delta = 100.0
  config.train.early_stop_patience = 1
  config.train.early_stop_min_delta = 100.0
  config.train.ema_decay = 0.5
  loop.train_and_evaluate(config, str(tmp_path))
  assert saved_steps(tmp_path) == [1, 2]
  jax.tree.map(np.testing.assert_array_equal, saved_item(tmp_path, 1)['params'],
               saved_item(tmp_path, 2)['params'])
  assert float(saved_item(tmp_path, 2, 'train')['plateau']['scale']) == 0.5
  # The moving average is saved beside the weights and can be evaluated.
  ema = saved_item(tmp_path, 2, 'ema')['params']
  assert not np.array_equal(jax.tree.leaves(ema)[0],
                            jax.tree.leaves(saved_item(tmp_path, 2)['params'])[0])
  # Restoring the best weights restores their moving average too.
  jax.tree.map(np.testing.assert_array_equal, saved_item(tmp_path, 1, 'ema')['params'], ema)
  config.eval.ema = True
  assert np.isfinite(evaluator.evaluate_checkpoint(config, str(tmp_path))['psnr'])
  # A restart knows that training stopped.
  assert loop.train_and_evaluate(config, str(tmp_path)) == {}
  assert saved_steps(tmp_path) == [1, 2]
