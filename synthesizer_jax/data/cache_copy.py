"""Copies a task's cache between data directories, on local disk or in a bucket.

    python -m synthesizer_jax.data.cache_copy --task offline_lm --src gs://B/data --dst data

(e.g. to train from a local copy of a cache kept in a bucket: docs/data.md). `cache.py
--out_dir gs://...` publishes the cache it built in a local staging directory with the same
`publish_split`. A copy is complete when its manifest is there: the destination's manifest
is removed first and written again after every other file, so a copy or upload that stops
half-way leaves no cache the reader accepts (it names the missing manifest and the command).
The source is checked before copying (`records.open_split`: manifest, freshness, lengths,
shards) and the copy after. The vocabulary the cache was built with is copied beside it
(`vocab/<family>.model`), so the destination is a data_dir a run can train from; another
vocabulary already there is refused rather than overwritten (it would make that directory's
other caches of the family stale). Reads and writes go through `paths` (etils.epath).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence

from synthesizer_jax import paths
from synthesizer_jax.data import records, registry
from synthesizer_jax.data.registry import DataError

BLOCK = 16 << 20  # bytes per read / write of a copied file


def copy_file(src: paths.PathLike, dst: paths.PathLike) -> None:
  """Copies one file (an object in a bucket: uploaded or downloaded in blocks)."""
  with paths.as_path(src).open("rb") as f, paths.as_path(dst).open("wb") as g:
    for block in iter(lambda: f.read(BLOCK), b""):
      g.write(block)


def publish_split(src: paths.PathLike, dst: paths.PathLike, manifest: Mapping) -> None:
  """Copies the cached split in directory `src` to `dst`, replacing what is there: the old
  manifest goes first, then the old files; the shards and lengths are copied, the manifest
  last (its presence means complete)."""
  src, dst = paths.as_path(src), paths.as_path(dst)
  (dst / records.MANIFEST).unlink(missing_ok=True)
  dst.rmtree(missing_ok=True)  # an old cache's shards, which the new one may not overwrite
  dst.mkdir(parents=True, exist_ok=True)
  for name in [s["file"] for s in manifest["shards"]] + [records.LENGTHS, records.MANIFEST]:
    copy_file(src / name, dst / name)


def copy_vocab(name: str, src_dir: str, dst_dir: str, *, overwrite: bool) -> bool:
  """Copies task `name`'s vocabulary file from one data dir to another; False if the same
  file is there already. A different one there is replaced only with `overwrite`."""
  src, dst = registry.vocab_path(name, src_dir), registry.vocab_path(name, dst_dir)
  want = records.file_sha256(src)
  if paths.as_path(dst).is_file():
    have = records.file_sha256(dst)
    if have == want:
      return False
    if not overwrite:
      raise DataError(f"{dst} is another vocabulary (sha256 {have[:12]}...) than the one the "
                      f"cache of {name!r} in {src_dir} was built with ({src}, {want[:12]}...); "
                      f"replacing it would make the other caches of family "
                      f"{registry.spec(name).family!r} in {dst_dir} stale. Copy into another "
                      f"directory, or remove {dst} first.")
  paths.as_path(dst).parent.mkdir(parents=True, exist_ok=True)
  copy_file(src, dst)
  return True


def cached_splits(name: str, data_dir: str) -> list[str]:
  """The splits of task `name` with a finished cache (a manifest) under `data_dir`."""
  where = paths.as_path(records.split_dir(name, "", data_dir))
  if not where.is_dir():
    return []
  return sorted(p.name for p in where.iterdir() if (p / records.MANIFEST).is_file())


def copy_cache(name: str, src: str, dst: str, splits: Sequence[str] | None = None,
               log=print) -> dict[str, dict]:
  """Copies the cached `splits` (default: every cached split) of task `name` and its
  vocabulary from data dir `src` to `dst`; returns {split: manifest}.

  Raises:
    DataError: no cache in `src`, a stale or damaged one there (as the reader decides), or
      another vocabulary of the family in `dst`.
  """
  src, dst = (paths.as_path(p) for p in (src, dst))
  src, dst = str(src), str(paths.check_dir(dst, "destination"))
  names = list(splits) if splits else cached_splits(name, src)
  if not names:
    raise DataError(f"No cache of task {name!r} in {src} ({records.split_dir(name, '', src)} "
                    f"holds no manifest). Build it with:\n  {records.cache_cmd(name, src)}")
  for split in names:  # every split checked before anything is written
    records.open_split(name, split, src)
  if copy_vocab(name, src, dst, overwrite=False):
    log(f"{name}: copied {registry.vocab_path(name, src)} to {registry.vocab_path(name, dst)}")
  out = {}
  for split in names:
    manifest = json.loads(paths.as_path(records.manifest_path(name, split, src)).read_text())
    publish_split(records.split_dir(name, split, src), records.split_dir(name, split, dst),
                  manifest)
    out[split] = records.open_split(name, split, dst)[0]  # the copy, checked as a reader would
    log(f"{name}/{split}: copied {manifest['num_examples']:,} examples in "
        f"{len(manifest['shards'])} shard(s) to {records.split_dir(name, split, dst)}")
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", nargs="+", required=True, help="task name(s) to copy")
  parser.add_argument("--src", required=True, help="data dir holding the cache (or gs://B/data)")
  parser.add_argument("--dst", required=True, help="data dir to copy it into (or gs://B/data)")
  parser.add_argument("--splits", nargs="*", default=None, help="default: every cached split")
  args = parser.parse_args(argv)
  try:
    for name in args.task:
      copy_cache(name, args.src, args.dst, args.splits)
  except (DataError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
