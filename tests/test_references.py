"""references.py: the unigram baseline and bits per byte, against NumPy computed here."""

import math
import types

import numpy as np
import pytest

from synthesizer_jax import references
from synthesizer_jax.data import vocab as vocab_lib

pytest.importorskip("sentencepiece")

TEXT = ["The quick brown fox jumps over the lazy dog.",
        "A list is a mutable sequence; a tuple is not.",
        "Über Äpfel und Birnen: café, naïve, façade.",
        "Functions return None when they reach the end."] * 20


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("vocab") / "v.model")
  vocab_lib.train_vocab(TEXT, path, 120)
  return vocab_lib.SentencePieceVocabulary(path)


def test_piece_bytes_count_the_utf8_bytes_of_the_text(vocab):
  table = references.piece_bytes(vocab, vocab.vocab_size + 8)  # a padded model vocabulary
  assert table.shape == (vocab.vocab_size + 8,) and not table[vocab.vocab_size:].any()
  assert (table[vocab.pad_id], table[vocab.eos_id]) == (0.0, 1.0)
  for line in set(TEXT):
    ids = vocab.encode(line)
    # SentencePiece's dummy prefix makes the first word count one leading space.
    assert table[ids].sum() == len(line.encode("utf-8")) + 1, line


def test_unigram_logprobs_are_add_one_smoothed_counts():
  rng = np.random.default_rng(0)
  batches = [{"decoder_target_tokens": rng.integers(0, 10, (3, 7)),
              "decoder_loss_weights": rng.integers(0, 2, (3, 7))} for _ in range(4)]
  logp, seen = references.unigram_logprobs(batches, 12)
  tokens = np.concatenate([b["decoder_target_tokens"][b["decoder_loss_weights"] > 0]
                           for b in batches])
  want = (np.bincount(tokens, minlength=12) + 1) / (len(tokens) + 12)
  np.testing.assert_allclose(np.exp(logp), want)
  assert seen == len(tokens)
  # Two processes that read the same counts: summed before smoothing, not averaged after.
  logp2, seen2 = references.unigram_logprobs(batches, 12, combine=lambda x: 2 * x)
  want2 = (2 * np.bincount(tokens, minlength=12) + 1) / (2 * len(tokens) + 12)
  np.testing.assert_allclose(np.exp(logp2), want2)
  assert seen2 == 2 * len(tokens)
  _, capped = references.unigram_logprobs(batches, 12, max_tokens=1)
  assert capped == int((batches[0]["decoder_loss_weights"] > 0).sum())


def test_lm_references_score_the_evaluated_tokens(vocab):
  rows = [vocab.encode(t) + [vocab.eos_id] for t in TEXT[:6]]
  width = max(map(len, rows))
  tgt = np.array([r + [0] * (width - len(r)) for r in rows], np.int32)
  batch = {"decoder_target_tokens": tgt, "decoder_loss_weights": (tgt > 0).astype(np.int32)}
  train_batches = [{k: v[::-1] for k, v in batch.items()}]
  run = types.SimpleNamespace(
      model_cfg=types.SimpleNamespace(vocab_size=128), vocab=vocab,
      cfg=types.SimpleNamespace(eval_batches=1),
      dataset=lambda split, train: iter(train_batches),
      eval_batches=lambda split: iter([batch, batch]))  # only eval_batches=1 is scored
  tokens = int((tgt > 0).sum())
  metrics = {"nll": 2.5, "tokens": float(tokens)}
  out = references.lm_references(run, "validation", metrics)
  num_bytes = sum(len(t.encode()) + 2 for t in TEXT[:6])  # + dummy-prefix space + EOS
  counts = np.bincount(tgt[tgt > 0], minlength=128) + 1.0
  unigram_nll = -np.sum(np.log(counts / counts.sum())[tgt[tgt > 0]])
  assert out["bytes_per_token"] == pytest.approx(num_bytes / tokens)
  assert out["bits_per_byte"] == pytest.approx(2.5 * tokens / math.log(2) / num_bytes)
  assert out["unigram_perplexity"] == pytest.approx(math.exp(unigram_nll / tokens))
  assert out["unigram_bits_per_byte"] == pytest.approx(unigram_nll / math.log(2) / num_bytes)
