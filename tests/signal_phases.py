"""A SIGTERM that lands in a chosen phase of `loop.train_and_evaluate` (not a test itself).

`arrange(phase, send, pause)` patches the library so that, in the next run, `phase` first
sends SIGTERM to this process (when `send`) and then takes `pause` more seconds:

  restore     Checkpointer.restore (the run resumes a workdir)
  compile     the first call of the jitted train step, which compiles it
  final_eval  the final evaluation, before its first batch

Used by the single-process tests (test_reliability_preemption.py) and, in every process of a
two-process run, by multihost_worker.py: every process pauses, only process 1 is signalled,
so the coordination service settles the sync point while all of them are still in the phase.
"""

import dataclasses
import functools
import os
import signal
import time

PHASES = ("restore", "compile", "final_eval")


def _signal_then(fn, send: bool, pause: float, once: list):
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    if not once:
      once.append(True)
      if send:
        os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(pause)  # a handler runs during the sleep; the sleep then resumes (PEP 475)
    return fn(*args, **kwargs)

  return wrapped


def arrange(phase: str, send: bool = True, pause: float = 0.5, patch=setattr) -> None:
  """`patch(obj, name, value)`: setattr, or pytest's monkeypatch.setattr to undo it after."""
  from synthesizer_jax import checkpointing, evaluation, loop

  if phase not in PHASES:
    raise ValueError(f"phase {phase!r}: one of {PHASES}")
  once: list = []
  if phase == "restore":
    cls = checkpointing.Checkpointer
    patch(cls, "restore", _signal_then(cls.restore, send, pause, once))
  elif phase == "final_eval":
    patch(evaluation, "final_results",
          _signal_then(evaluation.final_results, send, pause, once))
  else:
    setup = loop.setup

    def setup_with_slow_compile(*args, **kwargs):
      run = setup(*args, **kwargs)
      return dataclasses.replace(run, train_step=_signal_then(run.train_step, send, pause, once))

    patch(loop, "setup", setup_with_slow_compile)
