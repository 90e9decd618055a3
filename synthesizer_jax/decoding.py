"""Cached autoregressive decoding: `generate`, greedy / sampling / beam search.

`generate` prefills the prompt into the cache in one call (mode="prefill"),
then produces one token per step (mode="decode") inside a jitted
`lax.while_loop`, stopping at EOS or `max_new_tokens`. What each layer caches
depends on its kind: values for every kind, keys only for kinds that read them
(`dot` and mixtures containing it); see docs/decoding.md.

Prompts are right-padded with `pad_id` ([batch, prompt_len]); rows are
left-aligned internally (padding slots get position -1, which the cache masks),
so rows of different lengths decode together.

The parts: `decode_cache.py` (the cache, and the model's prefill and decode-step calls),
`beam_search.py` (method="beam"), and here the checks of `generate`'s options and the
greedy / sampling loop. `init_cache`, `cache_bytes`, `Generation` and `length_penalty`
are importable from here too.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synthesizer_jax import attention as registry
from synthesizer_jax import checks
from synthesizer_jax.beam_search import beam_search, length_penalty
from synthesizer_jax.decode_cache import NEG, Generation, Stepper, cache_bytes, init_cache
from synthesizer_jax.layers import check_token_ids
from synthesizer_jax.transformer import DecoderLM, EncoderDecoder

__all__ = ["NEG", "Generation", "cache_bytes", "generate", "init_cache", "left_align",
           "length_penalty"]


def left_align(prompt_bp: np.ndarray, pad_id: int):
  """Right-padded prompts -> (left-padded tokens, positions (-1 on padding), lengths).

  A row's length runs to its last token that is not `pad_id`: trailing pads are padding,
  a pad id inside the prompt (such as the seqio start token 0 in front) is a real token.
  """
  prompt_bp = np.asarray(prompt_bp)
  if prompt_bp.ndim != 2 or prompt_bp.shape[1] == 0:
    raise ValueError(f"prompt must be a non-empty [batch, prompt_len] array, got {prompt_bp.shape}")
  real_bp = prompt_bp != pad_id
  lengths_b = np.where(real_bp.any(1), prompt_bp.shape[1] - np.argmax(real_bp[:, ::-1], axis=1), 0)
  if (lengths_b == 0).any():
    raise ValueError(f"empty prompt in rows {np.flatnonzero(lengths_b == 0).tolist()}: every row "
                     f"needs at least one token that is not pad_id={pad_id}")
  width = prompt_bp.shape[1]
  tokens = np.full_like(prompt_bp, pad_id)
  positions = np.full(prompt_bp.shape, -1, np.int32)
  for b, n in enumerate(lengths_b):
    tokens[b, width - n:] = prompt_bp[b, :n]
    positions[b, width - n:] = np.arange(n)
  return tokens, positions, lengths_b.astype(np.int32)


def _filter_logits(logits_bv, temperature, top_k, top_p):
  logits_bv = logits_bv / temperature
  if top_k:
    kth_b1 = jax.lax.top_k(logits_bv, top_k)[0][:, -1:]
    logits_bv = jnp.where(logits_bv < kth_b1, NEG, logits_bv)
  if top_p < 1.0:
    sorted_bv = jnp.sort(logits_bv, axis=-1)[:, ::-1]
    cum_bv = jnp.cumsum(jax.nn.softmax(sorted_bv, axis=-1), axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (always at least the best token).
    cutoff_b = jnp.sum(cum_bv - jax.nn.softmax(sorted_bv, axis=-1) < top_p, axis=-1)
    thresh_b1 = jnp.take_along_axis(sorted_bv, cutoff_b[:, None] - 1, axis=-1)
    logits_bv = jnp.where(logits_bv < thresh_b1, NEG, logits_bv)
  return logits_bv


_METHOD_OPTIONS = {"greedy": (), "sample": ("temperature", "top_k", "top_p", "rng"),
                   "beam": ("num_beams", "alpha")}


def _sampling_options(temperature, top_k, top_p, rng, vocab_size: int):
  """Checked (temperature, top_k, top_p) of method='sample'."""
  if rng is None:
    raise ValueError("method='sample' needs rng=jax.random.key(...)")
  if not (isinstance(rng, jax.Array) and (jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
                                          or (rng.shape == (2,) and rng.dtype == jnp.uint32))):
    raise TypeError(f"rng={rng!r:.60} is not a PRNG key: pass rng=jax.random.key(seed)")
  temperature = checks.real(temperature, "temperature", 0.0, low_open=True,
                            fix=" (use method='greedy' for argmax)")
  top_k = checks.integer(top_k, "top_k", 0, vocab_size, " (0 = no top-k filtering)")
  top_p = checks.real(top_p, "top_p", 0.0, low_open=True, high=1.0,
                      fix=" (the probability mass kept; 1.0 = no nucleus filtering)")
  return temperature, top_k, top_p


def _encoder_tokens(encoder_tokens, prompt_bp, cfg, uses_positions: bool) -> np.ndarray:
  """Checked encoder_tokens [batch, src_len] of an EncoderDecoder's generate."""
  if encoder_tokens is None:
    raise ValueError("generate with an EncoderDecoder needs encoder_tokens [batch, src_len] "
                     "(the source sequences)")
  encoder_tokens = np.asarray(checks.int_array(encoder_tokens, "encoder_tokens"))
  check_token_ids(encoder_tokens, cfg.vocab_size, "encoder_tokens")
  if encoder_tokens.shape[0] != prompt_bp.shape[0]:
    raise ValueError(f"encoder_tokens has shape {encoder_tokens.shape} but prompt has shape "
                     f"{prompt_bp.shape}: the batch sizes must match (one prompt row per source "
                     "row; [[pad_id]] * batch starts every row from scratch)")
  if uses_positions and encoder_tokens.shape[1] > cfg.max_len:
    raise ValueError(f"encoder_tokens has length {encoder_tokens.shape[1]}, more than "
                     f"max_len={cfg.max_len} of the synthetic attention: truncate the source")
  empty = np.flatnonzero(~(encoder_tokens != cfg.pad_id).any(1))
  if empty.size:
    raise ValueError(f"encoder_tokens rows {empty.tolist()} hold only pad_id={cfg.pad_id}: "
                     "every source row needs at least one token (end it with EOS)")
  return encoder_tokens


def generate(model: nn.Module, variables: Any, prompt, *, max_new_tokens: int,
             method: str = "greedy", encoder_tokens=None, eos_id: int | None = 1,
             pad_id: int | None = None, temperature: float | None = None,
             top_k: int | None = None, top_p: float | None = None,
             num_beams: int | None = None, alpha: float | None = None,
             rng: jax.Array | None = None) -> Generation:
  """Generates continuations with the decode cache.

  Args:
    model: a `DecoderLM` or `EncoderDecoder`.
    variables: its variables ({"params": ..., maybe "constants": ...}).
    prompt: [batch, prompt_len] int, right-padded with pad_id (trailing pad ids are padding;
      a leading pad id, the seqio start token, is part of the prompt). For an EncoderDecoder
      the decoder prompt; use `[[pad_id]] * batch` (T5's start token) to start from scratch.
    max_new_tokens: number of tokens to produce at most.
    method: "greedy", "sample" (temperature / top_k / top_p) or "beam" (num_beams, alpha).
    encoder_tokens: [batch, src_len] source tokens (EncoderDecoder only; refused for a
      DecoderLM), one row per prompt row.
    eos_id: stop a row after this token (None: never stop early).
    pad_id: padding id (default: the model's cfg.pad_id); written after EOS.
    temperature: "sample" only; finite, > 0 (default 1.0).
    top_k: "sample" only; keep the k most likely tokens, 0 <= k <= vocab_size (default 0: all).
    top_p: "sample" only; keep the smallest set of tokens holding this much probability,
      0 < top_p <= 1 (default 1: all).
    num_beams: "beam" only; >= 1 (default 4).
    alpha: "beam" only; exponent of the length penalty, finite, >= 0 (default 0.6; 0: none).
    rng: "sample" only: PRNG key (`jax.random.key(seed)`).

  Options are checked before any work: a bad value raises a TypeError or ValueError that
  names it (docs/reliability.md). An option of another method is refused too (temperature
  with method="greedy" would otherwise be silently ignored).

  Returns:
    Generation(tokens [batch, max_new_tokens], scores [batch]): sum of token log-probs
    (beam: divided by the length penalty).
  """
  cfg = model.cfg
  encdec = isinstance(model, EncoderDecoder)
  if not encdec and not isinstance(model, DecoderLM):
    raise ValueError(f"generate needs a DecoderLM or EncoderDecoder, got {type(model).__name__}")
  if method not in ("greedy", "sample", "beam"):
    raise ValueError(f"method={method!r}: must be 'greedy', 'sample' or 'beam'")
  max_new_tokens = checks.integer(max_new_tokens, "max_new_tokens", 1)
  eos_id = checks.token_id(eos_id, "eos_id", cfg.vocab_size, "; None never stops early")
  pad_id = checks.token_id(pad_id, "pad_id", cfg.vocab_size, "; None takes the model's pad_id")
  pad_id = cfg.pad_id if pad_id is None else pad_id
  given = dict(temperature=temperature, top_k=top_k, top_p=top_p, rng=rng, num_beams=num_beams,
               alpha=alpha)
  foreign = [k for k, v in given.items() if v is not None and k not in _METHOD_OPTIONS[method]]
  if foreign:
    owner = {k: m for m, ks in _METHOD_OPTIONS.items() for k in ks}
    raise ValueError(f"{', '.join(f'{k} (method={owner[k]!r})' for k in foreign)} do not apply "
                     f"to method={method!r}: drop them, or choose the method they belong to")
  temperature = 1.0 if temperature is None else temperature
  top_k, top_p = top_k or 0, 1.0 if top_p is None else top_p
  num_beams, alpha = 4 if num_beams is None else num_beams, 0.6 if alpha is None else alpha
  if method == "sample":
    temperature, top_k, top_p = _sampling_options(temperature, top_k, top_p, rng, cfg.vocab_size)
  if method == "beam":
    num_beams = checks.integer(num_beams, "num_beams", 1)
    alpha = checks.real(alpha, "alpha", 0.0, low_open=False,
                        fix=" (the length penalty's exponent; 0 = no length normalisation)")
  prompt = checks.int_array(prompt, "prompt")
  check_token_ids(prompt, cfg.vocab_size, "prompt")
  kinds = [cfg.self_attention] + ([cfg.cross_attention] if encdec else [])
  uses_positions = any(registry.uses_positions(k) for k in kinds)
  if encdec:
    prompt = np.asarray(prompt)
    if prompt.shape[1] == 0:
      raise ValueError(f"prompt has shape {prompt.shape}: it must be non-empty; [[pad_id]] * "
                       "batch (T5's start token) starts every row from scratch")
    tokens_bp = prompt
    positions_bp = np.broadcast_to(np.arange(prompt.shape[1]), prompt.shape)
    encoder_tokens = _encoder_tokens(encoder_tokens, prompt, cfg, uses_positions)
  else:
    if encoder_tokens is not None:
      raise ValueError("encoder_tokens is for an EncoderDecoder; a DecoderLM only continues its "
                       "prompt: pass encoder_tokens=None (put the source text in the prompt)")
    tokens_bp, positions_bp, _ = left_align(prompt, pad_id)
  total = tokens_bp.shape[1] + max_new_tokens
  if uses_positions and total > cfg.max_len:
    raise ValueError(
        f"prompt length {tokens_bp.shape[1]} + max_new_tokens {max_new_tokens} = {total} exceeds "
        f"max_len={cfg.max_len} of the '{'/'.join(dict.fromkeys(kinds))}' attention: shorten the "
        "prompt or max_new_tokens")
  variables = {k: v for k, v in variables.items() if k not in ("cache", "intermediates")}
  args = (model, variables, jnp.asarray(tokens_bp), jnp.asarray(positions_bp), encoder_tokens)
  static = dict(n_new=max_new_tokens, eos=-1 if eos_id is None else eos_id, pad_id=pad_id)
  if method == "beam":
    return beam_search(*args, k=num_beams, alpha=float(alpha), **static)
  return _sample(*args, jax.random.key(0) if rng is None else rng, greedy=method == "greedy",
                 temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), **static)


@functools.partial(jax.jit, static_argnames=("model", "n_new", "eos", "pad_id", "greedy",
                                             "temperature", "top_k", "top_p"))
def _sample(model, variables, tokens_bp, positions_bp, encoder_tokens, rng, *, n_new, eos,
            pad_id, greedy, temperature, top_k, top_p):
  batch, width = tokens_bp.shape
  stepper = Stepper(model)
  enc_len = None if encoder_tokens is None else encoder_tokens.shape[1]
  cache = init_cache(model, batch, width + n_new, enc_len)
  logits_bv, cache = stepper.prefill(variables, cache, tokens_bp, positions_bp, encoder_tokens)
  next_pos_b = positions_bp[:, -1] + 1

  def cond(state):
    i, _, _, _, _, done_b, _ = state
    return (i < n_new) & ~jnp.all(done_b)

  def body(state):
    i, logits_bv, cache, out_bn, score_b, done_b, rng = state
    rng, key = jax.random.split(rng)
    logp_bv = jax.nn.log_softmax(logits_bv)
    if greedy:
      tok_b = jnp.argmax(logits_bv, axis=-1)
    else:
      tok_b = jax.random.categorical(key, _filter_logits(logits_bv, temperature, top_k, top_p))
    tok_b = jnp.where(done_b, pad_id, tok_b).astype(jnp.int32)
    tok_logp_b = jnp.take_along_axis(logp_bv, tok_b[:, None], 1)[:, 0]
    score_b = score_b + jnp.where(done_b, 0.0, tok_logp_b)
    out_bn = out_bn.at[:, i].set(tok_b)
    done_b = done_b | (tok_b == eos)
    logits_bv, cache = stepper.step(variables, cache, tok_b, next_pos_b + i)
    return i + 1, logits_bv, cache, out_bn, score_b, done_b, rng

  out_bn = jnp.full((batch, n_new), pad_id, jnp.int32)
  state = (jnp.int32(0), logits_bv, cache, out_bn, jnp.zeros(batch), jnp.zeros(batch, bool), rng)
  _, _, _, out_bn, score_b, _, _ = jax.lax.while_loop(cond, body, state)
  return Generation(out_bn, score_b)


