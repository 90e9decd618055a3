"""`get_cached_dataset` over a mixture (`mixtures.py`): its members' caches mixed at T5's rates.

    batches = data.get_cached_dataset("offline_t5_finetune", "train", feature_lengths=
        {"inputs": 512, "targets": 128}, batch_size=16, seed=0, data_dir="data")

Each member is read as by `grain_pipeline.CachedSplit` (its examples, packed into rows of
that member's examples when `pack`, its own row order seeded per epoch). The mixture is a
stream of rows, and every position is addressed from its index alone:

1. Blocks of `BLOCK` positions. A block holds a fixed number of rows of each member: its
   share of `BLOCK` by the member's row rate (largest remainder), in an order drawn from a
   generator seeded by (seed, block). A member's row rate is its T5 rate (`mixtures.rates`)
   over its mean examples per row, so examples arrive at T5's rates with or without packing.
2. Position p, the j-th row of member m in block b, is member m's row stream position
   b * count[m] + j: epoch e of a member visits all its rows in the order seeded by (seed, e).
   So each member is read in full once per its own epoch, like seqio's repeated members.
3. Batches and shards cut the stream as for one task: global batch k is positions
   k * G ... k * G + G - 1, shard i takes its i-th slice of batch_size rows. `start_batch=k`
   reads exactly batch k of an uninterrupted read.

The rates are exact within each block (stratified, not an independent draw per position).
Members share one vocabulary and one layout (text-to-text, encoder-decoder), so a batch
is one `features.convert` of rows of several members. A mixture is for training only
(`repeat=True`): evaluation is per member, `get_cached_dataset(member, split,
repeat=False)`; a pass over a mixture is refused.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import features, grain_pipeline, mixtures, records, registry
from synthesizer_jax.data.registry import DataError

BLOCK = 4096  # positions per block: each member's share of it is exact


def block_counts(weights: np.ndarray, size: int) -> np.ndarray:
  """Rows of each member in a block of `size`: size * weights / sum, largest remainder."""
  share = size * np.asarray(weights, np.float64) / np.sum(weights)
  counts = np.floor(share).astype(np.int64)
  extra = np.argsort(counts - share, kind="stable")[:size - counts.sum()]
  counts[extra] += 1
  return counts


def _member_error(name: str, task: str, error: DataError, data_dir: str) -> DataError:
  return DataError(f"Member {task!r} of mixture {name!r}: {error}\n(or cache every member: "
                   f"{records.cache_cmd(name, data_dir)})")


def _cached_examples(name: str, task: str, data_dir: str) -> int:
  """Examples in the train cache of member `task` of mixture `name`."""
  try:
    return int(records.read_manifest(registry.cached_task(task), "train", data_dir)[
        "num_examples"])
  except DataError as e:
    raise _member_error(name, task, e, data_dir) from None


class MixedSplit:
  """The batches of one split of a mixture for one shard, lengths, seed and batch size."""

  def __init__(self, name: str, split: str, data_dir: str, *, feature_lengths: Mapping[str, int],
               batch_size: int, pack: bool, shuffle: bool, seed: int, shard_index: int,
               num_shards: int, repeat: bool, verify: bool = True):
    # Counted from the members' train caches (what is read), so a data dir of caches only,
    # e.g. a bucket written by `cache --out_dir`, mixes as the prepared one does.
    rates = mixtures.rates(name, data_dir, count=lambda t, d: _cached_examples(name, t, d))
    self.tasks = list(rates)
    if not repeat:
      raise DataError(f"Mixture {name!r} is read for training only (repeat=True); evaluate each "
                      f"member on its own: get_cached_dataset(member, {split!r}, repeat=False) "
                      f"for member in {self.tasks}.")
    self.members = []
    for t in self.tasks:
      try:
        self.members.append(grain_pipeline.CachedSplit(
            t, split, data_dir, feature_lengths=feature_lengths, batch_size=batch_size,
            pack=pack, shuffle=shuffle, seed=seed, shard_index=0, num_shards=1, repeat=True,
            verify=verify))
      except DataError as e:
        raise _member_error(name, t, e, data_dir) from None
    self.shape = self.members[0].shape
    self.lengths, self.packed, self.seed = dict(feature_lengths), pack, seed
    self.batch_size, self.shard_index = batch_size, shard_index
    self.global_batch = batch_size * num_shards
    per_row = [len(m.record) / m.num_rows for m in self.members]  # 1 without packing
    self.row_rates = np.array([rates[t] / r for t, r in zip(self.tasks, per_row, strict=True)])
    self.block = BLOCK
    self.counts = block_counts(self.row_rates, self.block)

  def __len__(self) -> int:
    return 2**62  # repeats

  @functools.lru_cache(maxsize=4)  # noqa: B019 (one MixedSplit per pipeline)
  def _block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(member, member row stream position) of each position of `block`."""
    order = np.random.default_rng((self.seed, 2, block)).permutation(
        np.repeat(np.arange(len(self.counts)), self.counts))
    index = np.empty(len(order), np.int64)
    for m, count in enumerate(self.counts):
      index[order == m] = block * count + np.arange(count)
    return order, index

  def positions(self, index: int) -> list[tuple[int, int]]:
    """[(member, member row id)] of this shard's rows of global batch `index`."""
    first = index * self.global_batch + self.shard_index * self.batch_size
    out = []
    for p in range(first, first + self.batch_size):
      order, at = self._block(p // self.block)
      m, k = int(order[p % self.block]), int(at[p % self.block])
      member = self.members[m]
      epoch, within = divmod(k, member.num_rows)
      out.append((m, int(member._epoch_order(epoch)[within])))
    return out

  def batch(self, index: int) -> dict[str, np.ndarray]:
    """Batch `index` of the mixed stream (rows in stream order)."""
    where = self.positions(index)
    rows: list = [None] * len(where)
    for m, member in enumerate(self.members):
      mine = [i for i, (w, _) in enumerate(where) if w == m]
      if mine:
        got = member.row_examples([where[i][1] for i in mine])
        for i, examples in zip(mine, got, strict=True):
          rows[i] = examples
    return features.convert(rows, self.shape.batch_features, self.lengths, self.packed)


def get_dataset(name: str, split: str, *, feature_lengths: Mapping[str, int], batch_size: int,
                pack: bool = True, shuffle: bool = True, seed: int = 0,
                data_dir: str | None = None, shard_index: int = 0, num_shards: int = 1,
                start_batch: int = 0, repeat: bool = True, shuffle_buffer_size: int | None = None,
                num_threads: int = 4, num_workers: int = 0,
                verify: bool = True) -> grain_pipeline.GrainBatches:
  """Batches of mixture `name` from its members' caches; the arguments of
  `grain_pipeline.get_dataset` (`repeat=False` is refused: evaluation is per member).

  Raises:
    DataError: unknown mixture, a member without a cache (named, with the command that
      builds it), a pass (`repeat=False`), or what `grain_pipeline.get_dataset` refuses.
  """
  del shuffle_buffer_size
  first = mixtures.mixture(name).tasks[0]
  shape = registry.layout(first)
  data_dir = os.fspath(paths.as_path(data_dir or registry.default_data_dir()))
  lengths = registry.check_request(first, tuple(shape.task_features), feature_lengths,
                                   batch_size, shard_index, num_shards, start_batch, shape.name)
  mixed = MixedSplit(name, split, data_dir, feature_lengths=lengths, batch_size=batch_size,
                     pack=pack and shape.packable, shuffle=shuffle, seed=seed,
                     shard_index=shard_index, num_shards=num_shards, repeat=repeat,
                     verify=verify)
  return grain_pipeline.batches(mixed, start_batch, num_threads, num_workers)

