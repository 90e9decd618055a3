"""The three tasks of the issue-19 baseline check, as fixed-shape numpy batches.

Every task yields (inputs [b, l], targets [b, l], weights [b, l]) int32 arrays: inputs are the
targets shifted right by one (0 first), the loss and the metrics count only weight-1 tokens.
Training batches depend on (task, seed, step) only, so every model of one seed sees the same
batches; the held-out set depends on the task only.

* ``recall`` (issue 19's spec): 4 key-value pairs (keys distinct, from 16 key symbols; values
  from 16 value symbols, with replacement), then the 4 keys again in a new random order, each
  followed by its value. Row ``k1 v1 .. k4 v4 q1 a1 .. q4 a4`` (16 tokens); vocabulary 40 (0
  padding, 1-3 unused specials, keys 4-19, values 20-35); models are built for length 24. Scored
  on the 4 answers. The 8 padding slots of a 24-token row are not fed: under the causal mask
  they cannot change the logits or the loss of the 16 real slots, so dropping them changes no
  number and saves a third of the compute. `experiments.diagnostics.recall_rows` draws queries
  with replacement, so it does not produce this spec.
* ``lookup`` (`experiments.diagnostics.lookup_rows`): 8 distinct symbols of 16, then 8 queries
  (with replacement) each followed by the slot where it occurs; 24 tokens, vocabulary 40.
* ``lm``: byte-level LM on the CPython reference-manual topics (`synthesizer_jax.demo`), 95%
  train / 5% held out, random windows of 32 bytes (byte + 1; vocabulary 257), every token scored.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import diagnostics

TASKS = ("recall", "lookup", "lm")
KEY0, NUM_KEYS, NUM_VALUES, PAIRS = 4, 16, 16, 4


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """Shape and scoring of one task."""

  name: str
  vocab_size: int
  length: int
  metric: str  # "accuracy" (higher is better) or "bits_per_byte" (lower is better)
  threshold: float
  eval_rows: int


SPECS = {
    "recall": TaskSpec("recall", 40, 24, "accuracy", 0.95, 1024),
    "lookup": TaskSpec("lookup", 40, 24, "accuracy", 0.95, 1024),
    "lm": TaskSpec("lm", 257, 32, "bits_per_byte", 2.2, 512),
}


def recall_rows(rng: np.random.Generator, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
  """(targets [n, 16], weights [n, 16]): pairs, then the keys permuted, each with its value."""
  keys_np = np.argsort(rng.random((n_rows, NUM_KEYS)), axis=1)[:, :PAIRS] + KEY0
  values_np = rng.integers(0, NUM_VALUES, (n_rows, PAIRS)) + KEY0 + NUM_KEYS
  order_np = np.argsort(rng.random((n_rows, PAIRS)), axis=1)
  queries_np = np.take_along_axis(keys_np, order_np, axis=1)
  answers_np = np.take_along_axis(values_np, order_np, axis=1)
  context = np.stack([keys_np, values_np], 2).reshape(n_rows, 2 * PAIRS)
  asked = np.stack([queries_np, answers_np], 2).reshape(n_rows, 2 * PAIRS)
  rows = np.concatenate([context, asked], axis=1)
  weights = np.zeros_like(rows)
  weights[:, 2 * PAIRS + 1::2] = 1
  return rows.astype(np.int32), weights.astype(np.int32)


_LOOKUP = diagnostics.DiagSpec(lookup_len=8, lookup_queries=8, lookup_symbols=16)


def _pad_and_shift(targets: np.ndarray, weights: np.ndarray, length: int):
  b, n = targets.shape
  tgt_bl = np.zeros((b, length), np.int32)
  w_bl = np.zeros((b, length), np.int32)
  tgt_bl[:, :n], w_bl[:, :n] = targets, weights
  inp_bl = np.concatenate([np.zeros((b, 1), np.int32), tgt_bl[:, :-1]], axis=1)
  return inp_bl, tgt_bl, w_bl


_TEXT: dict[str, np.ndarray] = {}


def _text(split: str) -> np.ndarray:
  if not _TEXT:
    from synthesizer_jax.demo import load_text

    data = np.frombuffer(load_text(), np.uint8)
    cut = int(len(data) * 0.95)
    _TEXT["train"], _TEXT["held_out"] = data[:cut], data[cut:]
  return _TEXT[split]


def _windows(rng: np.random.Generator, data: np.ndarray, n_rows: int, length: int) -> np.ndarray:
  starts = rng.integers(0, len(data) - length - 1, n_rows)
  return np.stack([data[s:s + length + 1] for s in starts]).astype(np.int32) + 1


def rows(task: str, rng: np.random.Generator, n_rows: int, split: str = "train"):
  """(inputs, targets, weights), each [n_rows, length] int32."""
  spec = SPECS[task]
  if task == "recall":
    return _pad_and_shift(*recall_rows(rng, n_rows), 4 * PAIRS)
  if task == "lookup":
    return _pad_and_shift(*diagnostics.lookup_rows(rng, n_rows, _LOOKUP), spec.length)
  if task == "lm":
    win_bl = _windows(rng, _text(split), n_rows, spec.length)
    return win_bl[:, :-1], win_bl[:, 1:], np.ones_like(win_bl[:, 1:])
  raise ValueError(f"unknown task {task!r}; known: {TASKS}")


def train_chunk(task: str, seed: int, start: int, steps: int, batch: int):
  """Batches of steps start .. start + steps - 1 of `seed`, stacked: three [steps, b, l] arrays."""
  task_id = TASKS.index(task)
  parts = [rows(task, np.random.default_rng([task_id, 0, seed, start + i]), batch)
           for i in range(steps)]
  return tuple(np.stack(p) for p in zip(*parts, strict=True))


def held_out(task: str):
  """The fixed held-out set of `task` (independent of the seed)."""
  rng = np.random.default_rng([TASKS.index(task), 1])
  return rows(task, rng, SPECS[task].eval_rows, split="held_out")
