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

The reader trusts nothing it has not checked: the manifest's structure, the cache's
freshness (`check_fresh`, the cache command's own rule), `lengths.npy` against the sha256
in the manifest (older caches: its totals against the manifest's token counts), and each
record's header against its row of `lengths.npy` as it decodes it.

`data_dir` may be a bucket (gs://B/data, written by `cache.py --out_dir`): every file here is
read through `paths` (etils.epath), and the shards through ArrayRecord's own GCS reader.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import registry
from synthesizer_jax.data.registry import DataError

FORMAT = 1
MANIFEST = "manifest.json"
LENGTHS = "lengths.npy"
LENGTHS_SHA256 = "lengths_sha256"  # manifest key: the sha256 of lengths.npy
CACHE_CMD = "python -m synthesizer_jax.data.cache --task {task} --data_dir {data_dir}"
_INT = np.dtype("<i4")


def split_dir(name: str, split: str, data_dir: str | None = None) -> str:
  """The cache directory of one split of task `name`."""
  return os.path.join(data_dir or registry.default_data_dir(), "records", name, split)


def manifest_path(name: str, split: str, data_dir: str | None = None) -> str:
  return os.path.join(split_dir(name, split, data_dir), MANIFEST)


def has_cache(name: str, data_dir: str | None = None, split: str = "train") -> bool:
  """Whether a finished cache of `split` of task `name` (or of the task whose cache it reads,
  `registry.cached_task`) exists under `data_dir`; for a mixture (`mixtures.py`), of every
  member."""
  from synthesizer_jax.data import mixtures

  if name in mixtures.MIXTURES:
    return all(has_cache(t, data_dir, split) for t in mixtures.mixture(name).tasks)
  return paths.as_path(manifest_path(registry.cached_task(name), split, data_dir)).is_file()


def cache_cmd(name: str, data_dir: str, source: str | None = None) -> str:
  """The command that writes the cache under `data_dir`: built from `source`, the prepared
  data directory, when the cache lives elsewhere (a bucket is never a prepared data dir)."""
  if source is None and not paths.is_remote(data_dir):
    return CACHE_CMD.format(task=name, data_dir=data_dir)
  return (CACHE_CMD.format(task=name, data_dir=source or "PREPARED_DATA_DIR")
          + f" --out_dir {data_dir}")


def rebuild_cmd(name: str, data_dir: str, source: str | None = None) -> str:
  return cache_cmd(name, data_dir, source) + " --rebuild"


def check_bucket_data(name: str, data_dir: str, pipeline: str,
                      splits: Sequence[str] = ("train", "validation")) -> None:
  """Refuses before a run's first step what cannot read a data dir in a bucket: it holds
  task caches (`cache.py --out_dir`), read by Grain; seqio reads the prepared corpus files
  from local disk. A local data dir passes (its problems are found where they are read)."""
  if not paths.is_remote(data_dir):
    return
  missing = [s for s in splits if pipeline == "seqio" or not has_cache(name, data_dir, s)]
  if not missing:
    return
  why = ("data_pipeline='seqio' reads prepared corpus files from local disk" if pipeline ==
         "seqio" else f"split(s) {missing} of task {name!r} have no cache there")
  raise DataError(f"data_dir {data_dir} is a bucket, which a run reads through the task "
                  f"cache only (data_pipeline 'grain' or 'auto'), and {why}. Cache the task "
                  f"into it:\n  {cache_cmd(name, data_dir)}\nor train from local disk: a "
                  "gcsfuse mount of the bucket or a copy of the cache (python -m "
                  f"synthesizer_jax.data.cache_copy --task {name} --src {data_dir} --dst DIR), "
                  "passed as data_dir.")


def file_sha256(path: paths.PathLike) -> str:
  """Hex sha256 of a file's content, read in 1 MiB blocks."""
  h = hashlib.sha256()
  with paths.as_path(path).open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def encode(example: Mapping[str, np.ndarray], names: Sequence[str]) -> bytes:
  """One example as a record (see the module docstring)."""
  arrays = [np.atleast_1d(np.asarray(example[n])).astype(_INT) for n in names]
  header = np.array([a.size for a in arrays], _INT)
  return header.tobytes() + b"".join(a.tobytes() for a in arrays)


def decode(record: bytes, names: Sequence[str], ranks: Sequence[int],
           lengths: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """A record back to {feature: int32 array} (rank-0 features as NumPy scalars); ValueError
  when its header differs from `lengths` (its row of lengths.npy), when given."""
  buf = np.frombuffer(record, _INT)
  n = len(names)
  # Bytes, not np.array_equal: a tenth of the time, on the reader's hot path.
  if lengths is not None and record[:4 * n] != np.asarray(lengths, _INT).tobytes():
    raise ValueError(f"its header says lengths {buf[:n].tolist()}, {LENGTHS} says "
                     f"{np.asarray(lengths).tolist()}")
  ends = n + np.cumsum(buf[:n])
  if len(buf) != (ends[-1] if n else 0):
    raise ValueError(f"record of {len(buf)} ints does not match its header {buf[:n].tolist()}")
  out, start = {}, n
  for name, rank, end in zip(names, ranks, ends, strict=True):
    value = buf[start:end].astype(np.int32)
    out[name] = value[0] if rank == 0 else value
    start = end
  return out


def read_manifest(name: str, split: str, data_dir: str,
                  features: Mapping[str, int] | None = None) -> dict:
  """The manifest of a cached split, checked; DataError with the cache command if there is
  none, and with the rebuild command if it is unreadable, of another format or damaged
  (`features`: {name: rank} the reader needs, e.g. {"inputs": 1, "label": 0})."""
  path = manifest_path(name, split, data_dir)
  if not paths.as_path(path).is_file():
    where = paths.as_path(split_dir(name, "", data_dir))
    splits = sorted(p.name for p in where.iterdir()) if where.is_dir() else []
    raise DataError(f"No cache of split {split!r} of task {name!r}: {path} is missing"
                    + (f" (cached splits: {splits})" if splits else "") + ". Build it with:\n  "
                    + cache_cmd(name, data_dir))
  try:
    manifest = json.loads(paths.as_path(path).read_text())
  except (OSError, ValueError) as e:
    raise DataError(f"Cache manifest {path} is unreadable ({e}). Rebuild it with:\n  "
                    + rebuild_cmd(name, data_dir)) from None
  fmt = manifest.get("format") if isinstance(manifest, dict) else None
  if fmt != FORMAT:
    raise DataError(f"Cache {path} has format {fmt!r}; this version reads format {FORMAT}. "
                    "Rebuild it with:\n  " + rebuild_cmd(name, data_dir))
  problems = _manifest_problems(manifest, name, split, features)
  if problems:
    raise DataError(f"Cache manifest {path} is damaged or hand-edited: " + "; ".join(problems)
                    + ". Rebuild the cache with:\n  " + rebuild_cmd(name, data_dir))
  return manifest


def _manifest_problems(m: dict, name: str, split: str, need: Mapping[str, int] | None) -> list:
  """What is wrong with a manifest's own structure (what the writer never produces)."""
  out = []
  if (m.get("task"), m.get("split")) != (name, split):
    out.append(f"it is the manifest of {m.get('task')!r} split {m.get('split')!r}")
  feats, n, shards = m.get("features"), m.get("num_examples"), m.get("shards")
  feats = feats if isinstance(feats, dict) else {}
  ranks = {k: f.get("rank") for k, f in feats.items() if isinstance(f, dict)}
  if not ranks or len(ranks) != len(feats) or not set(ranks.values()) <= {0, 1}:
    out.append(f"features {m.get('features')!r} are not {{name: {{'rank': 0 or 1}}}}")
  elif need is not None and any(ranks.get(k) != r for k, r in need.items()):
    out.append(f"lists features {ranks} (name: rank); task {name!r} needs {dict(need)}")
  if not isinstance(n, int) or n < 1:
    out.append(f"num_examples={n!r}: a cached split holds at least one example (the cache "
               "command refuses an empty split)")
  keys = {"file", "num_records", "bytes"}
  if not isinstance(shards, list) or not shards or not all(
      isinstance(s, dict) and keys <= set(s) and isinstance(s["num_records"], int)
      for s in shards):
    out.append(f"shards {shards!r} are not a non-empty list of {sorted(keys)}")
  elif isinstance(n, int) and sum(s["num_records"] for s in shards) != n:
    out.append(f"its shards hold {sum(s['num_records'] for s in shards)} records, num_examples "
               f"says {n}")
  tokens = m.get("num_tokens")
  if ranks and (not isinstance(tokens, dict) or set(tokens) != {k for k, r in ranks.items() if r}):
    out.append(f"num_tokens {tokens!r} does not count the tokens of each rank-1 feature")
  return out


def fingerprint(name: str, split: str, data_dir: str, corpus_file: str | None = None, *,
                present_only: bool = False) -> dict:
  """What the cached examples of a split depend on: the vocabulary and the source corpus.

  `corpus_file` is an offline task's prepared split file. With `present_only` (the reader)
  a part whose files this host does not hold is None and not compared: a training host may
  hold only the cache and the vocabulary (docs/data.md). The cache command builds from those
  files, so it always has both.
  """
  vpath = registry.vocab_path(name, data_dir)
  vocab = corpus = None
  if not present_only or paths.as_path(vpath).is_file():
    vocab = {"path": _relative(vpath, data_dir), "sha256": file_sha256(vpath)}
  s = registry.spec(name)
  meta = paths.as_path(registry.task_dir(name, data_dir)) / registry.META
  if s.source == "tfds":
    corpus = {"tfds_name": s.tfds_name, "tfds_split": dict(s.split_map)[split]}
  elif corpus_file and (not present_only
                        or (paths.as_path(corpus_file).is_file() and meta.is_file())):
    # prepare's meta.json names the source packages but not their versions; the split
    # file's hash pins the text that went in.
    m = registry.read_meta(name, data_dir)
    corpus = {"source": m.get("source"), "build_version": m.get("version"),
              "file": _relative(corpus_file, data_dir), "sha256": file_sha256(corpus_file)}
  return {"vocabulary": vocab, "corpus": corpus}


def _relative(path: str, data_dir: str) -> str:
  """`path` relative to `data_dir`, as the manifest stores it (the same in a bucket)."""
  return os.fspath(paths.as_path(path).relative_to(paths.as_path(data_dir)))


def stale_reasons(manifest: Mapping, current: Mapping) -> list[str]:
  """How a cached split differs from what it would be built from now ([] = up to date);
  a part of `current` that is None is not compared."""
  out = []
  if manifest.get("format") != FORMAT:
    out.append(f"record format {manifest.get('format')!r}, this version writes {FORMAT}")
  vocab, cached = current["vocabulary"], manifest.get("vocabulary") or {}
  if vocab is not None and cached.get("sha256") != vocab["sha256"]:
    out.append(f"vocabulary {vocab['path']} changed (sha256 {cached.get('sha256', '?')[:12]}... "
               f"cached, {vocab['sha256'][:12]}... now)")
  if current["corpus"] is not None and manifest.get("corpus") != current["corpus"]:
    out.append(f"corpus changed: {manifest.get('corpus')} cached, {current['corpus']} now")
  return out


def stale_error(name: str, split: str, data_dir: str, reasons: Sequence[str],
                source: str | None = None) -> DataError:
  """The error of a stale cache, the same from the cache command and the reader (`source`:
  the prepared data dir, when the cache is written elsewhere)."""
  return DataError(f"The cache {split_dir(name, split, data_dir)} is stale: " + "; ".join(reasons)
                   + ". Rebuild it with:\n  " + rebuild_cmd(name, data_dir, source))


def check_fresh(manifest: Mapping, name: str, split: str, data_dir: str) -> None:
  """Refuses a stale cache as the cache command does (what this host holds is compared)."""
  corpus = manifest.get("corpus") or {}
  path = os.path.join(data_dir, corpus["file"]) if corpus.get("file") else None
  reasons = stale_reasons(manifest, fingerprint(name, split, data_dir, path, present_only=True))
  if reasons:
    raise stale_error(name, split, data_dir, reasons)


def _load_lengths(path: str, manifest: Mapping, rebuild: str) -> np.ndarray:
  """lengths.npy, checked against its sha256 in the manifest (caches written before the
  checksum: its shape, and its totals against the manifest's token counts)."""
  try:
    raw = paths.as_path(path).read_bytes()
    lengths = np.load(io.BytesIO(raw))
  except (OSError, ValueError) as e:
    raise DataError(f"Cache file {path} is missing or corrupt ({e}). {rebuild}") from None
  feats, want = manifest["features"], manifest.get(LENGTHS_SHA256)
  shape = (manifest["num_examples"], len(feats))
  sha = hashlib.sha256(raw).hexdigest()
  problem = None
  if want and sha != want:
    problem = f"has sha256 {sha[:12]}..., the manifest says {want[:12]}..."
  elif lengths.shape != shape or lengths.dtype.kind not in "iu":
    problem = f"holds {lengths.dtype} {lengths.shape}, the manifest says int32 {shape}"
  else:
    for j, (key, f) in enumerate(feats.items()):
      total, col = manifest["num_tokens"].get(key), lengths[:, j].astype(np.int64)
      if col.min() < 0 or (f["rank"] == 0 and col.max() != 1):
        problem = f"holds lengths {col.min()}..{col.max()} for feature {key!r} (rank {f['rank']})"
      elif f["rank"] and int(col.sum()) != total:
        problem = f"sums to {int(col.sum()):,} tokens of {key!r}, the manifest says {total:,}"
      if problem:
        break
  if problem:
    raise DataError(f"Cache file {path} {problem}: it is damaged, and reading it would give "
                    f"other examples than were cached. {rebuild}")
  return lengths


def open_split(name: str, split: str, data_dir: str, features: Mapping[str, int] | None = None
               ) -> tuple[dict, list[str], np.ndarray]:
  """(manifest, shard paths, lengths [examples, features]) of a cached split, checked.

  `features`: {name: rank} the reader needs (checked against the manifest).

  Raises:
    DataError: no cache, a stale cache (another vocabulary or corpus, as the cache command
      decides), a damaged manifest, or a missing / corrupt shard or lengths file; the
      message names the file and the command that rebuilds the cache.
  """
  manifest = read_manifest(name, split, data_dir, features)
  check_fresh(manifest, name, split, data_dir)
  root = split_dir(name, split, data_dir)
  rebuild = "Rebuild the cache with:\n  " + rebuild_cmd(name, data_dir)
  lengths = _load_lengths(os.path.join(root, LENGTHS), manifest, rebuild)
  from array_record.python.array_record_module import ArrayRecordReader

  files = []
  for shard in manifest["shards"]:
    path = os.path.join(root, shard["file"])
    try:  # the size first: ArrayRecord's GCS reader counts a missing object as 0 records
      size = paths.as_path(path).stat().length
    except FileNotFoundError:
      raise DataError(f"Cache shard {path} is missing. {rebuild}") from None
    try:
      reader = ArrayRecordReader(path)
      count = reader.num_records()
      reader.close()
    except (OSError, RuntimeError, ValueError) as e:
      raise DataError(f"Cache shard {path} is missing or corrupt ({e}). {rebuild}") from None
    if count != shard["num_records"] or size != shard["bytes"]:
      raise DataError(f"Cache shard {path} holds {count} records in {size} bytes; the "
                      f"manifest says {shard['num_records']} in {shard['bytes']}. {rebuild}")
    files.append(path)
  return manifest, files, lengths
