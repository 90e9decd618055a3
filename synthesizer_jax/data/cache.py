"""Caches a task's preprocessed examples as ArrayRecord, for training without TensorFlow.

    python -m synthesizer_jax.data.cache --task offline_lm --data_dir data [--rebuild]
    python -m synthesizer_jax.data.cache --task offline_lm --data_dir data --out_dir gs://B/data

or `synthesizer_jax.data.cache_task("offline_lm", "data")`. Runs the task's seqio source and
preprocessors once (tokenize, task preprocessors, EOS; no truncation, no packing: lengths
and packing are chosen at train time) and writes every split in the format of `records.py`.
An up-to-date cache is kept as is; one built from another vocabulary or another corpus
(the prepared split file's sha256, or the TFDS name and version) is refused until
`--rebuild` is given, and the reader refuses it by the same rule (`records.stale_reasons`).
`--out_dir` (default: the data dir) puts the cache elsewhere, e.g. in a bucket: the split is
built in a local staging directory and uploaded (ArrayRecord cannot write gs://), its
manifest last (`cache_copy.publish_split`), with the task's vocabulary beside it, so the
out_dir is a data_dir a run can train from.
Needs TensorFlow and seqio (`pip install '.[data]'`); reading the cache
(`grain_pipeline.py`) needs neither.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import cache_copy, records, registry, tasks
from synthesizer_jax.data.registry import DataError, spec

RECORDS_PER_SHARD = 50_000


def _write_split(name: str, split: str, data_dir: str, task, out_dir: paths.Path,
                 records_per_shard: int) -> dict:
  """Writes the shards and lengths of one split into local directory `out_dir`; returns the
  manifest body."""
  from array_record.python.array_record_module import ArrayRecordWriter

  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                        try_in_mem_cache=False)
  # Token ids and labels; seqio's "*_pretokenized" strings stay behind.
  names = sorted(n for n, v in ds.element_spec.items() if v.dtype.name != "string")
  specs = {n: ds.element_spec[n] for n in names}
  bad = {n: str(v.dtype.name) for n, v in specs.items() if not v.dtype.is_integer}
  if bad or set(task.output_features) - set(names):
    raise DataError(f"Task {name!r} gives features {dict(ds.element_spec)}; only integer token "
                    f"ids and labels, including {sorted(task.output_features)}, can be cached.")
  shards, lengths, writer = [], [], None
  tokens = dict.fromkeys(names, 0)
  vocab_size = {k: f.vocabulary.vocab_size for k, f in task.output_features.items()}
  for i, ex in enumerate(ds.as_numpy_iterator()):
    for key, size in vocab_size.items():  # once, here, so training never meets a bad id
      ids = np.asarray(ex[key])
      if ids.size and (ids.min() < 0 or ids.max() >= size):
        raise DataError(f"Example {i} of {name}/{split}: feature {key!r} holds token id "
                        f"{int(ids.max() if ids.max() >= size else ids.min())}, outside the "
                        f"vocabulary [0, {size}); rebuild the vocabulary and the task with "
                        f"`{registry.PREPARE_CMD.format(data_dir=data_dir, task=name)}`.")
    if i % records_per_shard == 0:
      if writer:
        writer.close()
      shards.append({"file": f"records-{len(shards):05d}.array_record"})
      writer = ArrayRecordWriter(os.fspath(out_dir / shards[-1]["file"]), "group_size:1")
    writer.write(records.encode(ex, names))
    row = [int(np.size(ex[n])) for n in names]
    lengths.append(row)
    for n, k in zip(names, row, strict=True):
      tokens[n] += k if specs[n].shape.rank else 0
  if writer:
    writer.close()
  if not lengths:
    raise DataError(f"Split {split!r} of task {name!r} is empty; nothing to cache.")
  lengths = np.asarray(lengths, np.int32)
  np.save(os.fspath(out_dir / records.LENGTHS), lengths)
  lengths_sha = records.file_sha256(out_dir / records.LENGTHS)
  for j, shard in enumerate(shards):
    shard["num_records"] = int(min(records_per_shard, len(lengths) - j * records_per_shard))
    shard["bytes"] = (out_dir / shard["file"]).stat().length
  return {"num_examples": len(lengths),
          "num_tokens": {n: t for n, t in tokens.items() if specs[n].shape.rank},
          "features": {n: {"dtype": "int32", "rank": specs[n].shape.rank} for n in names},
          "shards": shards, records.LENGTHS_SHA256: lengths_sha}


def _local_data_dir(data_dir: str | None) -> str:
  data_dir = data_dir or registry.default_data_dir()
  if paths.is_remote(data_dir):
    raise DataError(f"--data_dir {data_dir} is a bucket; a cache is built from a prepared data "
                    "directory on local disk (seqio reads its corpus files there). Pass that "
                    f"directory as --data_dir and the bucket as --out_dir {data_dir}.")
  return os.fspath(paths.as_path(data_dir))


def _stale(path: paths.Path, current: dict) -> tuple[dict | None, list[str]]:
  """(the manifest at `path`, how it is stale: [] = up to date)."""
  try:
    manifest = json.loads(path.read_text())
  except ValueError as e:
    return None, [f"its manifest {path} is unreadable ({e})"]
  if not isinstance(manifest, dict):
    return None, [f"its manifest {path} is not a JSON object"]
  return manifest, records.stale_reasons(manifest, current)


def cache_split(name: str, split: str, data_dir: str | None = None, *,
                out_dir: str | None = None, rebuild: bool = False, refresh: bool = False,
                records_per_shard: int = RECORDS_PER_SHARD, log=print) -> dict:
  """Caches one split of task `name` (see the module docstring); returns its manifest.

  `out_dir` (default: `data_dir`) is where the cache and, when it differs, a copy of the
  task's vocabulary go: a local directory or a bucket (gs://B/data). `rebuild` rebuilds the
  cache in any case; `refresh` rebuilds it only when it is stale (`prepare --cache` does
  this: it has just rebuilt the source the cache was made from).

  Raises:
    DataError: the task is not prepared, `data_dir` is a bucket, or the cache is stale and
      neither `rebuild` nor `refresh` is set.
  """
  import synthesizer_jax

  data_dir = _local_data_dir(data_dir)
  out_dir = os.fspath(paths.check_dir(out_dir, "out_dir")) if out_dir else data_dir
  source = None if out_dir == data_dir else data_dir  # the vocabulary is copied to out_dir
  task = tasks.seqio_task(name, data_dir)
  if split not in task.splits:
    raise DataError(f"Task {name!r} has no split {split!r}; it has {list(task.splits)}.")
  corpus = None if spec(name).source == "tfds" else tasks.split_file(name, split, data_dir)
  current = records.fingerprint(name, split, data_dir, corpus)
  path = paths.as_path(records.manifest_path(name, split, out_dir))
  if path.is_file() and not rebuild:
    manifest, reasons = _stale(path, current)
    if not reasons:
      if source and cache_copy.copy_vocab(name, data_dir, out_dir, overwrite=True):
        log(f"{name}: copied its vocabulary to {registry.vocab_path(name, out_dir)}")
      log(f"{name}/{split}: cache up to date ({manifest['num_examples']:,} examples)")
      return manifest
    if not refresh:
      raise records.stale_error(name, split, out_dir, reasons, source)
    log(f"{name}/{split}: rebuilding the stale cache ({'; '.join(reasons)})")
  final = paths.as_path(records.split_dir(name, split, out_dir))
  remote = paths.is_remote(out_dir)
  # Built on local disk: beside the cache (swapped in whole), or for a bucket in a temporary
  # directory it is uploaded from.
  staging = (paths.as_path(tempfile.mkdtemp(prefix=f"sj-cache-{name}-{split}-")) if remote
             else final.parent / (final.name + ".partial"))
  try:
    staging.rmtree(missing_ok=True)
    staging.mkdir(parents=True)
    body = _write_split(name, split, data_dir, task, staging, records_per_shard)
    s = spec(name)
    manifest = {"format": records.FORMAT, "task": name, "split": split, "shape": s.shape,
                **current, **body, "library_version": synthesizer_jax.__version__,
                "record_layout": "int32 LE: F feature lengths, then each feature's tokens"}
    (staging / records.MANIFEST).write_text(json.dumps(manifest, indent=1))
    if source:  # before the manifest lands: a cache is never there without its vocabulary
      cache_copy.copy_vocab(name, data_dir, out_dir, overwrite=True)
    if remote:
      cache_copy.publish_split(staging, final, manifest)
    else:
      _swap(staging, final)
  finally:
    if remote:
      staging.rmtree(missing_ok=True)
  total = sum(manifest["num_tokens"].values())
  log(f"{name}/{split}: cached {manifest['num_examples']:,} examples, {total:,} tokens in "
      f"{len(manifest['shards'])} shard(s) under {final}")
  return manifest


def _swap(partial: paths.Path, final: paths.Path) -> None:
  """Swaps in the finished local directory; a crash before this leaves the old cache (or
  none), never a mix."""
  old = final.parent / (final.name + ".old")
  old.rmtree(missing_ok=True)
  if final.is_dir():
    final.replace(old)
  partial.replace(final)
  old.rmtree(missing_ok=True)


def cache_task(name: str, data_dir: str | None = None, splits: Sequence[str] | None = None, *,
               out_dir: str | None = None, rebuild: bool = False, refresh: bool = False,
               records_per_shard: int = RECORDS_PER_SHARD, log=print) -> dict[str, dict]:
  """Caches `splits` (default: every split) of task `name` into `out_dir` (default:
  `data_dir`); returns {split: manifest}. A task read through another's cache
  (`registry.cached_task`: span corruption, applied after the cache) caches that one."""
  data_dir, name = _local_data_dir(data_dir), registry.cached_task(name)
  names = list(splits) if splits else list(tasks.seqio_task(name, data_dir).splits)
  return {split: cache_split(name, split, data_dir, out_dir=out_dir, rebuild=rebuild,
                             refresh=refresh, records_per_shard=records_per_shard, log=log)
          for split in names}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", nargs="+", required=True, help="task name(s) to cache")
  parser.add_argument("--data_dir", default=registry.default_data_dir(),
                      help=f"the prepared data directory (default: ${registry.ENV_DATA_DIR} or "
                           "./data); the cache goes to DATA_DIR/records")
  parser.add_argument("--out_dir", default=None,
                      help="where the cache goes (default: DATA_DIR): a directory or a bucket, "
                           "gs://B/data; the task's vocabulary is copied beside it, so training "
                           "can take it as --config.data_dir")
  parser.add_argument("--splits", nargs="*", default=None, help="default: every split")
  parser.add_argument("--rebuild", action="store_true",
                      help="rebuild caches that exist (needed when a cache is stale)")
  parser.add_argument("--records_per_shard", type=int, default=RECORDS_PER_SHARD)
  args = parser.parse_args(argv)
  try:
    for name in args.task:
      cache_task(name, args.data_dir, args.splits, out_dir=args.out_dir, rebuild=args.rebuild,
                 records_per_shard=args.records_per_shard)
  except (DataError, OSError) as e:  # OSError: a bucket that is missing or out of reach
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
