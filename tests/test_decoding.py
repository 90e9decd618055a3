"""Cached decoding == full forward for every kind; greedy / sampling / beam search; cache sizes."""

import itertools

import jax
import numpy as np
import pytest
from helpers import ALL_KINDS, small_config

import synthesizer_jax as sj
from synthesizer_jax import decode_cache, decoding

PROMPT = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], np.int32)  # right-padded, lengths 4 and 2


def _lm(kind, **kw):
  model = sj.DecoderLM(small_config(self_attention=kind, **kw))
  return model, model.init(jax.random.key(0), PROMPT)


def _stepwise_lm(model, variables, tokens_bp, positions_bp, continuation_bn):
  """Prefill tokens_bp, then feed continuation one token per step; logits of every step."""
  cache = decoding.init_cache(model, tokens_bp.shape[0], tokens_bp.shape[1] +
                              continuation_bn.shape[1])
  logits, mut = model.apply({**variables, "cache": cache}, tokens_bp, positions_bp,
                            mode="prefill", mutable=["cache"])
  outs, cache = [logits[:, -1]], mut["cache"]
  next_pos = positions_bp[:, -1] + 1
  for i in range(continuation_bn.shape[1]):
    logits, mut = model.apply({**variables, "cache": cache}, continuation_bn[:, i:i + 1],
                              (next_pos + i)[:, None], mode="decode", mutable=["cache"])
    outs.append(logits[:, -1])
    cache = mut["cache"]
  return np.stack(outs, 1), cache


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_decoder_lm_prefill_then_steps_equals_full_forward(kind):
  model, variables = _lm(kind)
  tokens, positions, lengths = decoding.left_align(PROMPT, 0)
  cont = np.array([[11, 12, 13], [14, 15, 16]], np.int32)
  stepped, cache = _stepwise_lm(model, variables, tokens, positions, cont)
  for b, n in enumerate(lengths):
    seq = np.concatenate([PROMPT[b, :n], cont[b]])[None]
    full = np.asarray(model.apply(variables, seq))[0]
    np.testing.assert_allclose(stepped[b], full[n - 1:], rtol=1e-4, atol=1e-4)
  keyed = [path for path, _ in jax.tree_util.tree_leaves_with_path(cache)
           if "cached_keys" in jax.tree_util.keystr(path)]
  assert bool(keyed) == sj.attention.needs_keys(kind)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_encoder_decoder_prefill_then_steps_equals_full_forward(kind):
  cfg = small_config(self_attention=kind, cross_attention=kind)
  model = sj.EncoderDecoder(cfg)
  src = np.array([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]], np.int32)
  dec_in = np.array([[0, 11, 12, 13], [0, 14, 15, 16]], np.int32)  # shifted-right targets
  variables = model.init(jax.random.key(0), src, dec_in)
  full = np.asarray(model.apply(variables, src, dec_in))
  cache = decoding.init_cache(model, 2, 4, encoder_len=5)
  logits, mut = model.apply({**variables, "cache": cache}, src, dec_in[:, :1],
                            method=decode_cache.prefill_encdec, mutable=["cache"])
  outs, cache = [np.asarray(logits[:, -1])], mut["cache"]
  for i in range(1, 4):
    logits, mut = model.apply({**variables, "cache": cache}, None, None, dec_in[:, i:i + 1], None,
                              np.full((2, 1), i), mode="decode", method="decode",
                              mutable=["cache"])
    outs.append(np.asarray(logits[:, -1]))
    cache = mut["cache"]
  np.testing.assert_allclose(np.stack(outs, 1), full, rtol=1e-4, atol=1e-4)
  names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(cache)}
  assert any("cross_keys" in n for n in names) == sj.attention.needs_keys(kind)


def _kv_bytes(cache):
  leaves = [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(cache)]
  return sum(x.nbytes for name, x in leaves if "cached_value" in name or "cached_keys" in name)


@pytest.mark.parametrize("kind", ["dense", "random", "fixed_random", "factorized_dense",
                                  "factorized_random", "dense+random"])
def test_synthetic_cache_is_half_of_dot(kind):
  dot = decoding.init_cache(_lm("dot")[0], 4, 12)
  syn = decoding.init_cache(_lm(kind)[0], 4, 12)
  assert _kv_bytes(syn) * 2 == _kv_bytes(dot)


def _teacher_forced(model, variables, prompt_row, generated):
  """Full-forward logits predicting each generated token (no cache involved)."""
  seq = np.concatenate([prompt_row, generated])[None].astype(np.int32)
  return np.asarray(model.apply(variables, seq))[0, len(prompt_row) - 1:-1]


def test_leading_start_token_is_part_of_the_prompt():
  """[0, 5, 6] (seqio's start token first) keeps its 0; only trailing pads are padding."""
  tokens, positions, lengths = decoding.left_align(np.array([[0, 5, 6, 0], [7, 0, 0, 0]]), 0)
  assert lengths.tolist() == [3, 1]
  assert tokens.tolist() == [[0, 0, 5, 6], [0, 0, 0, 7]]
  assert positions.tolist() == [[-1, 0, 1, 2], [-1, -1, -1, 0]]
  model, variables = _lm("dense+dot")
  out = decoding.generate(model, variables, np.array([[0, 5, 6]]), max_new_tokens=3, eos_id=None)
  logits = _teacher_forced(model, variables, np.array([0, 5, 6]), out.tokens[0])
  assert out.tokens[0].tolist() == logits.argmax(-1).tolist()


@pytest.mark.parametrize("kind", ["dot", "dense", "random+dot"])
def test_greedy_matches_uncached_argmax(kind):
  model, variables = _lm(kind)
  out = decoding.generate(model, variables, PROMPT, max_new_tokens=5, eos_id=None)
  for b, row in enumerate(PROMPT):
    logits = _teacher_forced(model, variables, row[row != 0], out.tokens[b])
    assert out.tokens[b].tolist() == logits.argmax(-1).tolist()
    logp = jax.nn.log_softmax(logits, -1)
    np.testing.assert_allclose(float(out.scores[b]),
                               sum(float(logp[i, t]) for i, t in enumerate(out.tokens[b])),
                               rtol=1e-4)


def test_sampling_respects_top_k_and_top_p():
  model, variables = _lm("dense+dot")
  greedy = decoding.generate(model, variables, PROMPT, max_new_tokens=5, eos_id=None)
  top1 = decoding.generate(model, variables, PROMPT, max_new_tokens=5, eos_id=None,
                           method="sample", top_k=1, rng=jax.random.key(3))
  np.testing.assert_array_equal(top1.tokens, greedy.tokens)
  tiny_p = decoding.generate(model, variables, PROMPT, max_new_tokens=5, eos_id=None,
                             method="sample", top_p=1e-6, rng=jax.random.key(3))
  np.testing.assert_array_equal(tiny_p.tokens, greedy.tokens)
  k = 3
  for seed in range(3):
    out = decoding.generate(model, variables, PROMPT, max_new_tokens=5, eos_id=None,
                            method="sample", top_k=k, temperature=2.0, rng=jax.random.key(seed))
    for b, row in enumerate(PROMPT):
      logits = _teacher_forced(model, variables, row[row != 0], out.tokens[b])
      for i, tok in enumerate(out.tokens[b]):
        assert tok in np.argsort(logits[i])[-k:]


def test_beam_search_finds_the_best_sequence_exhaustively():
  """With beams >= vocab^(n-1), beam search is exhaustive: it returns the argmax sequence."""
  cfg = small_config(vocab_size=4, self_attention="dense+dot")
  model = sj.DecoderLM(cfg)
  prompt = np.array([[1, 2, 3]], np.int32)
  variables = model.init(jax.random.key(1), prompt)
  n = 3
  out = decoding.generate(model, variables, prompt, max_new_tokens=n, method="beam",
                          num_beams=16, eos_id=None, alpha=0.0)
  conts = np.array(list(itertools.product(range(4), repeat=n)), np.int32)
  seqs = np.concatenate([np.repeat(prompt, len(conts), 0), conts], axis=1)
  logp = np.asarray(jax.nn.log_softmax(model.apply(variables, seqs), -1))
  total = sum(logp[np.arange(len(conts)), 2 + i, conts[:, i]] for i in range(n))
  best, best_lp = tuple(conts[total.argmax()].tolist()), float(total.max())
  assert tuple(out.tokens[0].tolist()) == best
  np.testing.assert_allclose(float(out.scores[0]), best_lp, rtol=1e-4)
  one_beam = decoding.generate(model, variables, prompt, max_new_tokens=n, method="beam",
                               num_beams=1, eos_id=None, alpha=0.0)
  greedy = decoding.generate(model, variables, prompt, max_new_tokens=n, eos_id=None)
  np.testing.assert_array_equal(one_beam.tokens, greedy.tokens)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_generation_stops_at_eos_and_pads(method):
  model, variables = _lm("dense+dot")
  beam = dict(num_beams=2, alpha=0.0) if method == "beam" else {}
  free = decoding.generate(model, variables, PROMPT[:1], max_new_tokens=6, eos_id=None,
                           method=method, **beam)
  eos = int(free.tokens[0, 2])
  first = free.tokens[0].tolist().index(eos)
  out = decoding.generate(model, variables, PROMPT[:1], max_new_tokens=6, eos_id=eos,
                          method=method, **beam)
  row = out.tokens[0].tolist()
  assert eos in row
  cut = row.index(eos)
  assert all(t == 0 for t in row[cut + 1:])
  if method == "greedy":
    assert row[:cut + 1] == free.tokens[0].tolist()[:first + 1]


def test_encoder_decoder_greedy_and_beam_run():
  cfg = small_config(self_attention="random", cross_attention="dot")
  model = sj.EncoderDecoder(cfg)
  src = np.array([[3, 4, 5, 6], [7, 8, 0, 0]], np.int32)
  variables = model.init(jax.random.key(0), src, np.zeros((2, 3), np.int32))
  start = np.zeros((2, 1), np.int32)
  greedy = decoding.generate(model, variables, start, encoder_tokens=src, max_new_tokens=4,
                             eos_id=None)
  dec_in = np.concatenate([start, np.asarray(greedy.tokens[:, :-1])], axis=1)
  logits = np.asarray(model.apply(variables, src, dec_in))
  np.testing.assert_array_equal(logits.argmax(-1), greedy.tokens)
  beam = decoding.generate(model, variables, start, encoder_tokens=src, max_new_tokens=4,
                           method="beam", num_beams=3)
  assert beam.tokens.shape == (2, 4)


def test_bad_generation_requests_are_clear_errors():
  model, variables = _lm("dense")
  with pytest.raises(ValueError, match="empty prompt in rows \\[1\\]"):
    decoding.generate(model, variables, np.array([[5, 6], [0, 0]]), max_new_tokens=2)
  with pytest.raises(ValueError, match="non-empty"):
    decoding.generate(model, variables, np.zeros((1, 0), np.int32), max_new_tokens=2)
  with pytest.raises(ValueError, match="exceeds max_len=12"):
    decoding.generate(model, variables, PROMPT, max_new_tokens=20)
  with pytest.raises(ValueError, match="method='nope'"):
    decoding.generate(model, variables, PROMPT, max_new_tokens=2, method="nope")
  with pytest.raises(ValueError, match="needs rng"):
    decoding.generate(model, variables, PROMPT, max_new_tokens=2, method="sample")
  with pytest.raises(ValueError, match="decode step without a cache"):
    model.apply(variables, PROMPT[:, :1], np.zeros((2, 1), np.int32), mode="decode")
  with pytest.raises(ValueError, match="mode='bogus'"):
    model.apply(variables, PROMPT, mode="bogus")
