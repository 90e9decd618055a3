"""Generated tasks that tell the attention mechanisms apart, as an in-memory data module.

All are decoder-LM tasks (shape "lm"): the model reads one token sequence and is scored
(loss weight 1) only on the answer tokens, so the teacher-forced token accuracy of
`evaluation.evaluate` is exactly "fraction of answers right".

* ``diag_reverse`` (position alone suffices): ``x_1 .. x_n SEP x_n .. x_1``. The answer at
  output slot i is always the input at slot n + 1 - i, whatever the tokens are, so a fixed
  (learned) position-to-position alignment -- a `random` synthesizer -- can solve it.
* ``diag_lookup`` (needs content matching, one hop): ``x_1 .. x_n  q_1 a_1 .. q_Q a_Q`` with
  n distinct random symbols; each query q_j is one of them and its answer a_j is the *slot*
  where it occurs (a slot token). Where q_j sits changes with every sequence, so the
  alignment must come from comparing the query with the context tokens; one dot-product
  layer can do it (match, then read the matched slot's position signal). Guessing a slot
  is right 1/n of the time.
* ``diag_recall`` (multi-query associative recall, two hops):
  ``k_1 v_1 .. k_P v_P  q_1 a_1 .. q_Q a_Q`` with distinct random keys per sequence, random
  values, each query q_j one of the keys and a_j its value. Needs content matching plus
  binding each value to its key (an induction circuit over two layers); small models learn
  it slowly. Without lookup a model can at best guess one of the P values present, about
  1/P right (`recall_guess_level`).

A model that cannot compare tokens (dense, random, factorized synthesizers) can still beat
the guess level by brute force -- with h heads it can read h fixed slots per layer and let
the MLP compare -- but it cannot reach 100% once n is larger than what its heads can read.

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
    recall_queries: Q, queries after the context.
    recall_replacement: queries are keys drawn with replacement (True), or Q distinct keys of
      the row in a new order (False; Q <= P; with Q = P the last answer follows by
      elimination, the first never does).
    recall_filler: F filler tokens (SEP) in the context: the P pairs (each key next to its
      value) sit at random places among them, so no slot holds a key in every row. 0: the
      pairs fill slots 0 .. 2P-1.
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
  recall_replacement: bool = True
  recall_filler: int = 0
  lookup_len: int = 8
  lookup_queries: int = 8
  lookup_symbols: int = 16
  eval_batches: int = 4

  def __post_init__(self):
    if self.lookup_symbols < self.lookup_len:
      raise ValueError(f"lookup_symbols={self.lookup_symbols} < lookup_len={self.lookup_len}: "
                       "context symbols must be distinct; raise lookup_symbols")
    if self.recall_keys < self.recall_pairs:
      raise ValueError(f"recall_keys={self.recall_keys} < recall_pairs={self.recall_pairs}: "
                       "keys in one sequence must be distinct; raise recall_keys")
    if not self.recall_replacement and self.recall_queries > self.recall_pairs:
      raise ValueError(f"recall_queries={self.recall_queries} > recall_pairs="
                       f"{self.recall_pairs} without replacement: each query is a distinct "
                       "key; lower recall_queries or set recall_replacement=True")
    if self.recall_filler < 0:
      raise ValueError(f"DiagSpec.recall_filler={self.recall_filler} must be >= 0")
    for name in ("reverse_len", "reverse_symbols", "recall_pairs", "recall_queries",
                 "lookup_len", "lookup_queries", "eval_batches"):
      if getattr(self, name) < 1:
        raise ValueError(f"DiagSpec.{name}={getattr(self, name)} must be >= 1")

  @property
  def vocab_size(self) -> int:
    """One vocabulary for both tasks: specials, SEP, then every symbol range."""
    return FIRST + 1 + max(self.reverse_symbols, self.recall_keys + self.recall_values,
                           self.lookup_symbols + self.lookup_len)

  def length(self, task: str) -> int:
    """Tokens per row of `task` (the decoder input adds a leading 0 and drops the last)."""
    if task == "diag_reverse":
      return 2 * self.reverse_len + 1
    if task == "diag_recall":
      return 2 * (self.recall_pairs + self.recall_queries) + self.recall_filler
    if task == "diag_lookup":
      return self.lookup_len + 2 * self.lookup_queries
    raise ValueError(f"unknown diagnostic task {task!r}; known: {TASKS}")


TASKS = ("diag_reverse", "diag_recall", "diag_lookup")
SEP = FIRST
SYM = FIRST + 1  # first symbol id


def recall_guess_level(spec: DiagSpec) -> float:
  """Accuracy of guessing uniformly among the values present in the context (no lookup)."""
  return 1.0 / spec.recall_pairs


def guess_level(task: str, spec: DiagSpec) -> float:
  """Accuracy of a model that knows the task's format but cannot do its core step."""
  if task == "diag_reverse":
    return 1.0 / spec.reverse_symbols
  if task == "diag_recall":
    return recall_guess_level(spec)
  return 1.0 / spec.lookup_len


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
  """(targets [n_rows, 2(P+Q)+F], weights): the context (k v pairs, among F fillers), then
  q a pairs; weights on the answers."""
  p, q, f = spec.recall_pairs, spec.recall_queries, spec.recall_filler
  key_base, value_base = SYM, SYM + spec.recall_keys
  keys = np.argsort(rng.random((n_rows, spec.recall_keys)), axis=1)[:, :p] + key_base
  values = rng.integers(value_base, value_base + spec.recall_values, (n_rows, p))
  if spec.recall_replacement:  # no answer by elimination
    which = rng.integers(0, p, (n_rows, q))
  else:  # the keys again, in a new order
    which = np.argsort(rng.random((n_rows, p)), axis=1)[:, :q]
  queries = np.take_along_axis(keys, which, axis=1)
  answers = np.take_along_axis(values, which, axis=1)
  pairs = np.stack([keys, values], axis=2)  # [rows, P, 2]
  if f:
    context = np.full((n_rows, 2 * p + f), SEP)
    # A random order of P pair units and F filler units; a pair's start is 2x the pairs
    # before it plus the fillers before it.
    is_pair = np.argsort(rng.random((n_rows, p + f)), axis=1) < p
    before = np.cumsum(is_pair, axis=1) - is_pair
    start = (np.arange(p + f) + before)[is_pair].reshape(n_rows, p)
    r = np.arange(n_rows)[:, None]
    context[r, start], context[r, start + 1] = pairs[:, :, 0], pairs[:, :, 1]
  else:
    context = pairs.reshape(n_rows, 2 * p)
  asked = np.stack([queries, answers], axis=2).reshape(n_rows, 2 * q)
  rows = np.concatenate([context, asked], axis=1)
  weights = np.zeros_like(rows)
  weights[:, 2 * p + f + 1::2] = 1
  return rows.astype(np.int32), weights.astype(np.int32)


def lookup_rows(rng: np.random.Generator, n_rows: int, spec: DiagSpec):
  """(targets, weights): n distinct symbols, then q a pairs, a = the slot where q occurs."""
  n, q = spec.lookup_len, spec.lookup_queries
  symbols = np.argsort(rng.random((n_rows, spec.lookup_symbols)), axis=1)[:, :n] + SYM
  # With replacement: were the queries a permutation, the last answers would follow by
  # elimination from the earlier ones, which needs no lookup at all.
  which = rng.integers(0, n, (n_rows, q))
  queries = np.take_along_axis(symbols, which, axis=1)
  answers = which + SYM + spec.lookup_symbols  # slot ids after the symbol range
  asked = np.stack([queries, answers], axis=2).reshape(n_rows, 2 * q)
  rows = np.concatenate([symbols, asked], axis=1)
  weights = np.zeros_like(rows)
  weights[:, n + 1::2] = 1
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
    make = {"diag_reverse": reverse_rows, "diag_recall": recall_rows,
            "diag_lookup": lookup_rows}[name]
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
