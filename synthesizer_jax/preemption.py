"""Preemption: SIGTERM / SIGINT become a request to save the current step and stop.

Every process must save the same step. One process: a Python signal handler sets a flag.
Several processes: JAX's coordination service does it (`jax.distributed.initialize` starts
a preemption sync manager whose notifier catches SIGTERM on any process);
`multihost_utils.reached_preemption_sync_point(n)` then tells every process the same
step to save at. That call is a host-side check of the coordination client, about 25
microseconds, with no device collective, so the host keeps running ahead of the device.
SIGINT (Ctrl-C) on one process is passed on as SIGTERM to that notifier.

The sync point is a count of calls, not a training step: the coordination service picks
"one more than the furthest process's last count", and each process stops when its own count
gets there. So the loop may ask at any point every process passes the same number of times:
once before training (a signal during set-up, restore or compilation), at every step, and
between the batches of the final evaluation. The first call is made at construction: a notice
that arrives before any process has called would find no counts and be dropped.
"""

from __future__ import annotations

import os
import signal

import jax
import numpy as np

MODES = ("auto", "signal", "sync_point", "allgather")


def _sync_manager_running() -> bool:
  """Whether jax.distributed started a preemption sync manager in this process."""
  try:
    from jax._src import distributed
  except ImportError:  # pragma: no cover - JAX moved it
    return False
  state = distributed.global_state
  return state.client is not None and getattr(state, "preemption_sync_manager", None) is not None


class Preemption:
  """Turns SIGTERM and SIGINT into a request to save the current step, agreed by every process.

  Modes: "signal" (one process: a Python handler), "sync_point" (several processes: the
  coordination service), "allgather" (several processes without a sync manager: a device
  all-gather of the flags every step, which makes the host wait for the device; the old
  way, kept as the fallback and for benchmarks/preemption.py), "auto" (the first that fits).
  A second signal while the save is pending stops at once (KeyboardInterrupt), leaving the
  previous checkpoint. Handlers only set flags: printing from one could re-enter a write.
  """

  def __init__(self, mode: str = "auto"):
    if mode not in MODES:
      raise ValueError(f"preemption mode {mode!r}: must be one of {MODES}")
    if mode == "auto":
      mode = ("signal" if jax.process_count() == 1
              else "sync_point" if _sync_manager_running() else "allgather")
    self.mode = mode
    self.signum = None
    self._old = {}
    self._calls = -1  # sync_point: calls of agreed() so far, the count the service compares
    self._agreed = False
    # With a sync manager its notifier owns SIGTERM; SIGINT is forwarded to it.
    handlers = ({signal.SIGINT: self._forward} if mode == "sync_point"
                else {signal.SIGTERM: self._handle, signal.SIGINT: self._handle})
    for sig, handler in handlers.items():
      try:
        self._old[sig] = signal.signal(sig, handler)
      except ValueError:  # not the main thread
        pass
    if mode == "sync_point":
      self.agreed()  # registers a count (see the module docstring)

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""

  def agreed(self) -> bool:
    """Whether every process is to stop here. Every process must make the same sequence of
    calls (e.g. one per step); once True, it stays True."""
    if self._agreed:
      return True
    if self.mode == "signal":
      self._agreed = self.requested
    elif self.mode == "sync_point":
      from jax.experimental import multihost_utils

      self._calls += 1
      if multihost_utils.reached_preemption_sync_point(self._calls):
        self.signum = self.signum or signal.SIGTERM
        self._agreed = True
    else:
      from jax.experimental import multihost_utils

      flags = multihost_utils.process_allgather(np.int32(self.signum or 0))
      if not self.requested and np.any(flags):
        self.signum = int(np.max(flags))
      self._agreed = bool(np.any(flags))
    return self._agreed

  def _handle(self, signum, frame):
    if self.signum is not None:
      self.restore()
      raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
    self.signum = signum

  def _forward(self, signum, frame):
    if self.signum is not None:
      self.restore()
      raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
    self.signum = signum
    os.kill(os.getpid(), signal.SIGTERM)  # to the coordination service's notifier

  def restore(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}
