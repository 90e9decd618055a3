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
from collections.abc import Sequence

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import cache_copy, cache_manifest, mixtures, records, registry, tasks
from synthesizer_jax.data.registry import DataError

RECORDS_PER_SHARD = 50_000


def _write_split(name: str, split: str, data_dir: str, task, out_dir: paths.Path,
                 records_per_shard: int) -> dict:
  """Writes the shards and lengths of one split into local directory `out_dir`; returns the
  manifest body."""
  from array_record.python.array_record_module import ArrayRecordWriter

  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                        try_in_mem_cache=False)
  names, ranks = cache_manifest.feature_specs(name, split, task, ds.element_spec)
  shards, lengths, writer = [], [], None
  sizes = cache_manifest.vocab_sizes(task)
  for i, ex in enumerate(ds.as_numpy_iterator()):
    cache_manifest.check_ids(ex, sizes, f"{i} of {name}/{split}", name, data_dir)
    if i % records_per_shard == 0:
      if writer:
        writer.close()
      shards.append({"file": f"records-{len(shards):05d}.array_record"})
      writer = ArrayRecordWriter(os.fspath(out_dir / shards[-1]["file"]), "group_size:1")
    writer.write(records.encode(ex, names))
    lengths.append(cache_manifest.row(ex, names))
  if writer:
    writer.close()
  if not lengths:
    raise cache_manifest.empty_split(name, split)
  lengths = np.asarray(lengths, np.int32)
  np.save(os.fspath(out_dir / records.LENGTHS), lengths)
  for j, shard in enumerate(shards):
    shard["num_records"] = int(min(records_per_shard, len(lengths) - j * records_per_shard))
    shard["bytes"] = (out_dir / shard["file"]).stat().length
  return cache_manifest.body(lengths, names, ranks, shards,
                             records.file_sha256(out_dir / records.LENGTHS))


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
  kept, target = cache_manifest.plan(name, split, data_dir, out_dir, rebuild=rebuild,
                                     refresh=refresh, log=log)
  if kept is not None:
    return kept
  staging = target.staging()
  try:
    staging.rmtree(missing_ok=True)
    staging.mkdir(parents=True)
    task = tasks.seqio_task(name, target.data_dir)
    counts = _write_split(name, split, target.data_dir, task, staging, records_per_shard)
    manifest = cache_manifest.manifest(target, counts)
    (staging / records.MANIFEST).write_text(json.dumps(manifest, indent=1))
    if target.source:  # before the manifest lands: a cache is never there without its vocabulary
      cache_copy.copy_vocab(name, target.data_dir, target.out_dir, overwrite=True)
    if target.remote:
      cache_copy.publish_split(staging, target.final, manifest)
    else:
      cache_manifest.swap(staging, target.final)
  finally:
    if target.remote:
      staging.rmtree(missing_ok=True)
  cache_manifest.log_cached(target, manifest, log)
  return manifest


def cache_task(name: str, data_dir: str | None = None, splits: Sequence[str] | None = None, *,
               out_dir: str | None = None, rebuild: bool = False, refresh: bool = False,
               records_per_shard: int = RECORDS_PER_SHARD, log=print) -> dict[str, dict]:
  """Caches `splits` (default: every split) of task `name` into `out_dir` (default:
  `data_dir`); returns {split: manifest}. A task read through another's cache
  (`registry.cached_task`: span corruption, applied after the cache) caches that one."""
  data_dir, name = cache_manifest.local_data_dir(data_dir), registry.cached_task(name)
  names = list(splits) if splits else list(tasks.seqio_task(name, data_dir).splits)
  return {split: cache_split(name, split, data_dir, out_dir=out_dir, rebuild=rebuild,
                             refresh=refresh, records_per_shard=records_per_shard, log=log)
          for split in names}


def parser(description: str) -> argparse.ArgumentParser:
  """The cache command's arguments (`beam_cache.py` adds its own)."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--task", nargs="+", required=True,
                      help="task name(s) to cache; a mixture caches each of its members")
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
  return parser


def cli(action) -> int:
  """Runs `action()`; a DataError or OSError is one line on stderr and exit status 2."""
  try:
    action()
  except (DataError, OSError) as e:  # OSError: a bucket that is missing or out of reach
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


def main(argv=None) -> int:
  args = parser(__doc__.splitlines()[0]).parse_args(argv)
  return cli(lambda: [cache_task(name, args.data_dir, args.splits, out_dir=args.out_dir,
                                 rebuild=args.rebuild, records_per_shard=args.records_per_shard)
                      for name in mixtures.expand(args.task)])


if __name__ == "__main__":
  sys.exit(main())
