"""Builds task caches with Apache Beam: the records and manifest of `cache.py`, by many workers.

    python -m synthesizer_jax.data.beam_cache --task offline_summarize --data_dir data \\
        [--out_dir gs://B/data] [--splits train] [--num_shards 16] [--rebuild] [BEAM OPTIONS]

BEAM OPTIONS are Beam's own (`--runner DataflowRunner --project P ...`, docs/data.md); without
`--runner` it runs on this machine: DirectRunner, `--direct_running_mode multi_processing
--direct_num_workers 0` (one worker process per core). Needs `pip install '.[data,beam]'`.

One pipeline builds every (task, split) asked for; per split:
1. read: `--num_shards` shards of the task's seqio source (`seqio.ShardInfo(i, n)`), each
   through the task's preprocessors as `cache.py` reads the whole split (no truncation, no
   packing), on any worker; every token id is checked against the vocabulary.
2. place: each example's position in the split. seqio shards a source of fewer files than
   shards by example (shard i holds source examples i, i + n, ...) and the positions
   interleave the shards back, so the records come in the single-process writer's order
   whenever the preprocessors map one source example to one example, as every task here does
   at sequence_length=None; a source of at least n files is sharded by file, and its records
   come shard after shard (the same examples; another order than one process reads them in).
3. write: records grouped by `position // --records_per_shard` into ArrayRecord shards named
   and filled as `cache.py` fills them (a bucket: written locally, then uploaded).
4. finish (one worker, after every shard): lengths.npy, then the manifest, last. On local disk
   the split is built beside the cache and swapped in whole; in a bucket the old cache is
   removed first, as `cache.py --out_dir` does. A pipeline that fails leaves no manifest,
   hence no cache the reader accepts. Stale caches follow `cache_manifest.plan`.
A DoFn's retry (Dataflow retries a failed work item) rewrites the same files.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import cache, cache_copy, cache_manifest, records, registry, tasks
from synthesizer_jax.data.mixtures import expand
from synthesizer_jax.data.registry import DataError
from synthesizer_jax.data.tfenv import import_seqio

DEFAULT_SHARDS = 16  # input shards of a one-file source (a many-file source: one per file)
#: A marker path: the first shard write that finds it absent creates it, then fails (the
#: fault test: the runner's retry, or a rerun, must still produce the whole cache).
FAIL_ONCE_ENV = "SJ_BEAM_FAIL_ONCE"
LOCAL_RUNNER = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                "--direct_num_workers=0"]


def _import_beam():
  try:
    import apache_beam as beam
  except ImportError as e:
    raise ImportError("Building a cache with Beam needs apache-beam: "
                      "pip install -e '.[data,beam]'") from e
  return beam


class _Split:
  """What the workers need to build one split (plain values: pickled to every worker)."""

  def __init__(self, target: cache_manifest.Target, names, ranks, num_shards, by_file,
               records_per_shard, staging):
    self.name, self.split, self.data_dir = target.name, target.split, target.data_dir
    self.names, self.ranks, self.num_shards, self.by_file = names, ranks, num_shards, by_file
    self.records_per_shard, self.staging, self.remote = records_per_shard, staging, target.remote
    self.final = os.fspath(target.final)
    self.target = target


def _read_shard(s: _Split, index: int):
  """(index, j, record, lengths row) of each example of input shard `index`."""
  seqio = import_seqio()
  task = tasks.seqio_task(s.name, s.data_dir)
  ds = task.get_dataset(sequence_length=None, split=s.split, shuffle=False, num_epochs=1,
                        shard_info=seqio.ShardInfo(index, s.num_shards), try_in_mem_cache=False)
  sizes = cache_manifest.vocab_sizes(task)
  for j, ex in enumerate(ds.as_numpy_iterator()):
    where = f"{j} of shard {index}/{s.num_shards} of {s.name}/{s.split}"
    cache_manifest.check_ids(ex, sizes, where, s.name, s.data_dir)
    yield index, j, records.encode(ex, s.names), cache_manifest.row(ex, s.names)


class _Place:
  """(output shard, (position, record, row)) from the per-shard counts (a side input)."""

  def __init__(self, s: _Split):
    self.s, self.table = s, None

  def __call__(self, example, counts):
    i, j, record, row = example
    if self.table is None:
      c = np.array([counts.get(k, 0) for k in range(self.s.num_shards)], np.int64)
      self.table = (c, np.concatenate([[0], np.cumsum(c)]))
    c, offsets = self.table
    if self.s.by_file:  # shard after shard
      pos = int(offsets[i]) + j
    else:  # round: source example j * n + i, the j-th of shard i
      pos = int(np.minimum(c, j).sum() + np.count_nonzero(c[:i] > j))
    return pos // self.s.records_per_shard, (pos, record, row)


def _write_shard(s: _Split, item) -> dict:
  """Writes one output shard; its manifest entry with its lengths rows."""
  from array_record.python.array_record_module import ArrayRecordWriter

  index, group = item
  group = sorted(group, key=lambda e: e[0])
  first = index * s.records_per_shard
  if [e[0] for e in group] != list(range(first, first + len(group))):
    raise RuntimeError(f"shard {index} of {s.name}/{s.split} got positions "
                       f"{[e[0] for e in group][:5]}...; expected {first}... in a row")
  name = f"records-{index:05d}.array_record"
  local = tempfile.mkdtemp(prefix="sj-beam-") if s.remote else s.staging
  path = os.path.join(local, name)
  writer = ArrayRecordWriter(path, "group_size:1")
  for _, record, _ in group:
    writer.write(record)
  writer.close()
  size = os.path.getsize(path)
  if s.remote:
    cache_copy.copy_file(path, paths.as_path(s.staging) / name)
    os.remove(path)
    os.rmdir(local)
  _maybe_fail(f"after writing {name} of {s.name}/{s.split}")
  return {"index": index, "file": name, "num_records": len(group), "bytes": size,
          "lengths": np.asarray([e[2] for e in group], np.int32).reshape(len(group), -1)}


def _maybe_fail(where: str) -> None:
  marker = os.environ.get(FAIL_ONCE_ENV)
  if marker and not os.path.exists(marker):
    with open(marker, "w") as f:
      f.write(where)
    raise RuntimeError(f"injected failure {where} (${FAIL_ONCE_ENV}={marker})")


def _finish(s: _Split, shards: list[dict], builder: dict) -> dict:
  """lengths.npy, then the manifest (last); swaps a local split in. Returns the manifest."""
  shards = sorted(shards, key=lambda d: d["index"])
  if not shards:
    raise cache_manifest.empty_split(s.name, s.split)
  if [d["index"] for d in shards] != list(range(len(shards))):
    raise RuntimeError(f"{s.name}/{s.split}: output shards {[d['index'] for d in shards]} "
                       "are not 0..S-1")
  lengths = np.concatenate([d.pop("lengths") for d in shards]).reshape(-1, len(s.names))
  buf = io.BytesIO()
  np.save(buf, lengths)
  out = paths.as_path(s.staging)
  (out / records.LENGTHS).write_bytes(buf.getvalue())
  for d in shards:
    del d["index"]
  counts = cache_manifest.body(lengths, s.names, s.ranks, shards,
                               records.file_sha256(out / records.LENGTHS))
  manifest = cache_manifest.manifest(s.target, counts, builder=builder)
  (out / records.MANIFEST).write_text(json.dumps(manifest, indent=1))
  if not s.remote:
    cache_manifest.swap(out, paths.as_path(s.final))
  return manifest


def _prepare(target: cache_manifest.Target, records_per_shard: int, num_shards: int | None):
  """The split's `_Split`, its output directory made ready (see the module docstring)."""
  task = tasks.seqio_task(target.name, target.data_dir)
  ds = task.get_dataset(sequence_length=None, split=target.split, shuffle=False, num_epochs=1,
                        try_in_mem_cache=False)
  names, ranks = cache_manifest.feature_specs(target.name, target.split, task, ds.element_spec)
  files = len(task.source.list_shards(target.split))
  n = num_shards or (files if files > 1 else DEFAULT_SHARDS)
  by_file = task.source.supports_arbitrary_sharding or files >= n  # seqio's own rule
  if target.source:  # before the manifest lands: a cache is never there without its vocabulary
    cache_copy.copy_vocab(target.name, target.data_dir, target.out_dir, overwrite=True)
  if target.remote:  # as cache_copy.publish_split: the old manifest first, then the rest
    (target.final / records.MANIFEST).unlink(missing_ok=True)
    target.final.rmtree(missing_ok=True)
    staging = target.final
  else:
    staging = target.staging()
    staging.rmtree(missing_ok=True)
  staging.mkdir(parents=True, exist_ok=True)
  return _Split(target, names, ranks, n, by_file, records_per_shard, os.fspath(staging))


def _branch(p, beam, s: _Split, runner: str):
  label = f"{s.name}/{s.split}"
  examples = (p | f"{label}/shards" >> beam.Create(range(s.num_shards))
              | f"{label}/spread" >> beam.Reshuffle()
              | f"{label}/read" >> beam.FlatMap(lambda i: _read_shard(s, i)))
  counts = (examples | f"{label}/ones" >> beam.Map(lambda e: (e[0], 1))
            | f"{label}/count" >> beam.CombinePerKey(sum))
  builder = {"runner": runner, "input_shards": s.num_shards,
             "sharded_by": "file" if s.by_file else "example"}
  return (examples
          | f"{label}/place" >> beam.Map(_Place(s), counts=beam.pvalue.AsDict(counts))
          | f"{label}/group" >> beam.GroupByKey()
          | f"{label}/write" >> beam.Map(lambda item: _write_shard(s, item))
          | f"{label}/all" >> beam.combiners.ToList()
          | f"{label}/finish" >> beam.Map(lambda shards: _finish(s, shards, builder)))


def build(jobs: Sequence[tuple[str, str]], data_dir: str | None = None, *,
          out_dir: str | None = None, rebuild: bool = False, refresh: bool = False,
          records_per_shard: int = cache.RECORDS_PER_SHARD, num_shards: int | None = None,
          beam_args: Sequence[str] = (), log=print) -> dict[tuple[str, str], dict]:
  """Caches each (task, split) of `jobs` in one Beam pipeline; returns {(task, split): manifest}.

  Args and freshness rules are those of `cache.cache_split`, plus `num_shards` (input shards
  per split; default: one per source file, or DEFAULT_SHARDS for a one-file source) and
  `beam_args`, Beam's pipeline options (default: LOCAL_RUNNER).

  Raises:
    DataError: as `cache.cache_split`, before the pipeline starts; a failure inside the
      pipeline is raised as the runner reports it, and leaves no manifest.
  """
  if records_per_shard < 1 or (num_shards is not None and num_shards < 1):
    raise DataError(f"records_per_shard={records_per_shard} and num_shards={num_shards} must "
                    "be >= 1 (num_shards: or None, one per source file)")
  beam = _import_beam()
  from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

  args = list(beam_args)
  if not any(a == "--runner" or a.startswith("--runner=") for a in args):
    args = LOCAL_RUNNER + args
  options = PipelineOptions(args)
  runner = options.view_as(StandardOptions).runner or "DirectRunner"
  out, splits = {}, []
  for name, split in jobs:
    kept, target = cache_manifest.plan(name, split, data_dir, out_dir, rebuild=rebuild,
                                       refresh=refresh, log=log)
    if kept is not None:
      out[name, split] = kept
    else:
      _check_runner(runner, target)
      splits.append(_prepare(target, records_per_shard, num_shards))
  if not splits:
    return out
  log(f"beam: building {', '.join(f'{s.name}/{s.split}' for s in splits)} on {runner}")
  with beam.Pipeline(options=options) as p:
    for s in splits:
      _branch(p, beam, s, runner)
  for s in splits:
    out[s.name, s.split] = json.loads((s.target.final / records.MANIFEST).read_text())
    cache_manifest.log_cached(s.target, out[s.name, s.split], log)
  return out


def _check_runner(runner: str, target: cache_manifest.Target) -> None:
  local = "direct" in runner.lower() or runner in ("FnApiRunner", "PrismRunner")
  if not local and not target.remote:
    raise DataError(f"--runner {runner} runs on other machines, which cannot write the local "
                    f"directory {target.out_dir}; pass a bucket as --out_dir (gs://B/data).")


def main(argv=None) -> int:
  p = cache.parser(__doc__.splitlines()[0])
  p.epilog = "Other options are Beam's (default: " + " ".join(LOCAL_RUNNER) + ")."
  p.add_argument("--num_shards", type=int, default=None,
                 help=f"input shards per split (default: one per source file, or "
                      f"{DEFAULT_SHARDS} for a one-file source)")
  args, beam_args = p.parse_known_args(argv)

  def run():
    data_dir = cache_manifest.local_data_dir(args.data_dir)
    names = [registry.cached_task(name) for name in expand(args.task)]  # as cache.py
    jobs = [(name, split) for name in names
            for split in (args.splits or tasks.seqio_task(name, data_dir).splits)]
    build(jobs, data_dir, out_dir=args.out_dir, rebuild=args.rebuild,
          records_per_shard=args.records_per_shard, num_shards=args.num_shards,
          beam_args=beam_args)

  return cache.cli(run)


if __name__ == "__main__":
  sys.exit(main())
