"""One training run per workdir: `<workdir>/run.lock` names the process that holds it.

A second train.py on a workdir in use refuses to start, naming the other process (two runs
would write the same checkpoint steps and logs). A lock left by a process that has died on
this host is taken over with a warning. A lock from another host cannot be checked from
here: it is refused, and the message says how to remove it once that run is known to be
gone. In a multi-process run, process 0 holds the lock for all of them.
"""

from __future__ import annotations

import json
import os
import socket
import time

LOCK_FILE = "run.lock"


class WorkdirInUseError(RuntimeError):
  """Another live training process holds the workdir."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user
    return True
  return True


class WorkdirLock:
  """Context manager holding `<workdir>/run.lock` (only where `enabled`)."""

  def __init__(self, workdir: str, *, enabled: bool = True, log=print):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.enabled, self.log = enabled, log
    self.held = False

  def _mine(self) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}

  def _read(self) -> dict | None:
    try:
      with open(self.path) as f:
        return json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}  # half-written or unreadable: treated as stale below

  def acquire(self) -> None:
    if not self.enabled:
      return
    for _ in range(3):  # a racing process may create or remove the file in between
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        other = self._read()
        if other is None:
          continue
        self._refuse_or_take_over(other)
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(self._mine(), f)
      self.held = True
      return
    raise WorkdirInUseError(f"could not take {self.path}: other processes keep racing for it")

  def _refuse_or_take_over(self, other: dict) -> None:
    pid, host = other.get("pid"), other.get("host")
    here = socket.gethostname()
    since = other.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "unknown"
    if isinstance(pid, int) and host == here and _alive(pid):
      raise WorkdirInUseError(
          f"{os.path.dirname(self.path)} is in use by another training process (pid {pid} on "
          f"{host}, since {when}); two runs on one workdir would overwrite each other's "
          "checkpoints and logs. Wait for it, stop it, or use another --workdir.")
    if host and host != here:
      raise WorkdirInUseError(
          f"{os.path.dirname(self.path)} is held by pid {pid} on host {host} (since {when}), "
          f"which cannot be checked from {here}. If that run is gone, delete {self.path} and "
          "start again; otherwise use another --workdir.")
    self.log(f"warning: taking over {self.path}, left by pid {pid} (since {when}), which is no "
             "longer running")
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass

  def release(self) -> None:
    if self.held:
      other = self._read()
      if other and other.get("pid") == os.getpid():
        os.remove(self.path)
      self.held = False

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
