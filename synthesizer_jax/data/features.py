"""seqio's feature converters in NumPy, for batches read from a cache (no TensorFlow).

A row holds one example (unpacked) or several (packed). Per example, the features equal
what seqio's `DecoderFeatureConverter` / `EncDecFeatureConverter` (and the classifier's
padding step, `layouts.classifier_features`) make of it:

    decoder_target_tokens  the example's targets, cut to the length, 0-padded
    decoder_input_tokens   the targets shifted right by one, starting with 0 (packed: within
                           each segment, and 0 on padding)
    decoder_loss_weights   1 where decoder_target_tokens != 0
    *_segment_ids          packed only: 1, 2, ... for the row's examples, 0 on padding
    *_positions            packed only: 0, 1, ... within each segment, 0 on padding
    encoder_input_tokens   the inputs, cut and 0-padded (encoder-decoder and classifier)
    targets                the class label (classifier; -1 = unlabelled)

Which features a batch has comes from the task layout's `batch_features` (`layouts.py`), so this
file names no model shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Cached task feature -> the batch features made from it.
_SOURCES = {"encoder": "inputs", "decoder": "targets"}
# Rows are packed first-fit over this many open rows (a row is closed when a new one is
# needed and this many are open), in the order the rows were opened.
PACK_BINS = 8


def example_lengths(lengths: np.ndarray, names: Sequence[str], feature_lengths: Mapping[str, int],
                    chunked: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The examples of a split at these lengths: (record id, start, lengths) per example.

  Args:
    lengths: [records, features] int, the cached lengths (`records.LENGTHS`).
    names: the cached feature names, in the order of `lengths`' columns.
    feature_lengths: {task feature: L}, as `get_dataset` takes them.
    chunked: each record's "targets" is a whole text, cut into pieces of L tokens (seqio's
      `tasks.chunk_targets`); else one example per record.

  Returns:
    record [E], start [E] (the piece's first token in its record's targets) and
    trimmed lengths [E, len(feature_lengths)] in the order of `feature_lengths`.
  """
  keys = list(feature_lengths)
  cols = np.stack([lengths[:, list(names).index(k)] for k in keys], axis=1).astype(np.int64)
  if not chunked:
    limit = np.array([feature_lengths[k] for k in keys])
    return (np.arange(len(lengths)), np.zeros(len(lengths), np.int64), np.minimum(cols, limit))
  (size,) = (feature_lengths[k] for k in keys)
  pieces = -(-cols[:, 0] // size)
  record = np.repeat(np.arange(len(lengths)), pieces)
  first = np.cumsum(pieces) - pieces
  start = (np.arange(len(record)) - np.repeat(first, pieces)) * size
  return record, start, np.minimum(cols[record, 0] - start, size)[:, None]


def pack(order: np.ndarray, lengths: np.ndarray, capacity: Sequence[int],
         bins: int = PACK_BINS) -> tuple[np.ndarray, np.ndarray]:
  """Greedy first-fit packing of examples, in `order`, into rows.

  Args:
    order: [E] example ids in the order to place them.
    lengths: [examples, F] trimmed lengths (each <= its capacity).
    capacity: [F] the row length of each feature; an example fits a row when every one
      of its features fits.
    bins: how many rows stay open for later examples.

  Returns:
    (offsets [R + 1], items [E]): row r holds examples items[offsets[r]:offsets[r + 1]],
    in the order they were placed.
  """
  cap = np.asarray(capacity, np.int64)
  rows: list[list[int]] = []
  room: list[np.ndarray] = []
  open_rows: list[int] = []
  for ex in order.tolist():
    need = lengths[ex]
    for r in open_rows:
      if np.all(room[r] >= need):
        break
    else:
      if len(open_rows) == bins:
        open_rows.pop(0)
      r = len(rows)
      rows.append([])
      room.append(cap.copy())
      open_rows.append(r)
    rows[r].append(ex)
    room[r] = room[r] - need
  offsets = np.cumsum([0] + [len(r) for r in rows])
  return offsets, np.asarray([e for r in rows for e in r], np.int64)


def _shift_right(x: np.ndarray) -> np.ndarray:
  return np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def convert(rows: Sequence[Sequence[Mapping[str, np.ndarray]]], batch_features: Sequence[str],
            feature_lengths: Mapping[str, int], packed: bool) -> dict[str, np.ndarray]:
  """One batch from rows of examples (each a dict of int32 token arrays, already cut).

  Args:
    rows: per row, its examples ({"inputs", "targets"} tokens or {"inputs", "label"}).
    batch_features: the layout's `batch_features` (what the batch must hold).
    feature_lengths: {"inputs": Li, "targets": Lt} (those the shape uses).
    packed: add segment ids and positions (rows may hold several examples).

  Returns:
    {feature: int32 [rows, length]} (classifier targets: int32 [rows]), as seqio makes them.
  """
  n = len(rows)
  out = {}
  for side, source in _SOURCES.items():
    if not any(f.startswith(side) for f in batch_features):
      continue
    length = feature_lengths[source]
    tokens = np.zeros((n, length), np.int32)
    segments = np.zeros((n, length), np.int32)
    positions = np.zeros((n, length), np.int32)
    for i, row in enumerate(rows):
      at = 0
      for seg, ex in enumerate(row, 1):
        k = len(ex[source])
        tokens[i, at:at + k] = ex[source]
        segments[i, at:at + k] = seg
        positions[i, at:at + k] = np.arange(k)
        at += k
    if side == "encoder":
      out["encoder_input_tokens"] = tokens
    else:
      inputs = _shift_right(tokens)
      if packed:  # seqio: each segment starts from 0, and so does the padding
        inputs = inputs * (segments == _shift_right(segments))
      out.update(decoder_target_tokens=tokens, decoder_input_tokens=inputs,
                 decoder_loss_weights=(tokens != 0).astype(np.int32))
    if packed:
      out[f"{side}_segment_ids"], out[f"{side}_positions"] = segments, positions
  if "targets" in batch_features:  # a classifier's label
    out["targets"] = np.array([row[0]["label"] for row in rows], np.int32)
  return out
