"""`get_dataset`: NumPy batches with seqio's feature names, for every task.

The pipeline is seqio's: the task's source and preprocessors, then the feature converter
of its layout (`layouts.py`: `DecoderFeatureConverter` for LMs, `EncDecFeatureConverter`
for seq2seq, a small padding step for the classifier), then batching. It is deterministic
given (seed, shard): TF's shuffles are seeded and every map keeps order. A mixture
(`mixtures.py`) is its seqio.Mixture: every member's examples, drawn at T5's rates (seeded),
then the same converter; it is read for training only (evaluation is per member).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import mixtures, registry, tasks
from synthesizer_jax.data.registry import DataError, task_info
from synthesizer_jax.data.tfenv import import_seqio


class Batches:
  """An iterator of dict[str, np.ndarray] batches; raises DataError on an empty split."""

  def __init__(self, ds, name: str, split: str, start_batch: int):
    self._it = ds.as_numpy_iterator()
    self._where = f"split {split!r} of task {name!r}"
    self._first = start_batch == 0
    self._start = start_batch

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    try:
      batch = next(self._it)
    except StopIteration:
      if self._first:
        raise DataError(f"The {self._where} is empty (or shorter than start_batch="
                        f"{self._start}).") from None
      raise
    self._first = False
    return batch


def get_dataset(name: str, split: str, *, feature_lengths: Mapping[str, int], batch_size: int,
                pack: bool = True, shuffle: bool = True, seed: int = 0,
                data_dir: str | None = None, shard_index: int = 0, num_shards: int = 1,
                start_batch: int = 0, repeat: bool = True,
                shuffle_buffer_size: int | None = None) -> Batches:
  """Batches of task `name` for one model shape, as NumPy arrays.

  Args:
    name: a task of `TASKS`, or a mixture of `mixtures.MIXTURES` (training: `repeat=True`).
    split: "train", "validation" or "test" (MNLI also has "validation_mismatched", ...).
    feature_lengths: {"targets": L} for LMs, {"inputs": Li, "targets": Lt} for encdec,
      {"inputs": L} for classifiers (`task_info(name).feature_keys`).
    batch_size: examples (packed rows when packing) per batch, per shard.
    pack: pack several examples into a row (LM / encdec; classifiers never pack).
    shuffle: shuffle the examples (seeded by `seed`).
    seed: shuffle seed; same (seed, shard) -> same batches.
    data_dir: the prepared data directory (default `default_data_dir()`).
    shard_index: this process's shard of the examples, in [0, num_shards).
    num_shards: number of data shards (processes).
    start_batch: skip this many batches first (to resume a run where it stopped).
    repeat: loop forever over epochs (training); else one pass, the last batch may be short.
    shuffle_buffer_size: examples in the shuffle buffer, filled before the first batch
      (default: the task's, 1,000 LM pieces or 10,000 examples).

  Returns:
    An iterator of dicts of int32 arrays of shape [batch, length] with seqio's names:
    LM: decoder_input_tokens, decoder_target_tokens, decoder_loss_weights (+ decoder_segment_ids,
    decoder_positions when packed); encdec: encoder_input_tokens + the decoder features
    (+ encoder/decoder segment ids and positions when packed); classifier:
    encoder_input_tokens [batch, L] and targets [batch] (class id; -1 where a split has no labels).

  Raises:
    DataError: unknown task, data not prepared, bad arguments, or an empty split; for a
      mixture, any of these for a member (named), or a pass (`repeat=False`).
  """
  members = mixtures.mixture(name).tasks if name in mixtures.MIXTURES else ()
  first = members[0] if members else name
  info = task_info(first, data_dir)
  if paths.is_remote(data_dir or registry.default_data_dir()):
    raise DataError(f"data_dir {data_dir or registry.default_data_dir()} is a bucket: seqio "
                    "reads a task's prepared corpus files from local disk. Read its cache "
                    "with data_pipeline='grain' (`python -m synthesizer_jax.data.cache "
                    "--out_dir` puts one there), or pass a local data dir (a gcsfuse mount of "
                    "the bucket works).")
  data_dir = os.path.abspath(data_dir or registry.default_data_dir())
  if members and not repeat:
    raise DataError(f"Mixture {name!r} is read for training only (repeat=True); evaluate each "
                    f"member on its own: get_dataset(member, {split!r}, repeat=False) for "
                    f"member in {list(members)}.")
  if members and shuffle_buffer_size is not None:
    raise DataError(f"shuffle_buffer_size={shuffle_buffer_size} cannot be set for mixture "
                    f"{name!r}: seqio's Mixture shuffles each member with the member task's "
                    "own buffer. Leave it unset (None).")
  for t in members or (name,):
    tasks.check_prepared(t, data_dir)
  lengths = registry.check_request(name, info.feature_keys, feature_lengths, batch_size,
                                   shard_index, num_shards, start_batch, info.shape)
  seqio = import_seqio()
  for t in members or (name,):
    task = tasks.seqio_task(t, data_dir)
    if split not in task.splits:
      raise DataError(f"Task {t!r} has no split {split!r}; it has {list(task.splits)}.")
  shard = seqio.ShardInfo(index=shard_index, num_shards=num_shards) if num_shards > 1 else None
  if members:  # each member shuffled and repeated as a task is, then drawn at T5's rates
    ds = mixtures.seqio_mixture(name, data_dir).get_dataset(
        sequence_length=lengths, split=split, shuffle=shuffle, seed=seed, shard_info=shard,
        num_epochs=None, try_in_mem_cache=False, log_mixing_proportions=False)
  else:
    ds = task.get_dataset(sequence_length=lengths, split=split, shuffle=shuffle, seed=seed,
                          shard_info=shard, num_epochs=None if repeat else 1,
                          try_in_mem_cache=False, shuffle_buffer_size=shuffle_buffer_size)
  layout = registry.layout(first)
  ds = layout.converter(pack and layout.packable)(ds, lengths)
  ds = ds.batch(batch_size, drop_remainder=repeat)
  if start_batch:
    ds = ds.skip(start_batch)
  return Batches(ds.prefetch(2), name, split, start_batch)
