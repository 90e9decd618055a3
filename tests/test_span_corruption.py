"""T5's span corruption (synthesizer_jax/data/span_corruption.py) on its defining properties:
noise fraction and mean span length, clean-first alternation, sentinel order, inputs and
targets reconstructing the document, determinism for a seed, sentinels above every real
piece, and T5's length helper (512 input pieces <- 568 raw pieces, 114 targets)."""

import numpy as np
import pytest

from synthesizer_jax.data import span_corruption as sc

VOCAB = 1000


def reconstruct(inputs, targets, vocab_size):
  """The document back from (inputs, targets): each sentinel of the inputs replaced by the
  pieces after the same sentinel in the targets (a reference written independently)."""
  spans, current = {}, None
  for t in targets.tolist():
    if t >= vocab_size - 200:  # a sentinel (the tests' documents use ids < 800)
      current = t
      spans[current] = []
    else:
      spans[current].append(t)
  out = []
  for t in inputs.tolist():
    out.extend(spans.pop(t) if t in spans else [t])
  assert not spans, "a target span has no sentinel in the inputs"
  return np.array(out)


def runs(mask):
  """[(value, length)] of the runs of a boolean row."""
  edges = np.flatnonzero(np.diff(mask.astype(int))) + 1
  bounds = np.concatenate([[0], edges, [len(mask)]])
  return [(bool(mask[a]), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_inputs_and_targets_reconstruct_the_document_with_sentinels_in_order():
  rng = np.random.default_rng(0)
  for length in (2, 3, 7, 20, 100, 568):
    tokens = rng.integers(2, 800, length)
    inputs, targets = sc.span_corrupt(tokens, VOCAB, np.random.default_rng(length))
    np.testing.assert_array_equal(reconstruct(inputs, targets, VOCAB), tokens)
    _, spans = sc.span_counts(length)
    want = VOCAB - 1 - np.arange(spans)  # <S0> = vocab_size - 1, counted down
    np.testing.assert_array_equal(inputs[inputs >= 800], want)
    np.testing.assert_array_equal(targets[targets >= 800], want)
    assert targets[0] == VOCAB - 1  # the targets start with the first span's sentinel


def test_the_docstring_example():
  tokens = np.arange(10, 18)  # a b c d e f g h
  mask = np.array([0, 0, 1, 1, 0, 0, 1, 0], bool)
  inputs, targets = sc.corrupt(tokens, mask, 100)
  assert inputs.tolist() == [10, 11, 99, 14, 15, 98, 17]
  assert targets.tolist() == [99, 12, 13, 98, 16]


def test_noise_fraction_and_mean_span_length_over_many_documents():
  rng = np.random.default_rng(1)
  noise = spans = pieces = 0
  for _ in range(2000):
    length = int(rng.integers(20, 600))
    mask = sc.noise_mask(length, rng)
    r = runs(mask)
    # Clean first, then alternating; every span non-empty; as many clean as noise spans.
    assert [v for v, _ in r] == [i % 2 == 1 for i in range(len(r))]
    assert len(r) % 2 == 0 and all(n > 0 for _, n in r)
    want_noise, want_spans = sc.span_counts(length)
    assert mask.sum() == want_noise and len(r) // 2 == want_spans
    noise, spans, pieces = noise + mask.sum(), spans + len(r) // 2, pieces + length
  assert abs(noise / pieces - 0.15) < 0.002
  assert abs(noise / spans - 3.0) < 0.05


def test_span_lengths_are_uniform_partitions():
  # 5 noise pieces in 2 spans: the 4 splits (1+4, 2+3, 3+2, 4+1) are equally likely.
  rng = np.random.default_rng(2)
  firsts = [sc._partition(rng, 5, 2)[0] for _ in range(4000)]
  freq = np.bincount(firsts, minlength=5)[1:] / len(firsts)
  assert np.all(np.abs(freq - 0.25) < 0.03), freq
  parts = sc._partition(rng, 17, 17)
  assert parts.tolist() == [1] * 17


def test_deterministic_for_a_seed_and_different_across_seeds():
  tokens = np.arange(2, 302)
  a = sc.span_corrupt(tokens, VOCAB, np.random.default_rng(7))
  b = sc.span_corrupt(tokens, VOCAB, np.random.default_rng(7))
  c = sc.span_corrupt(tokens, VOCAB, np.random.default_rng(8))
  for x, y in zip(a, b, strict=True):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])


def test_no_sentinel_is_a_real_piece():
  pieces, length = 800, 568
  need = sc.num_sentinels(length)
  sc.check_sentinels(pieces, pieces + need, length)
  with pytest.raises(ValueError, match=rf"needs {need} sentinel ids above the vocabulary's "
                     rf"800 pieces.*at least {pieces + need}"):
    sc.check_sentinels(pieces, pieces + need - 1, length)
  tokens = np.random.default_rng(3).integers(0, pieces, length)
  inputs, targets = sc.span_corrupt(tokens, pieces + need, np.random.default_rng(3))
  sentinels = np.concatenate([inputs[inputs >= pieces], targets[targets >= pieces]])
  assert len(sentinels) == 2 * need and not set(sentinels) & set(tokens.tolist())


@pytest.mark.parametrize("inputs_length", [16, 64, 114, 512, 1024])
def test_lengths_fill_the_inputs_exactly_or_as_nearly_as_possible(inputs_length):
  raw, targets_length = sc.lengths_for(inputs_length)
  if inputs_length == 512:
    assert (raw, targets_length) == (568, 114)  # T5's random_spans_helper at its defaults
  tokens = np.arange(2, 2 + raw)
  inputs, targets = sc.span_corrupt(tokens, 10_000, np.random.default_rng(0))
  assert len(inputs) + 1 <= inputs_length and len(targets) + 1 == targets_length  # + EOS
  more, _ = sc.span_corrupt(np.arange(2, 3 + raw), 10_000, np.random.default_rng(0))
  assert len(more) + 1 > inputs_length  # one more raw piece would not fit
  with pytest.raises(ValueError, match="too short"):
    sc.lengths_for(2)


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="at least 2 pieces"):
    sc.span_counts(1)
  with pytest.raises(ValueError, match="noise_density must be in"):
    sc.span_counts(10, noise_density=1.0)
  with pytest.raises(ValueError, match="one same-length row"):
    sc.corrupt(np.arange(4), np.zeros(3, bool), 10)
