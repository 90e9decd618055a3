"""The on-disk cache of a preprocessed seqio task: ArrayRecord shards + a JSON manifest.

Pure Python + NumPy (no TensorFlow, no seqio): `cache.py` writes this format with seqio,
`grain_pipeline.py` reads it on hosts that have neither.

Layout, one directory per split:

    <data_dir>/records/<task>/<split>/manifest.json      written last: its presence = complete
    <data_dir>/records/<task>/<split>/records-00000.array_record ...
    <data_dir>/records/<task>/<split>/lengths.npy        int32 [examples, features]

A record is one example after the task's preprocessors (tokenized, EOS appended, not
truncated, not packed): for the F features in manifest order, an int32 little-endian
header of the F lengths, then each feature's int32 tokens. A rank-0 feature (a class
label) is stored as one value. `lengths.npy` holds the same lengths, so the reader can
plan pieces and packed rows without reading a record.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from synthesizer_jax.data import registry
from synthesizer_jax.data.registry import DataError

FORMAT = 1
MANIFEST = "manifest.json"
LENGTHS = "lengths.npy"
CACHE_CMD = "python -m synthesizer_jax.data.cache --task {task} --data_dir {data_dir}"
_INT = np.dtype("<i4")


def split_dir(name: str, split: str, data_dir: str | None = None) -> str:
  """The cache directory of one split of task `name`."""
  return os.path.join(data_dir or registry.default_data_dir(), "records", name, split)


def manifest_path(name: str, split: str, data_dir: str | None = None) -> str:
  return os.path.join(split_dir(name, split, data_dir), MANIFEST)


def has_cache(name: str, data_dir: str | None = None, split: str = "train") -> bool:
  """Whether a finished cache of `split` of task `name` exists under `data_dir`."""
  return os.path.isfile(manifest_path(name, split, data_dir))


def rebuild_cmd(name: str, data_dir: str) -> str:
  return CACHE_CMD.format(task=name, data_dir=data_dir) + " --rebuild"


def file_sha256(path: str) -> str:
  """Hex sha256 of a file's content, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def encode(example: Mapping[str, np.ndarray], names: Sequence[str]) -> bytes:
  """One example as a record (see the module docstring)."""
  arrays = [np.atleast_1d(np.asarray(example[n])).astype(_INT) for n in names]
  header = np.array([a.size for a in arrays], _INT)
  return header.tobytes() + b"".join(a.tobytes() for a in arrays)


def decode(record: bytes, names: Sequence[str], ranks: Sequence[int]) -> dict[str, np.ndarray]:
  """A record back to {feature: int32 array} (rank-0 features as NumPy scalars)."""
  buf = np.frombuffer(record, _INT)
  n = len(names)
  ends = n + np.cumsum(buf[:n])
  if len(buf) != (ends[-1] if n else 0):
    raise ValueError(f"record of {len(buf)} ints does not match its header {buf[:n].tolist()}")
  out, start = {}, n
  for name, rank, end in zip(names, ranks, ends, strict=True):
    value = buf[start:end].astype(np.int32)
    out[name] = value[0] if rank == 0 else value
    start = end
  return out


def read_manifest(name: str, split: str, data_dir: str) -> dict:
  """The manifest of a cached split; DataError with the cache command if there is none."""
  path = manifest_path(name, split, data_dir)
  if not os.path.isfile(path):
    where = split_dir(name, "", data_dir)
    splits = sorted(os.listdir(where)) if os.path.isdir(where) else []
    raise DataError(f"No cache of split {split!r} of task {name!r}: {path} is missing"
                    + (f" (cached splits: {splits})" if splits else "") + ". Build it with:\n  "
                    + CACHE_CMD.format(task=name, data_dir=data_dir))
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f"Cache manifest {path} is unreadable ({e}). Rebuild it with:\n  "
                    + rebuild_cmd(name, data_dir)) from None
  if manifest.get("format") != FORMAT:
    raise DataError(f"Cache {path} has format {manifest.get('format')!r}; this version reads "
                    f"format {FORMAT}. Rebuild it with:\n  " + rebuild_cmd(name, data_dir))
  return manifest


def check_vocabulary(manifest: Mapping, name: str, data_dir: str) -> None:
  """Refuses a cache whose token ids came from another vocabulary than the task's now."""
  path = registry.vocab_path(name, data_dir)
  if not os.path.isfile(path):
    return  # nothing to compare; training itself will ask for the vocabulary
  sha = file_sha256(path)
  if sha != manifest["vocabulary"]["sha256"]:
    raise DataError(
        f"Cache of {name!r} split {manifest['split']!r} is stale: it was tokenized with a "
        f"vocabulary of sha256 {manifest['vocabulary']['sha256'][:12]}..., {path} has "
        f"{sha[:12]}... now. Rebuild it with:\n  " + rebuild_cmd(name, data_dir))


def open_split(name: str, split: str, data_dir: str) -> tuple[dict, list[str], np.ndarray]:
  """(manifest, shard paths, lengths [examples, features]) of a cached split, checked.

  Raises:
    DataError: no cache, a stale vocabulary, or a missing / corrupt shard or lengths file;
      the message names the file and the command that rebuilds the cache.
  """
  manifest = read_manifest(name, split, data_dir)
  check_vocabulary(manifest, name, data_dir)
  root = split_dir(name, split, data_dir)
  rebuild = "Rebuild the cache with:\n  " + rebuild_cmd(name, data_dir)
  lengths_path = os.path.join(root, LENGTHS)
  try:
    lengths = np.load(lengths_path)
  except (OSError, ValueError) as e:
    raise DataError(f"Cache file {lengths_path} is missing or corrupt ({e}). {rebuild}") from None
  if lengths.shape != (manifest["num_examples"], len(manifest["features"])):
    raise DataError(f"Cache file {lengths_path} has shape {lengths.shape}, the manifest says "
                    f"({manifest['num_examples']}, {len(manifest['features'])}). {rebuild}")
  from array_record.python.array_record_module import ArrayRecordReader

  paths = []
  for shard in manifest["shards"]:
    path = os.path.join(root, shard["file"])
    try:
      reader = ArrayRecordReader(path)
      count = reader.num_records()
      reader.close()
    except (OSError, RuntimeError, ValueError) as e:
      raise DataError(f"Cache shard {path} is missing or corrupt ({e}). {rebuild}") from None
    if count != shard["num_records"] or os.path.getsize(path) != shard["bytes"]:
      raise DataError(f"Cache shard {path} holds {count} records in {os.path.getsize(path)} "
                      f"bytes; the manifest says {shard['num_records']} in {shard['bytes']}. "
                      f"{rebuild}")
    paths.append(path)
  return manifest, paths, lengths
