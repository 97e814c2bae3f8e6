"""Noticing that the job is about to be stopped, so that the loop can save a
checkpoint at the current step and exit cleanly.

One process: a SIGTERM handler sets a flag. Several processes: JAX's
distributed runtime already listens for SIGTERM (and for the cloud's
preemption notices) and agrees with every process on one step at which all of
them see it; Orbax exposes that as `CheckpointManager.reached_preemption`.
"""

import signal

import jax
from absl import logging


class PreemptionWatch:
  """Use as a context manager around the training loop; ask `reached(step)` after each step."""

  def __init__(self, manager):
    self._manager = manager
    self._signalled = False
    self._previous_handler = None

  def __enter__(self):
    if jax.process_count() == 1:
      self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc):
    if self._previous_handler is not None:
      signal.signal(signal.SIGTERM, self._previous_handler)
    return False

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint after this step, then exiting.')
    self._signalled = True

  def reached(self, step: int) -> bool:
    """True once every process should save at `step` and stop."""
    if jax.process_count() == 1:
      return self._signalled
    return self._manager.reached_preemption(step)
