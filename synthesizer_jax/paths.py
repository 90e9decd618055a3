"""One path type for everything a run reads or writes: `etils.epath.Path` (Orbax's own).

A workdir, a data directory or a checkpoint may be a local folder or a bucket URL
(`gs://bucket/run`); code that touches them goes through `as_path` and the methods of the
path it returns, never `os.path` / `open()`, so a bucket behaves as a local disk does.
epath reaches gs:// through tf.io.gfile where TensorFlow is installed, else through fsspec
(gcsfs); array data goes through TensorStore (Orbax). Floor 1: imports nothing of ours.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from etils import epath

T = TypeVar("T")

Path = epath.Path
PathLike = str | os.PathLike

# Stores epath reaches through fsspec; the names its own backend understands.
_REMOTE = ("gs://", "s3://", "az://", "hf://")


def is_remote(path: PathLike) -> bool:
  """Whether `path` is an object-store URL (gs://, s3://, ...) rather than a local path."""
  return os.fspath(path).startswith(_REMOTE) or "://" in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
  """`path` as an epath Path: local paths made absolute, URLs kept as they are."""
  text = os.fspath(path)
  if not text:
    raise ValueError("an empty path was given; pass a directory or a gs:// URL")
  if is_remote(text):
    scheme = text.split("://", 1)[0]
    if text.startswith(_REMOTE):
      return epath.Path(text)
    raise ValueError(f"{text}: paths of scheme {scheme}:// are not supported; use a local "
                     "path or gs:// (s3:// and az:// go through fsspec: see docs/scaling.md)")
  return epath.Path(os.path.abspath(text))


def bucket_of(path: PathLike) -> str | None:
  """'gs://bucket' of a bucket URL, None for a local path."""
  text = os.fspath(path)
  if not is_remote(text):
    return None
  scheme, rest = text.split("://", 1)
  return f"{scheme}://{rest.split('/', 1)[0]}"


def check_bucket(path: PathLike) -> None:
  """FileNotFoundError naming the bucket when `path` is in a bucket that does not exist.

  Checked before a run writes anything, so a typo in the bucket name fails in one line
  instead of at the first checkpoint (some stores would create the bucket on write).
  """
  bucket = bucket_of(path)
  if bucket is None:
    return
  if not bucket.startswith("gs://"):
    raise ValueError(
        f"{path}: runs on {bucket.split('://')[0]}:// are not supported yet (only local paths "
        "and gs:// are tested: checkpoints, the workdir lock's create-if-absent write and the "
        "cache reader); mount the store (s3fs-fuse, mountpoint-s3) and pass the mount's local "
        "path, or use gs:// (docs/scaling.md)")
  try:
    exists = epath.Path(bucket).exists()
  except Exception as e:  # noqa: BLE001 - credentials, network: name the store and the cause
    raise OSError(f"cannot reach {bucket} for {path} ({type(e).__name__}: "
                  f"{str(e).strip()[:200]}); check the credentials and the network") from e
  if not exists:
    raise FileNotFoundError(
        f"bucket {bucket} of {path} does not exist (or these credentials cannot see it); "
        f"create it first (gcloud storage buckets create {bucket}) or fix the name")


def check_dir(path: PathLike, what: str = "workdir") -> epath.Path:
  """`path` as a Path, refused in one line (NotADirectoryError, FileNotFoundError) if it
  exists as a file or its bucket does not exist. Writes nothing."""
  out = as_path(path)
  check_bucket(out)
  if out.exists() and not out.is_dir():
    raise NotADirectoryError(f"{what} {out} exists and is a file, not a directory; pass a "
                             f"directory (new or from an earlier run) as the {what}")
  return out


def prepare_dir(path: PathLike, what: str = "workdir") -> epath.Path:
  """`check_dir`, then the directory created if missing."""
  out = check_dir(path, what)
  out.mkdir(parents=True, exist_ok=True)
  return out


def write_text(path: PathLike, text: str) -> None:
  """Writes a whole file, never half, so a reader sees the old text or the new: an object on a
  bucket is written in one piece; on local disk the text goes to a temporary file beside the
  path, then renamed over it (atomic on POSIX)."""
  path = as_path(path)
  if is_remote(path):
    path.write_text(text)
    return
  tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
  tmp.write_text(text)
  tmp.replace(path)


def within(seconds: float, fn: Callable[[], T]) -> T:
  """fn()'s result, or TimeoutError once `seconds` have passed (fn goes on in a daemon thread).

  For best-effort store calls on a path that is already failing (naming the last complete
  step, removing the lock): the libraries retry each call against a store that does not
  answer for about 30 s (gcsfs: 6 tries with backoff), which an exiting run should not wait.
  """
  box: dict = {}

  def call():
    try:
      box["value"] = fn()
    except BaseException as e:  # noqa: BLE001 - handed to the caller
      box["error"] = e

  thread = threading.Thread(target=call, daemon=True, name="paths.within")
  thread.start()
  thread.join(seconds)
  if thread.is_alive():
    raise TimeoutError(f"no answer in {seconds:.0f} s")
  if "error" in box:
    raise box["error"]
  return box["value"]
