"""One training run per workdir: `<workdir>/run.lock` names the process that holds it.

A second train.py on a workdir in use refuses to start, naming the other process (two runs
would write the same checkpoint steps and logs). A lock left by a process that has died on
this host is taken over with a warning. A lock from another host cannot be checked from
here: the holder rewrites its `beat` time every `lease_s / 4` seconds, so a lock whose beat
is older than `lease_s` (a host that died without releasing it: a hard preemption, where the
job restarts on another VM) is taken over with a warning; a fresh one is refused, and the
message says how to remove it once that run is known to be gone. In a multi-process run,
process 0 holds the lock for all of them.

On a local disk the lock file is created with O_EXCL. On a bucket (gs://) it is an object
created only if absent (a generation precondition, `ifGenerationMatch=0`), then read back:
a store that offers no create-if-absent is refused rather than guessed at
(docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from synthesizer_jax import paths

LOCK_FILE = "run.lock"
LEASE_S = 600.0  # a lock not refreshed for this long is left by a dead run
RELEASE_S = 10.0  # how long removing the lock may wait on its store
_HELD: set[str] = set()  # tokens of the locks this process holds now


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

  def __init__(self, workdir: paths.PathLike, *, enabled: bool = True, log=print,
               lease_s: float = LEASE_S):
    self.path = paths.as_path(workdir) / LOCK_FILE
    self.enabled, self.log, self.lease_s = enabled, log, lease_s
    self.held = False
    self._token = uuid.uuid4().hex  # tells this holder's lock object from another's
    self._since = time.time()
    self._stop = threading.Event()
    self._beater: threading.Thread | None = None

  def _mine(self) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": self._since,
            "beat": time.time(), "token": self._token}

  def _beat_loop(self) -> None:
    while not self._stop.wait(self.lease_s / 4):
      try:
        if (self._read() or {}).get("token") == self._token:
          paths.write_text(self.path, json.dumps(self._mine()))  # never seen half-written
      except Exception as e:  # noqa: BLE001 - a missed beat is retried at the next one
        self.log(f"warning: could not refresh {self.path} ({type(e).__name__}: {e})")

  def _read(self) -> dict | None:
    for _ in range(3):  # a writer without atomic writes (an older version) may be mid-write
      try:
        return json.loads(self.path.read_text())
      except FileNotFoundError:
        return None
      except (OSError, ValueError):
        time.sleep(0.1)
    return {}  # unreadable three times: treated as stale below

  def _create(self) -> bool:
    """Writes the lock only if absent; False when it exists already."""
    data = json.dumps(self._mine()).encode()
    if not paths.is_remote(self.path):
      try:
        fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(fd, "wb") as f:
        f.write(data)
      return True
    import fsspec

    fs, key = fsspec.core.url_to_fs(os.fspath(self.path))
    try:
      fs.pipe_file(key, data, mode="create")  # ifGenerationMatch=0 on GCS
    except FileExistsError:
      return False
    except (TypeError, NotImplementedError) as e:
      raise WorkdirInUseError(
          f"{self.path}: this store ({type(fs).__name__}) offers no create-if-absent write, so "
          "a second run on the same workdir could not be refused; use a gs:// or local "
          "workdir (docs/reliability.md)") from e
    except Exception as e:  # noqa: BLE001 - a precondition failure is the store saying 'exists'
      if "412" in str(e) or "precondition" in str(e).lower():
        return False
      raise
    mine = self._read()  # the store has the last word on who holds it
    return bool(mine) and mine.get("token") == self._token

  def acquire(self) -> None:
    if not self.enabled:
      return
    for _ in range(3):  # a racing process may create or remove the file in between
      if self.path.exists() or not self._create():
        other = self._read()
        if other is None:
          continue
        self._refuse_or_take_over(other)
        continue
      self.held = True
      _HELD.add(self._token)
      self._beater = threading.Thread(target=self._beat_loop, daemon=True,
                                      name="workdir-lock-beat")
      self._beater.start()
      return
    raise WorkdirInUseError(f"could not take {self.path}: other processes keep racing for it")

  def _refuse_or_take_over(self, other: dict) -> None:
    pid, host = other.get("pid"), other.get("host")
    here = socket.gethostname()
    since = other.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "unknown"
    # This process's own pid with a token it no longer holds: an earlier run here (a notebook,
    # a test) that could not remove its lock (the store was down as it stopped).
    ours_left = pid == os.getpid() and other.get("token") not in _HELD
    if isinstance(pid, int) and host == here and _alive(pid) and not ours_left:
      raise WorkdirInUseError(
          f"{self.path.parent} is in use by another training process (pid {pid} on "
          f"{host}, since {when}); two runs on one workdir would overwrite each other's "
          "checkpoints and logs. Wait for it, stop it, or use another --workdir.")
    beat = other.get("beat", since)
    quiet = time.time() - beat if isinstance(beat, (int, float)) else None
    if host and host != here and (quiet is None or quiet < self.lease_s):
      raise WorkdirInUseError(
          f"{self.path.parent} is held by pid {pid} on host {host} (since {when}), "
          f"which cannot be checked from {here}. If that run is gone, delete {self.path} and "
          f"start again (or wait: a lock not refreshed for {self.lease_s:.0f} s is taken "
          "over); otherwise use another --workdir.")
    gone = ("which is no longer running" if host == here and not ours_left else
            "an earlier run of this process that could not remove it" if ours_left else
            "whose contents cannot be read (no holder, no heartbeat)" if quiet is None else
            f"which has not refreshed it for {quiet:.0f} s (lease {self.lease_s:.0f} s)")
    self.log(f"warning: taking over {self.path}, left by pid {pid} on {host} (since {when}), "
             + gone)
    try:
      self.path.unlink()
    except FileNotFoundError:
      pass

  def release(self) -> None:
    self._stop.set()
    if self._beater is not None:
      self._beater.join()
      self._beater = None
    _HELD.discard(self._token)
    if self.held:
      self.held = False
      try:  # bounded: a run stopping because its store is down should not wait on it
        paths.within(RELEASE_S, self._remove_if_mine)
      except Exception as e:  # noqa: BLE001 - the next run takes a lock left here over
        self.log(f"warning: could not remove {self.path} ({type(e).__name__}: {e}); the next "
                 "run on this host takes it over, one elsewhere once its lease has run out")

  def _remove_if_mine(self) -> None:
    other = self._read()
    if other and other.get("token", self._token) == self._token \
        and other.get("pid") == os.getpid():
      self.path.unlink()

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
