"""What a language model has to beat, and a score that does not depend on the tokenizer.

    refs = lm_references(run, "validation", metrics)   # metrics: `evaluation.teacher_forced`'s
    refs["unigram_perplexity"], refs["bits_per_byte"], refs["unigram_bits_per_byte"]

* The unigram baseline: log p(token) from the token counts of the training split's targets
  (the first `MAX_UNIGRAM_TOKENS`), add-one smoothed over the model's vocabulary, scored on
  the same evaluation tokens as the model. A model at this perplexity has learned token
  frequencies and nothing else.
* Bits per byte: the evaluation tokens' total negative log-likelihood in bits over the
  UTF-8 bytes they stand for, so vocabularies of different sizes (or bytes) compare. A
  token's bytes are its SentencePiece piece with "▁" read as a space (so a text's first
  word counts one space too many: under 1% at the default lengths); EOS counts 1 byte (the
  newline between documents), a byte-fallback piece 1, padding 0. A vocabulary that is not
  SentencePiece counts the bytes of each id's own decoded text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

MAX_UNIGRAM_TOKENS = 20_000_000
_LN2 = math.log(2.0)


def piece_bytes(vocab, vocab_size: int) -> np.ndarray:
  """[vocab_size] float64: the UTF-8 bytes each token id stands for (see the module doc)."""
  sp = getattr(vocab, "tokenizer", None)
  table = np.zeros(vocab_size, np.float64)
  if sp is None:  # not SentencePiece: each id's own decoded text
    for i in range(min(vocab_size, vocab.vocab_size)):
      table[i] = len(vocab.decode([i]).encode("utf-8"))
  else:
    for i in range(min(vocab_size, sp.get_piece_size())):
      if sp.is_byte(i) or sp.is_unknown(i):
        table[i] = 1.0
      elif not sp.is_control(i):
        table[i] = len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
  table[getattr(vocab, "eos_id", 1)] = 1.0
  table[getattr(vocab, "pad_id", 0)] = 0.0
  return table


def unigram_logprobs(batches: Iterable[Mapping[str, np.ndarray]], vocab_size: int,
                     max_tokens: int = MAX_UNIGRAM_TOKENS,
                     combine=lambda x: x) -> tuple[np.ndarray, int]:
  """(log p [vocab_size], tokens counted): add-one smoothed target-token frequencies.

  `combine` adds up the counts of every process (each reads its own part of the split).
  """
  counts = np.zeros(vocab_size + 1, np.float64)  # the last entry: tokens counted
  for batch in batches:
    tgt = np.asarray(batch["decoder_target_tokens"])
    keep = np.asarray(batch["decoder_loss_weights"]) > 0
    counts[:vocab_size] += np.bincount(tgt[keep].ravel(), minlength=vocab_size)[:vocab_size]
    counts[vocab_size] += keep.sum()
    if counts[vocab_size] >= max_tokens:
      break
  counts = combine(counts)
  counts, seen = counts[:vocab_size], int(counts[vocab_size])
  if not seen:
    raise ValueError("the training split gave no target tokens to count")
  counts += 1.0
  return np.log(counts / counts.sum()), seen


def _global_sum(x: np.ndarray) -> np.ndarray:
  """float64 `x` summed over the processes, exactly: gathered as its bytes, because JAX
  without x64 would gather float64 as float32 (counts over 2**24 would round)."""
  import jax

  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils

  raw = np.ascontiguousarray(x, np.float64).view(np.uint8)
  gathered = np.asarray(multihost_utils.process_allgather(raw))  # [processes, 8 * x.size]
  return np.ascontiguousarray(gathered).view(np.float64).reshape(-1, *x.shape).sum(axis=0)


def lm_references(run, split: str, metrics: Mapping[str, Any]) -> dict[str, float]:
  """Unigram perplexity and bits per byte (model and unigram) on `split`'s first
  `eval_batches` batches: the batches `evaluation.teacher_forced` scored into `metrics`."""
  vocab_size = run.model_cfg.vocab_size
  logp, counted = unigram_logprobs(run.dataset("train", train=False), vocab_size,
                                   combine=_global_sum)
  table = piece_bytes(run.vocab, vocab_size)
  sums = np.zeros(3)  # bytes, unigram nll, tokens
  for i, batch in enumerate(run.eval_batches(split)):
    if i >= run.cfg.eval_batches:
      break
    tgt = np.minimum(np.asarray(batch["decoder_target_tokens"]), vocab_size - 1)
    w = (np.asarray(batch["decoder_loss_weights"]) > 0).astype(np.float64)
    sums += [np.sum(table[tgt] * w), -np.sum(logp[tgt] * w), np.sum(w)]
  num_bytes, unigram_nll, tokens = (float(v) for v in _global_sum(sums))
  model_nll = float(metrics["nll"]) * float(metrics["tokens"])
  return {"unigram_perplexity": math.exp(unigram_nll / tokens),
          "bits_per_byte": model_nll / _LN2 / num_bytes,
          "unigram_bits_per_byte": unigram_nll / _LN2 / num_bytes,
          "bytes_per_token": num_bytes / tokens, "unigram_train_tokens": float(counted)}
