"""Several processes (machines, or processes on one machine) as one training job.

`initialize` calls `jax.distributed.initialize` when asked to: it must run in
every process before any JAX computation. Afterwards `jax.devices()` lists the
devices of all processes, and the train and eval steps split each batch over
all of them. Unset arguments are detected from the cluster (SLURM, Cloud TPU,
Open MPI, Kubernetes JobSet), as JAX does. On CPU the processes exchange data
with gloo, JAX's default CPU collectives.
"""

import threading
from typing import Optional

import jax
from absl import logging

from deblur_jax.core.errors import InputError

_JAX_GRACE_S = 60  # JAX's own deadline is this much later than ours; see _initialize_within.


def _given(coordinator_address: Optional[str], num_processes: Optional[int],
           process_id: Optional[int]) -> dict:
  given = dict(coordinator_address=coordinator_address or None, num_processes=num_processes,
               process_id=process_id)
  return {k: v for k, v in given.items() if v is not None}


def _check_arguments(given: dict) -> None:
  num_processes, process_id = given.get('num_processes'), given.get('process_id')
  if num_processes is not None and num_processes < 1:
    raise InputError(f'--num_processes={num_processes} must be at least 1.')
  if process_id is not None and process_id < 0:
    raise InputError(f'--process_id={process_id} must be >= 0.')
  if num_processes is not None and process_id is not None and process_id >= num_processes:
    raise InputError(f'--process_id={process_id} must be below --num_processes={num_processes} '
                     '(ids count from 0).')


def _describe_request(given: dict) -> str:
  if not given:
    return 'all settings detected from the cluster environment'
  return ', '.join(f'{k}={v}' for k, v in given.items()) + (
      '' if len(given) == 3 else '; the rest detected from the cluster environment')


def _initialize_within(timeout_s: int, given: dict) -> None:
  """jax.distributed.initialize(**given), or TimeoutError after `timeout_s` seconds.

  When the processes do not all reach the coordinator in time, JAX ends the
  process with a fatal log line instead of raising. So JAX waits longer than
  us, in a helper thread (its C++ wait releases the GIL), and this thread gives
  up first; exiting the process then stops that wait.
  """
  done = threading.Event()
  errors = []

  def run():
    try:
      jax.distributed.initialize(**given, initialization_timeout=timeout_s + _JAX_GRACE_S)
    except BaseException as e:  # pylint: disable=broad-except  # re-raised below
      errors.append(e)
    finally:
      done.set()

  threading.Thread(target=run, name='jax_distributed_initialize', daemon=True).start()
  if not done.wait(timeout_s):
    raise TimeoutError
  if errors:
    raise errors[0]


def initialize(enabled: bool, coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None, process_id: Optional[int] = None,
               timeout_s: int = 300) -> None:
  """Joins this process to a multi-process job when `enabled`; else checks that no
  multi-process setting was given.

  Arguments left None (or an empty coordinator address) are detected from the
  cluster. Waits at most `timeout_s` seconds for every process to reach the
  coordinator, then raises an InputError that says what to check.
  """
  given = _given(coordinator_address, num_processes, process_id)
  if not enabled:
    if given:
      names = ', '.join(f'--{k}' for k in given)
      raise InputError(f'{names} {"apply" if len(given) > 1 else "applies"} only to a '
                       'multi-process job: add --distributed.')
    return
  _check_arguments(given)
  if timeout_s <= 0:
    raise InputError(f'--coordinator_timeout_s={timeout_s} must be positive.')
  request = _describe_request(given)
  logging.info('Starting the multi-process job (%s); waiting up to %d s for all processes.',
               request, timeout_s)
  try:
    _initialize_within(timeout_s, given)
  except TimeoutError:
    waited_for = ('the other processes' if given.get('process_id') == 0 else
                  'the coordinator and the other processes')
    raise InputError(
        f'The multi-process job did not come together: waited {timeout_s} s for {waited_for} '
        f'({request}). Check that all processes were started with the same '
        '--coordinator_address and --num_processes and distinct --process_id values from 0, '
        'that process 0 runs on the coordinator host, and that its port is free and '
        'reachable from the other hosts (firewall, proxy variables); raise '
        '--coordinator_timeout_s if processes start slowly.') from None
  except (ValueError, TypeError) as e:
    # jax's own checks: nothing given and no cluster detected, say.
    raise InputError(
        f'--distributed could not start ({request}): {str(e).rstrip(".")}. Outside SLURM, '
        'Cloud TPU, Open MPI or Kubernetes pass --coordinator_address=HOST:PORT, '
        '--num_processes and --process_id (0 on the host of the coordinator).') from None
  logging.info('Joined the multi-process job: %s.', describe())


def describe() -> str:
  """'process I of N, L local devices, G global devices (platform)'."""
  return (f'process {jax.process_index()} of {jax.process_count()}, '
          f'{jax.local_device_count()} local devices, {jax.device_count()} global devices '
          f'({jax.devices()[0].platform})')


def log_topology(mesh) -> None:
  """Logs this process's place in the job and the mesh the steps run on."""
  logging.info('Topology: %s; mesh %s.', describe(), dict(mesh.shape))
