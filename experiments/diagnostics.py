"""Two generated tasks that tell the attention mechanisms apart, as an in-memory data module.

Both are decoder-LM tasks (shape "lm"): the model reads one token sequence and is scored
(loss weight 1) only on the answer tokens, so the teacher-forced token accuracy of
`evaluation.evaluate` is exactly "fraction of answers right".

* ``diag_reverse`` (position alone suffices): ``x_1 .. x_n SEP x_n .. x_1``. The answer at
  output slot i is always the input at slot n + 1 - i, whatever the tokens are, so a fixed
  (learned) position-to-position alignment -- a `random` synthesizer -- can solve it.
* ``diag_recall`` (needs content lookup; multi-query associative recall):
  ``k_1 v_1 .. k_P v_P  q_1 a_1 .. q_Q a_Q`` with distinct random keys per sequence, random
  values, each query q_j one of the keys and a_j its value. Where the matching key sits
  changes with every sequence, so the alignment must be computed from token content
  (query-key similarity). A model that cannot compare tokens can at best guess one of the
  P values present, about 1/P right (`recall_guess_level`).

The module has the functions the trainer asks of a data module (`TASKS`, `task_info`,
`get_vocabulary`, `get_dataset`) and needs no TensorFlow, so it also runs where seqio is
absent. Batches are deterministic in (task, split, seed, batch index); the validation split
does not depend on the training seed, so every seed is scored on the same sequences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

PAD, EOS, UNK = 0, 1, 2
FIRST = 3  # first id free for task symbols (seqio / T5: 0 pad, 1 EOS, 2 UNK)


@dataclasses.dataclass(frozen=True)
class DiagSpec:
  """Sizes of the two tasks.

  Attributes:
    reverse_len: n, the number of tokens to reverse (the row is 2n + 1 tokens).
    reverse_symbols: alphabet size of the reversed tokens.
    recall_pairs: P, key-value pairs in the context.
    recall_queries: Q <= P, queries after the context (each a distinct key).
    recall_keys: key alphabet size (>= P: keys in one row are distinct).
    recall_values: value alphabet size.
    eval_batches: batches in the validation split.
  """

  reverse_len: int = 16
  reverse_symbols: int = 16
  recall_pairs: int = 8
  recall_queries: int = 8
  recall_keys: int = 32
  recall_values: int = 32
  eval_batches: int = 4

  def __post_init__(self):
    if self.recall_keys < self.recall_pairs:
      raise ValueError(f"recall_keys={self.recall_keys} < recall_pairs={self.recall_pairs}: "
                       "keys in one sequence must be distinct; raise recall_keys")
    if not 1 <= self.recall_queries <= self.recall_pairs:
      raise ValueError(f"recall_queries={self.recall_queries} must be in [1, recall_pairs="
                       f"{self.recall_pairs}]")
    for name in ("reverse_len", "reverse_symbols", "recall_pairs", "eval_batches"):
      if getattr(self, name) < 1:
        raise ValueError(f"DiagSpec.{name}={getattr(self, name)} must be >= 1")

  @property
  def vocab_size(self) -> int:
    """One vocabulary for both tasks: specials, SEP, then every symbol range."""
    return FIRST + 1 + max(self.reverse_symbols, self.recall_keys + self.recall_values)

  def length(self, task: str) -> int:
    """Tokens per row of `task` (the decoder input adds a leading 0 and drops the last)."""
    if task == "diag_reverse":
      return 2 * self.reverse_len + 1
    if task == "diag_recall":
      return 2 * (self.recall_pairs + self.recall_queries)
    raise ValueError(f"unknown diagnostic task {task!r}; known: {TASKS}")


TASKS = ("diag_reverse", "diag_recall")
SEP = FIRST
SYM = FIRST + 1  # first symbol id


def recall_guess_level(spec: DiagSpec) -> float:
  """Accuracy of guessing uniformly among the values present in the context (no lookup)."""
  return 1.0 / spec.recall_pairs


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """The fields of `synthesizer_jax.data.TaskInfo` that the trainer reads."""

  name: str
  shape: str = "lm"
  metric: str = "perplexity"
  vocab_path: str = "generated"
  vocab_family: str = "diagnostics"
  num_classes: int | None = None
  label_names: tuple[str, ...] = ()
  source: str = "generated"
  feature_keys: tuple[str, ...] = ("targets",)
  description: str = ""


class Vocab:
  """Ids as text: symbol s prints as "s<s>"; enough for the trainer's sample line."""

  eos_id = EOS

  def __init__(self, size: int):
    self.vocab_size = size

  def encode(self, text: str) -> list[int]:
    return [SYM + (ord(c) % (self.vocab_size - SYM)) for c in text]

  def decode(self, ids) -> str:
    return " ".join("|" if i == SEP else f"s{i - SYM}" for i in ids if i >= SEP)


def reverse_rows(rng: np.random.Generator, n_rows: int, spec: DiagSpec):
  """(targets [n_rows, 2n+1], weights): x SEP reversed(x), weights on the reversed part."""
  n = spec.reverse_len
  x = rng.integers(SYM, SYM + spec.reverse_symbols, (n_rows, n))
  rows = np.concatenate([x, np.full((n_rows, 1), SEP), x[:, ::-1]], axis=1)
  weights = np.zeros_like(rows)
  weights[:, n + 1:] = 1
  return rows.astype(np.int32), weights.astype(np.int32)


def recall_rows(rng: np.random.Generator, n_rows: int, spec: DiagSpec):
  """(targets [n_rows, 2(P+Q)], weights): k v pairs then q a pairs, weights on the answers."""
  p, q = spec.recall_pairs, spec.recall_queries
  key_base, value_base = SYM, SYM + spec.recall_keys
  keys = np.argsort(rng.random((n_rows, spec.recall_keys)), axis=1)[:, :p] + key_base
  values = rng.integers(value_base, value_base + spec.recall_values, (n_rows, p))
  which = np.argsort(rng.random((n_rows, p)), axis=1)[:, :q]
  queries = np.take_along_axis(keys, which, axis=1)
  answers = np.take_along_axis(values, which, axis=1)
  context = np.stack([keys, values], axis=2).reshape(n_rows, 2 * p)
  asked = np.stack([queries, answers], axis=2).reshape(n_rows, 2 * q)
  rows = np.concatenate([context, asked], axis=1)
  weights = np.zeros_like(rows)
  weights[:, 2 * p + 1::2] = 1
  return rows.astype(np.int32), weights.astype(np.int32)


def lm_batch(targets_bl: np.ndarray, weights_bl: np.ndarray, length: int) -> dict[str, np.ndarray]:
  """seqio `DecoderFeatureConverter` features (unpacked), zero-padded to `length`."""
  b, n = targets_bl.shape
  if n > length:
    raise ValueError(f"diagnostic rows have {n} tokens but targets_length={length}; raise "
                     "targets_length (and max_len) or shrink the DiagSpec")
  tgt = np.zeros((b, length), np.int32)
  tgt[:, :n] = targets_bl
  w = np.zeros((b, length), np.int32)
  w[:, :n] = weights_bl
  inp = np.concatenate([np.zeros((b, 1), np.int32), tgt[:, :-1]], axis=1)
  return {"decoder_input_tokens": inp, "decoder_target_tokens": tgt, "decoder_loss_weights": w}


class DiagnosticData:
  """A data module (the trainer's `data=` argument) serving the two diagnostic tasks."""

  TASKS = TASKS

  def __init__(self, spec: DiagSpec | None = None):
    self.spec = spec or DiagSpec()

  def task_info(self, name: str, data_dir: str | None = None) -> TaskInfo:
    if name not in TASKS:
      raise ValueError(f"unknown diagnostic task {name!r}; known: {TASKS}")
    what = ("reverse a fixed-length sequence (position-only)" if name == "diag_reverse" else
            "multi-query associative recall (content lookup)")
    return TaskInfo(name=name, description=what)

  def get_vocabulary(self, name: str, data_dir: str | None = None) -> Vocab:
    self.task_info(name)
    return Vocab(self.spec.vocab_size)

  def get_dataset(self, name: str, split: str, *, feature_lengths: Mapping[str, int],
                  batch_size: int, pack: bool = False, shuffle: bool = True, seed: int = 0,
                  data_dir: str | None = None, shard_index: int = 0, num_shards: int = 1,
                  start_batch: int = 0, repeat: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Endless (train) or `eval_batches`-long (other splits) batches of generated rows.

    `pack` is ignored: rows have one fixed length, so packing would gain nothing.
    """
    self.task_info(name)
    make = reverse_rows if name == "diag_reverse" else recall_rows
    length = int(feature_lengths["targets"])
    # Distinct streams: train rows depend on the seed; evaluation rows never do.
    splits = ("train", "validation", "test")
    if split not in splits:
      raise ValueError(f"diagnostic tasks have splits {splits}, not {split!r}")
    stream = splits.index(split)
    seed_part = seed if split == "train" else 0
    task_id = TASKS.index(name)

    def batches():
      i = start_batch
      while repeat or i < self.spec.eval_batches:
        rng = np.random.default_rng([task_id, stream, seed_part, shard_index, num_shards, i])
        yield lm_batch(*make(rng, batch_size, self.spec), length)
        i += 1

    return batches()
