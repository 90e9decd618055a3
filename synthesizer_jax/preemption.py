"""Preemption: SIGTERM / SIGINT become a request to save the current step and stop.

Every process must save the same step, so on more than one process the request is agreed
on (`Preemption.agreed`) before the loop decides to save.
"""

from __future__ import annotations

import signal

import jax
import numpy as np


class Preemption:
  """Turns SIGTERM and SIGINT into a flag, so the loop saves the current step before exiting.

  A second signal while that save is pending stops at once (KeyboardInterrupt), leaving the
  previous checkpoint. The handler only sets the flag: printing from it could re-enter a write.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = None
    self._old = {}
    for sig in self.SIGNALS:
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""

  def agreed(self) -> bool:
    """Whether any process was signalled: every process must save the same step together."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.int32(self.signum or 0))
    if not self.requested and np.any(flags):
      self.signum = int(np.max(flags))
    return bool(np.any(flags))

  def _handle(self, signum, frame):
    if self.signum is not None:
      self.restore()
      raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
    self.signum = signum

  def restore(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}
