"""A checkpoint save that runs out of disk: recognised, cleaned up, and named.

Orbax writes a step into `<step>.orbax-checkpoint-tmp*` and renames it only when complete,
so a save that fails half-way is never restored. What it leaves is the unfinished
directory, holding space, and an error from TensorStore or the OS that does not say what
to do. `disk_full_error` turns such an error into a `DiskFullError` that names the
directory, the space free, the space a checkpoint of this run takes and the last complete
step (which stays restorable), after removing the unfinished directory.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil

TMP_SUFFIX = ".orbax-checkpoint-tmp"
_MARKERS = ("No space left on device", "os_error_code='28'", "Disk quota exceeded")


class DiskFullError(OSError):
  """A checkpoint could not be written because its filesystem is full."""

  def __init__(self, message: str):
    super().__init__(errno.ENOSPC, message)
    self.message = message

  def __str__(self) -> str:
    return self.message


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` (or what caused it) is ENOSPC / EDQUOT, as an OSError or in the text of
  a TensorStore error."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if any(m in str(error) for m in _MARKERS):
      return True
    error = error.__cause__ or error.__context__
  return False


def tree_bytes(path: str) -> int:
  """Bytes of the files under `path`."""
  total = 0
  for root, _, files in os.walk(path):
    for f in files:
      try:
        total += os.path.getsize(os.path.join(root, f))
      except OSError:
        pass
  return total


def remove_unfinished(directory: str) -> list[str]:
  """Deletes the unfinished saves (`*.orbax-checkpoint-tmp*`) in `directory`; returns them."""
  gone = sorted(glob.glob(os.path.join(directory, f"*{TMP_SUFFIX}*")))
  for path in gone:
    shutil.rmtree(path, ignore_errors=True)
  return gone


def _mb(n: float) -> str:
  return f"{n / 2**20:,.1f} MiB"


def _step_of(unfinished: str) -> int | None:
  """The step of an unfinished save's directory (`4.orbax-checkpoint-tmp...` -> 4)."""
  head = os.path.basename(unfinished).split(TMP_SUFFIX)[0]
  return int(head) if head.isdigit() else None


def disk_full_error(error: BaseException, directory: str, *, last_complete: int | None,
                    keep: int | None, state_bytes: int) -> DiskFullError | None:
  """The `DiskFullError` for `error` (None when it is not about a full disk).

  Removes the unfinished save first (process 0 calls this; the directory is shared), so
  the free space reported is what a retry would have; its directory name gives the step
  that failed (an async save's error surfaces at a later call, so the caller cannot tell).
  """
  if not is_disk_full(error):
    return None
  removed = remove_unfinished(directory)
  step = _step_of(removed[-1]) if removed else None
  free = shutil.disk_usage(directory).free if os.path.isdir(directory) else 0
  done = os.path.join(directory, str(last_complete)) if last_complete is not None else None
  one = tree_bytes(done) if done and os.path.isdir(done) else state_bytes
  steps = (keep or 1) + 1  # the kept steps, plus the one being written
  which = f"checkpoint step {step}" if step is not None else "a checkpoint"
  kept = (f"The last complete checkpoint, step {last_complete}, is intact and is what a "
          f"restart resumes from." if last_complete is not None else "No checkpoint was "
          "complete yet.")
  return DiskFullError(
      f"saving {which} to {directory} failed: the disk is full ({_mb(free)} free"
      + (f" after removing the unfinished save {os.path.basename(removed[0])}" if removed
         else "") + f"). One checkpoint of this run takes about {_mb(one)}, and the workdir "
      f"needs room for {steps} of them (keep_checkpoints={keep} plus the one being written): "
      f"about {_mb(steps * one)}. Free space there (or lower keep_checkpoints), then run the "
      f"same command again. {kept} (Original error: {str(error).splitlines()[0][:200]})")
