"""What every writer of a task cache does the same way, whichever runs it (one process:
`cache.py`; Apache Beam: `beam_cache.py`): the freshness rules that decide whether a split is
built, kept or refused (`plan`), the check of the task's features and of every token id, the
manifest's body and fields, and the swap that puts a finished local split in place.

No TensorFlow, seqio or Beam here: the writers pass in what they read with them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import cache_copy, records, registry, tasks
from synthesizer_jax.data.registry import DataError, spec
from synthesizer_jax.version import __version__

RECORD_LAYOUT = "int32 LE: F feature lengths, then each feature's tokens"


def local_data_dir(data_dir: str | None) -> str:
  """The prepared data directory as an absolute local path; DataError for a bucket."""
  data_dir = data_dir or registry.default_data_dir()
  if paths.is_remote(data_dir):
    raise DataError(f"--data_dir {data_dir} is a bucket; a cache is built from a prepared data "
                    "directory on local disk (seqio reads its corpus files there). Pass that "
                    f"directory as --data_dir and the bucket as --out_dir {data_dir}.")
  return os.fspath(paths.as_path(data_dir))


@dataclasses.dataclass(frozen=True)
class Target:
  """Where and from what one split is built (`plan`)."""

  name: str
  split: str
  data_dir: str  # the prepared data directory (local)
  out_dir: str  # where the cache goes: data_dir, another directory or a bucket
  current: dict  # records.fingerprint of what it is built from
  final: paths.Path  # the split's cache directory

  @property
  def remote(self) -> bool:
    return paths.is_remote(self.out_dir)

  @property
  def source(self) -> str | None:
    """The prepared data dir when the cache goes elsewhere (its vocabulary is copied)."""
    return None if self.out_dir == self.data_dir else self.data_dir

  def staging(self) -> paths.Path:
    """Where the split is built on local disk: beside the cache (swapped in whole by
    `swap`), or for a bucket in a temporary directory it is uploaded from."""
    if self.remote:
      return paths.as_path(tempfile.mkdtemp(prefix=f"sj-cache-{self.name}-{self.split}-"))
    return self.final.parent / (self.final.name + ".partial")


def _stale(path: paths.Path, current: dict) -> tuple[dict | None, list[str]]:
  """(the manifest at `path`, how it is stale: [] = up to date)."""
  try:
    manifest = json.loads(path.read_text())
  except ValueError as e:
    return None, [f"its manifest {path} is unreadable ({e})"]
  if not isinstance(manifest, dict):
    return None, [f"its manifest {path} is not a JSON object"]
  return manifest, records.stale_reasons(manifest, current)


def plan(name: str, split: str, data_dir: str | None, out_dir: str | None, *, rebuild: bool,
         refresh: bool, log=print) -> tuple[dict | None, Target]:
  """(the manifest of an up-to-date cache that is kept, else None; the build target).

  An up-to-date cache is kept (its vocabulary copied to `out_dir` if it went missing);
  a stale one is rebuilt with `rebuild` or `refresh` and refused otherwise.

  Raises:
    DataError: the task is not prepared, `data_dir` is a bucket, the split does not exist,
      or the cache is stale and neither `rebuild` nor `refresh` is set.
  """
  data_dir = local_data_dir(data_dir)
  out_dir = os.fspath(paths.check_dir(out_dir, "out_dir")) if out_dir else data_dir
  task = tasks.seqio_task(name, data_dir)
  if split not in task.splits:
    raise DataError(f"Task {name!r} has no split {split!r}; it has {list(task.splits)}.")
  corpus = None if spec(name).source == "tfds" else tasks.split_file(name, split, data_dir)
  target = Target(name, split, data_dir, out_dir, records.fingerprint(name, split, data_dir,
                                                                      corpus),
                  paths.as_path(records.split_dir(name, split, out_dir)))
  path = target.final / records.MANIFEST
  if path.is_file() and not rebuild:
    manifest, reasons = _stale(path, target.current)
    if not reasons:
      if target.source and cache_copy.copy_vocab(name, data_dir, out_dir, overwrite=True):
        log(f"{name}: copied its vocabulary to {registry.vocab_path(name, out_dir)}")
      log(f"{name}/{split}: cache up to date ({manifest['num_examples']:,} examples)")
      return manifest, target
    if not refresh:
      raise records.stale_error(name, split, out_dir, reasons, target.source)
    log(f"{name}/{split}: rebuilding the stale cache ({'; '.join(reasons)})")
  return None, target


def feature_specs(name: str, split: str, task, element_spec: Mapping) -> tuple[list[str], dict]:
  """(the cached feature names, sorted; {name: rank}) of a task's preprocessed dataset."""
  # Token ids and labels; seqio's "*_pretokenized" strings stay behind.
  names = sorted(n for n, v in element_spec.items() if v.dtype.name != "string")
  bad = [n for n in names if not element_spec[n].dtype.is_integer]
  if bad or set(task.output_features) - set(names):
    raise DataError(f"Task {name!r} gives features {dict(element_spec)}; only integer token "
                    f"ids and labels, including {sorted(task.output_features)}, can be cached.")
  return names, {n: element_spec[n].shape.rank for n in names}


def vocab_sizes(task) -> dict[str, int]:
  return {k: f.vocabulary.vocab_size for k, f in task.output_features.items()}


def check_ids(example: Mapping, sizes: Mapping[str, int], where: str, name: str,
              data_dir: str) -> None:
  """DataError naming the example (`where`) when a token id is outside its vocabulary: once,
  here, so training never meets a bad id."""
  for key, size in sizes.items():
    ids = np.asarray(example[key])
    if ids.size and (ids.min() < 0 or ids.max() >= size):
      raise DataError(f"Example {where}: feature {key!r} holds token id "
                      f"{int(ids.max() if ids.max() >= size else ids.min())}, outside the "
                      f"vocabulary [0, {size}); rebuild the vocabulary and the task with "
                      f"`{registry.PREPARE_CMD.format(data_dir=data_dir, task=name)}`.")


def row(example: Mapping, names: Sequence[str]) -> list[int]:
  """An example's row of lengths.npy."""
  return [int(np.size(example[n])) for n in names]


def body(lengths: np.ndarray, names: Sequence[str], ranks: Mapping[str, int],
         shards: list[dict], lengths_sha: str) -> dict:
  """The manifest's counts: examples, tokens of each rank-1 feature, features, shards."""
  return {"num_examples": len(lengths),
          "num_tokens": {n: int(lengths[:, j].astype(np.int64).sum())
                         for j, n in enumerate(names) if ranks[n]},
          "features": {n: {"dtype": "int32", "rank": ranks[n]} for n in names},
          "shards": shards, records.LENGTHS_SHA256: lengths_sha}


def manifest(target: Target, counts: dict, **extra) -> dict:
  """The manifest of a split built for `target` with `counts` (`body`)."""
  return {"format": records.FORMAT, "task": target.name, "split": target.split,
          "shape": spec(target.name).shape, **target.current, **counts,
          "library_version": __version__, "record_layout": RECORD_LAYOUT,
          **extra}


def empty_split(name: str, split: str) -> DataError:
  return DataError(f"Split {split!r} of task {name!r} is empty; nothing to cache.")


def swap(partial: paths.Path, final: paths.Path) -> None:
  """Swaps in the finished local directory; a crash before this leaves the old cache (or
  none), never a mix."""
  old = final.parent / (final.name + ".old")
  old.rmtree(missing_ok=True)
  if final.is_dir():
    final.replace(old)
  partial.replace(final)
  old.rmtree(missing_ok=True)


def log_cached(target: Target, m: dict, log=print) -> None:
  total = sum(m["num_tokens"].values())
  log(f"{target.name}/{target.split}: cached {m['num_examples']:,} examples, {total:,} tokens "
      f"in {len(m['shards'])} shard(s) under {target.final}")
