"""Beam search over the decode cache: `generate(..., method="beam")` (`decoding.py`) runs
`beam_search` after checking its options.

Each row keeps `k` live beams and the `k` best finished ones. A step scores every live
beam's extensions (2k candidates kept); candidates ending in EOS join the finished set by
their length-normalised score (GNMT's ((5 + length) / 6) ** alpha), the k best of the rest
stay live, and the cache rows follow their parent beams. The loop stops at `n_new` tokens
or when no live beam, even at the longest length, can beat the worst finished one; a row
with no finished beam returns its best live one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from synthesizer_jax.decode_cache import NEG, Generation, Stepper, init_cache


def length_penalty(length, alpha: float):
  """GNMT length normalisation ((5 + length) / 6) ** alpha."""
  return ((5.0 + length) / 6.0) ** alpha


def gather_beams(tree, beam_idx_bk, batch, k):
  """Reorders every [batch * k, ...] leaf by beam index [batch, k]."""
  def gather(x):
    if x.ndim == 0 or x.shape[0] != batch * k:
      return x
    x = x.reshape((batch, k) + x.shape[1:])
    idx = beam_idx_bk.reshape((batch, k) + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1).reshape((batch * k,) + x.shape[2:])
  return jax.tree.map(gather, tree)


@functools.partial(jax.jit, static_argnames=("model", "k", "n_new", "eos", "pad_id", "alpha"))
def beam_search(model, variables, tokens_bp, positions_bp, encoder_tokens, *, k, n_new, eos,
                pad_id, alpha):
  batch, width = tokens_bp.shape
  stepper = Stepper(model)
  rep = lambda x: None if x is None else jnp.repeat(x, k, axis=0)
  tokens_bp, positions_bp, encoder_tokens = rep(tokens_bp), rep(positions_bp), rep(encoder_tokens)
  enc_len = None if encoder_tokens is None else encoder_tokens.shape[1]
  cache = init_cache(model, batch * k, width + n_new, enc_len)
  logits_xv, cache = stepper.prefill(variables, cache, tokens_bp, positions_bp, encoder_tokens)
  vocab = logits_xv.shape[-1]
  next_pos_x = positions_bp[:, -1] + 1
  # Only beam 0 is live at the start, so the first step does not pick k copies of one token.
  alive_logp_bk = jnp.tile(jnp.array([0.0] + [NEG] * (k - 1)), (batch, 1))
  alive_seq_bkn = jnp.full((batch, k, n_new), pad_id, jnp.int32)
  fin_seq_bkn = jnp.full((batch, k, n_new), pad_id, jnp.int32)
  fin_score_bk = jnp.full((batch, k), NEG)

  def cond(state):
    i, _, _, alive_logp_bk, _, _, fin_score_bk = state
    # Stop when no live beam, even at the longest length, can beat the worst kept finished one.
    best_alive_b = alive_logp_bk.max(-1) / length_penalty(n_new, alpha)
    return (i < n_new) & ~jnp.all(best_alive_b < fin_score_bk.min(-1))

  def body(state):
    i, logits_xv, cache, alive_logp_bk, alive_seq_bkn, fin_seq_bkn, fin_score_bk = state
    logp_bkv = jax.nn.log_softmax(logits_xv).reshape(batch, k, vocab)
    cand_bkv = alive_logp_bk[:, :, None] + logp_bkv
    top_logp_bc, top_idx_bc = jax.lax.top_k(cand_bkv.reshape(batch, k * vocab), 2 * k)
    beam_bc, tok_bc = top_idx_bc // vocab, (top_idx_bc % vocab).astype(jnp.int32)
    seq_bcn = jnp.take_along_axis(alive_seq_bkn, beam_bc[:, :, None], axis=1)
    seq_bcn = seq_bcn.at[:, :, i].set(tok_bc)
    is_eos_bc = tok_bc == eos
    # Finished candidates compete with the finished set by length-normalised score.
    new_fin_bc = jnp.where(is_eos_bc, top_logp_bc / length_penalty(i + 1, alpha), NEG)
    all_fin_score = jnp.concatenate([fin_score_bk, new_fin_bc], axis=1)
    all_fin_seq = jnp.concatenate([fin_seq_bkn, seq_bcn], axis=1)
    fin_score_bk, keep_bk = jax.lax.top_k(all_fin_score, k)
    fin_seq_bkn = jnp.take_along_axis(all_fin_seq, keep_bk[:, :, None], axis=1)
    # The k best candidates that did not end continue.
    alive_c = jnp.where(is_eos_bc, NEG, top_logp_bc)
    alive_logp_bk, pick_bk = jax.lax.top_k(alive_c, k)
    alive_seq_bkn = jnp.take_along_axis(seq_bcn, pick_bk[:, :, None], axis=1)
    parent_bk = jnp.take_along_axis(beam_bc, pick_bk, axis=1)
    tok_x = jnp.take_along_axis(tok_bc, pick_bk, axis=1).reshape(-1)
    cache = gather_beams(cache, parent_bk, batch, k)
    logits_xv, cache = stepper.step(variables, cache, tok_x, next_pos_x + i)
    return i + 1, logits_xv, cache, alive_logp_bk, alive_seq_bkn, fin_seq_bkn, fin_score_bk

  state = (jnp.int32(0), logits_xv, cache, alive_logp_bk, alive_seq_bkn, fin_seq_bkn,
           fin_score_bk)
  _, _, _, alive_logp_bk, alive_seq_bkn, fin_seq_bkn, fin_score_bk = jax.lax.while_loop(
      cond, body, state)
  # Rows with no finished beam fall back to their best live beam.
  alive_score_bk = alive_logp_bk / length_penalty(n_new, alpha)
  use_alive_b = fin_score_bk[:, 0] <= NEG / 2
  best_seq_bn = jnp.where(use_alive_b[:, None], alive_seq_bkn[:, 0], fin_seq_bkn[:, 0])
  best_score_b = jnp.where(use_alive_b, alive_score_bk[:, 0], fin_score_bk[:, 0])
  return Generation(best_seq_bn, best_score_b)
