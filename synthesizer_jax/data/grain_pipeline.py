"""`get_dataset` over a task cache (`cache.py`) with Grain: no TensorFlow, no seqio.

Same arguments and the same batch dict (names, dtypes, shapes) as `pipeline.get_dataset`,
so models and steps do not change. Every batch is computed from its index alone:

1. The split's examples at the requested lengths: one per record, or for a chunked task
   (an LM corpus) one per L-token piece, exactly as seqio cuts them.
2. Rows: with `pack`, examples in a seeded order (`shuffle`) are packed greedily
   (`features.pack`: first fit over the 8 newest open rows) once per (seed, lengths);
   without, each example is a row. Rows are fixed across epochs.
3. The global row stream: epoch e visits all R rows in a permutation seeded by (seed, e)
   (identity without `shuffle`). Global batch k is stream positions k * G ... k * G + G - 1,
   G = batch_size * num_shards, and shard i (one per JAX process in training) takes its
   i-th slice of B = batch_size rows. Within an epoch the shards read disjoint rows whose
   union is the split.

So starting at `start_batch` costs the same at every step (steps 1-2 read only the cached
lengths), and a resumed run reads exactly the batches an uninterrupted run reads: the
loop's checkpoint already stores the number of batches read (`train_batches`). Global
batch k depends only on (seed, lengths, G), not on the number of shards, so a run can also
resume on another number of processes with the same global batch size. One pass
(`repeat=False`) gives every shard the same number of batches; the last ones may be short
or empty. Grain runs the per-batch reads and feature conversion in threads (or worker
processes).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import features, records, registry, span_corruption, vocab
from synthesizer_jax.data.registry import DataError


class CachedSplit:
  """The batches of one cached split for one shard, lengths, seed and batch size."""

  def __init__(self, name: str, split: str, data_dir: str, *, feature_lengths: Mapping[str, int],
               batch_size: int, pack: bool, shuffle: bool, seed: int, shard_index: int,
               num_shards: int, repeat: bool, verify: bool = True):
    import grain

    self.shape = registry.layout(name)  # the data layout of its model shape
    stored = registry.cached_task(name)  # span corruption reads its documents' cache
    need = dict.fromkeys(registry.layout(stored).task_features, 1)
    if "targets" in self.shape.batch_features:  # a classifier's label (features.convert)
      need["label"] = 0
    self.manifest, paths, lengths = records.open_split(stored, split, data_dir, need)
    self.names = list(self.manifest["features"])
    self.ranks = [self.manifest["features"][n]["rank"] for n in self.names]
    self.table = lengths if verify else None  # each record's header is checked against it
    self.lengths = dict(feature_lengths)
    self.batch_size, self.shuffle, self.seed, self.repeat = batch_size, shuffle, seed, repeat
    self.packed = pack
    self.where = f"{split!r} of task {name!r}"
    self.rebuild = records.rebuild_cmd(name, data_dir)
    self.source = grain.sources.ArrayRecordDataSource(paths)
    n = len(lengths)
    self.corrupt = registry.spec(name).objective == "span_corruption"
    if self.corrupt:
      self._plan_span_corruption(name, data_dir, lengths)
    else:
      self.record, self.start, self.sizes = features.example_lengths(
          lengths, self.names, self.lengths, self.shape.chunked)
    order = np.arange(len(self.record))
    if shuffle:
      order = np.random.default_rng((seed, 0)).permutation(order)
    if pack:
      self.offsets, self.items = features.pack(order, self.sizes, list(self.lengths.values()))
    else:
      self.offsets, self.items = np.arange(len(order) + 1), order
    self.num_rows = len(self.offsets) - 1
    self.shard_index, self.global_batch = shard_index, batch_size * num_shards
    if not self.num_rows:
      raise DataError(f"Split {self.where} is empty (the cache holds {n} records).")

  def _plan_span_corruption(self, name: str, data_dir: str, lengths: np.ndarray) -> None:
    """Examples = pieces of the cached documents (EOS left off) of `lengths_for(inputs
    length)` tokens, as `tasks.span_corrupt` cuts them, whose corrupted lengths are known
    before reading (`span_corruption.corrupted_lengths`); corrupted when read, seeded by
    (seed, example index), so a batch is the same whenever it is read."""
    raw = span_corruption.lengths_for(self.lengths["inputs"])[0]
    docs = lengths[:, [self.names.index("targets")]] - 1
    record, start, size = features.example_lengths(docs, ["targets"], {"targets": raw}, True)
    keep = size[:, 0] >= 2
    self.record, self.start, self.raw = record[keep], start[keep], size[keep, 0]
    limit = np.array([self.lengths["inputs"], self.lengths["targets"]])
    self.sizes = np.minimum(span_corruption.corrupted_lengths(self.raw), limit)
    self.vocab_size = vocab.SentencePieceVocabulary(registry.vocab_path(name, data_dir),
                                                    registry.extra_ids(name)).vocab_size

  def __len__(self) -> int:
    """Batches in one pass (repeat=False; the last may be short); huge when repeating."""
    return 2**62 if self.repeat else -(-self.num_rows // self.global_batch)

  @functools.lru_cache(maxsize=4)  # noqa: B019 (one CachedSplit per pipeline)
  def _epoch_order(self, epoch: int) -> np.ndarray:
    if not self.shuffle:
      return np.arange(self.num_rows)
    return np.random.default_rng((self.seed, 1, epoch)).permutation(self.num_rows)

  def rows_of(self, index: int) -> np.ndarray:
    """The row ids of batch `index` (computed from the index alone)."""
    first = index * self.global_batch + self.shard_index * self.batch_size
    stop = first + self.batch_size
    if not self.repeat:
      stop = min(stop, self.num_rows)
    at = np.arange(first, max(first, stop))
    epochs, within = np.divmod(at, self.num_rows)
    return np.array([self._epoch_order(int(e))[w] for e, w in zip(epochs, within, strict=True)])

  def _read(self, record_ids: list[int]) -> dict[int, dict[str, np.ndarray]]:
    if not record_ids:  # this shard's slice of the last batch of a pass can be empty
      return {}
    try:
      raw = self.source.__getitems__(record_ids)
    except (OSError, RuntimeError, ValueError) as e:
      raise DataError(f"Reading records {record_ids[:5]}... of the cache of {self.where} from "
                      f"{self.source.paths} failed ({e}). Rebuild the cache with:\n  "
                      f"{self.rebuild}") from None
    out = {}
    for r, b in zip(record_ids, raw, strict=True):
      try:
        out[r] = records.decode(b, self.names, self.ranks,
                                None if self.table is None else self.table[r])
      except ValueError as e:
        raise DataError(f"Record {r} of the cache of {self.where} ({self.source.paths}) is "
                        f"damaged: {e}. Rebuild the cache with:\n  {self.rebuild}") from None
    return out

  def batch(self, index: int) -> dict[str, np.ndarray]:
    """Batch `index` of the stream, as `pipeline.get_dataset` would give it."""
    return features.convert(self.row_examples(self.rows_of(index)), self.shape.batch_features,
                            self.lengths, self.packed)

  def row_examples(self, row_ids) -> list[list[dict[str, np.ndarray]]]:
    """The examples (cut to the lengths) of each row in `row_ids`, read together."""
    rows = [self.items[self.offsets[r]:self.offsets[r + 1]] for r in row_ids]
    examples = sorted({int(e) for row in rows for e in row})
    data = self._read(sorted({int(self.record[e]) for e in examples}))
    cut = {e: self._example(e, data[int(self.record[e])]) for e in examples}
    return [[cut[int(e)] for e in row] for row in rows]

  def _example(self, e: int, rec: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if self.corrupt:
      start = int(self.start[e])
      rec = span_corruption.example(rec["targets"][start:start + int(self.raw[e])],
                                    self.vocab_size, (self.seed, e))
      return {k: rec[k][:int(self.sizes[e, j])] for j, k in enumerate(("inputs", "targets"))}
    out = {k: v for k, v in rec.items() if k not in self.lengths}
    for j, key in enumerate(self.lengths):
      start = int(self.start[e])
      out[key] = rec[key][start:start + int(self.sizes[e, j])]
    return out


class GrainBatches:
  """An iterator of batch dicts over a Grain dataset; `close()` stops its workers."""

  def __init__(self, dataset):
    self._it = iter(dataset)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._it)

  def close(self) -> None:
    close = getattr(self._it, "close", None)
    if close:
      close()


def get_dataset(name: str, split: str, *, feature_lengths: Mapping[str, int], batch_size: int,
                pack: bool = True, shuffle: bool = True, seed: int = 0,
                data_dir: str | None = None, shard_index: int = 0, num_shards: int = 1,
                start_batch: int = 0, repeat: bool = True, shuffle_buffer_size: int | None = None,
                num_threads: int = 4, num_workers: int = 0, verify: bool = True) -> GrainBatches:
  """Batches of task `name` read from its cache (`python -m synthesizer_jax.data.cache`).

  Args are those of `pipeline.get_dataset` (see the module docstring for how shuffling,
  packing, sharding and `start_batch` work here), plus:
    shuffle_buffer_size: ignored (the shuffle here is global).
    num_threads: threads that read and convert batches ahead of the consumer.
    num_workers: worker processes instead (0: threads only).
    verify: check each record's header against lengths.npy as it is decoded (False only to
      measure what the check costs: `benchmarks/data_pipeline.py`).

  Returns:
    An iterator of {feature: int32 array}: the features of `pipeline.get_dataset`.

  Raises:
    DataError: unknown task, no cache (the message gives the command that builds it), a
      stale or corrupt cache (the message names the file and the rebuild command), bad
      arguments, or an empty shard.
  """
  del shuffle_buffer_size
  shape = registry.layout(name)
  data_dir = os.fspath(paths.as_path(data_dir or registry.default_data_dir()))  # or gs://
  lengths = registry.check_request(name, tuple(shape.task_features), feature_lengths,
                                   batch_size, shard_index, num_shards, start_batch, shape.name)
  split_data = CachedSplit(name, split, data_dir, feature_lengths=lengths, batch_size=batch_size,
                           pack=pack and shape.packable, shuffle=shuffle, seed=seed,
                           shard_index=shard_index, num_shards=num_shards, repeat=repeat,
                           verify=verify)
  return batches(split_data, start_batch, num_threads, num_workers)


def batches(split_data, start_batch: int, num_threads: int, num_workers: int) -> GrainBatches:
  """Grain over `split_data.batch(k)` for k = start_batch, ... (threads or worker processes)."""
  import grain

  ds = grain.MapDataset.range(start_batch, max(start_batch, len(split_data))).map(split_data.batch)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=8))
  if num_workers:
    from absl import flags

    if not flags.FLAGS.is_parsed():  # Grain's workers read its absl flags (defaults here)
      flags.FLAGS.mark_as_parsed()
    it = ds.to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return GrainBatches(it)
