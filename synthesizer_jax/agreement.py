"""All processes of a run must run the same code on the same config and data, and a lost one
must be named rather than waited for.

`check_processes_agree(run_config)` hashes every field of the run config (model, train and
mesh configs, task, vocabulary sha256) and the library's source, and compares them with
process 0's before training starts: a process launched with another flag, another checkout
or another vocabulary refuses to start on every process, naming the fields and the processes.
Host-local paths (data_dir, vocab_path) may differ between hosts and are not compared.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zlib
from typing import Any

import jax
import numpy as np

LOCAL_FIELDS = ("train.data_dir", "vocab_path")


@functools.cache
def source_digest() -> str:
  """sha256 of the library's Python sources (the code version, commit or not)."""
  root = os.path.dirname(os.path.abspath(__file__))
  digest = hashlib.sha256()
  for folder, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(f for f in files if f.endswith(".py")):
      with open(os.path.join(folder, name), "rb") as f:
        digest.update(os.path.relpath(os.path.join(folder, name), root).encode() + f.read())
  return digest.hexdigest()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def _crc(value: Any) -> int:
  """A 31-bit hash of `value`'s JSON (fits an int32 collective)."""
  return zlib.crc32(json.dumps(value, sort_keys=True, default=str).encode()) & 0x7FFFFFFF


def check_processes_agree(run_config: dict[str, Any]) -> None:
  """ValueError on every process when any process's run config or code differs from process 0's.

  Three small host collectives at start-up (none per step).
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils

  fields = {k: v for k, v in _flatten(run_config).items() if k not in LOCAL_FIELDS}
  fields["code (sha256 of synthesizer_jax/*.py)"] = source_digest()
  keys = sorted(fields)
  key_sig = np.array([_crc(keys), len(keys)], np.int32)
  first = multihost_utils.broadcast_one_to_all(key_sig)
  same_keys = multihost_utils.process_allgather(np.int32(np.array_equal(first, key_sig)))
  if not np.all(same_keys):
    others = [int(i) for i in np.flatnonzero(same_keys == 0)]
    raise ValueError(f"processes {others} have other config fields than process 0 (another "
                     "version of the code?); start every process from the same checkout")
  values = np.array([_crc(fields[k]) for k in keys], np.int32)
  reference = multihost_utils.broadcast_one_to_all(values)
  differs = multihost_utils.process_allgather((reference != values).astype(np.int32))
  if np.any(differs):  # [processes, fields]: every process names the same differences
    which = "; ".join(f"process {p} differs from process 0 on "
                      + ", ".join(keys[i] for i in np.flatnonzero(row))
                      for p, row in enumerate(np.asarray(differs)) if np.any(row))
    raise ValueError(
        f"the processes of this run were started with different settings: {which}. Every "
        "process must get the same config flags, code and vocabulary; fix the launch command "
        "and start them all again.")


class LostProcessError(RuntimeError):
  """A process of a multi-process run is gone; the others stop instead of waiting forever."""


def lost_process_error(error: Exception, last_checkpoint: str) -> LostProcessError | None:
  """The error to raise when a step fails on a multi-process run because a process is gone:
  names the processes the coordination service no longer sees (it knows within its heartbeat
  timeout) and the last complete checkpoint to resume from. None when every process is there
  (the error is then the run's own)."""
  try:
    from jax._src import distributed

    live = distributed.global_state.client.get_live_nodes(list(range(jax.process_count())))
    lost = sorted(set(range(jax.process_count())) - set(live))
    if not lost:
      return None
    who = f"process(es) {lost} stopped answering the coordination service"
  except Exception as e:  # the coordinator itself (process 0) may be the one that is gone
    who = f"the coordination service is unreachable ({type(e).__name__}): process 0 may be gone"
  first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
  return LostProcessError(
      f"process {jax.process_index()}: a collective failed ({first}); {who}. Last complete "
      f"checkpoint: {last_checkpoint}. Restart every process with the same command to resume "
      "from it.")
