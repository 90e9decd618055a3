"""Blockwise attention in pure JAX: online softmax over key blocks, flash-style custom VJP.

softmax(mask(Q K^T + bias[pos_q, pos_k])) V for any `DotForm`, without a [b, h, q, k]
tensor: the forward pass walks query blocks and, inside each, key blocks with a running
max and sum (Milakov & Gimelshein 2018; Rabe & Staats 2021); it keeps only the output
and the per-row log-sum-exp. The backward pass (Dao 2023, FlashAttention-2) recomputes
each block's probabilities from them, so memory is O(n x block) per head in both passes.
Key blocks wholly above the causal diagonal are never visited.

Masked entries get the same finite MASK_VALUE as the materialized path, so a row with no
visible key is uniform over its keys, as there (over the visited blocks when causal).
Runs on any backend; on CPU it is the long-sequence path, on GPU/TPU the portable one.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from synthesizer_jax.attention.core import MASK_VALUE, DotForm, Mask, gather_bias
from synthesizer_jax.attention.positions import Positions

F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class _Static:
  block_q: int
  block_k: int
  n_k: int  # real key count (keys past it are padding added here)
  causal: bool
  num_q_blocks: int
  num_k_blocks: int


def blockwise_attention(form: DotForm, v_bkhd: jax.Array, mask: Mask, pos_bq: Positions,
                        pos_bk: Positions, q_len: int,
                        *, block_q: int = 512, block_k: int = 512) -> jax.Array:
  """Attention output [b, q_len, heads, dv] of `form`'s logits under `mask`.

  Args:
    form: queries/keys/bias of the logits (a kind's `dot_form`).
    v_bkhd: values [batch, k_len, heads, dv].
    mask: which keys each query sees (`Mask`; never materialized here).
    pos_bq, pos_bk: `Positions` of queries and keys at which the bias table is read;
      unused without a bias.
    q_len: the number of queries.
    block_q, block_k: block sizes (clipped to the lengths).
  """
  if form.k_bkhd is None and form.bias_hll is None:
    raise ValueError("a DotForm needs queries and keys, a bias table, or both")
  n_k, n_q = v_bkhd.shape[1], q_len
  bq, bk = min(block_q, n_q), min(block_k, n_k)
  nqb, nkb = -(-n_q // bq), -(-n_k // bk)
  pad_q, pad_k = nqb * bq - n_q, nkb * bk - n_k

  def pad(x, amount, value=0):
    if x is None or amount == 0:
      return x
    widths = [(0, 0)] * x.ndim
    widths[1] = (0, amount)
    return jnp.pad(x, widths, constant_values=value)

  if form.bias_hll is None:
    qpos = kpos = None
  else:
    qpos, kpos = pad(pos_bq.dense(), pad_q), pad(pos_bk.dense(), pad_k)
  # Padded keys are dropped by index (-inf), not by the mask (which would give MASK_VALUE).
  padded = Mask(pad(mask.q_valid_bq, pad_q, False), pad(mask.k_valid_bk, pad_k, False),
                pad(mask.q_segments_bq, pad_q), pad(mask.k_segments_bk, pad_k),
                jnp.asarray(mask.q_offset, jnp.int32), mask.causal)
  static = _Static(bq, bk, n_k, mask.causal, nqb, nkb)
  bias = None if form.bias_hll is None else jnp.asarray(form.bias_hll)
  q = form.q_bqhd
  if q is not None and q.shape[0] != v_bkhd.shape[0]:  # positional queries (batch 1)
    q = jnp.broadcast_to(q, v_bkhd.shape[:1] + q.shape[1:])
  out = _attend(static, pad(q, pad_q), pad(form.k_bkhd, pad_k), pad(v_bkhd, pad_k),
                bias, qpos, kpos, padded)
  return out[:, :n_q]


def _slice(x, start, size):
  return None if x is None else jax.lax.dynamic_slice_in_dim(x, start, size, axis=1)


def _logits(st: _Static, q, k, bias, qpos, kpos, mask: Mask, i, j):
  """Masked float32 logits of query block i and key block j, [b, h, bq, bk], and the mask."""
  qs, ks = i * st.block_q, j * st.block_k
  s_bhqk = 0.0
  if k is not None:
    q_blk, k_blk = _slice(q, qs, st.block_q), _slice(k, ks, st.block_k)
    if k_blk.shape[0] == 1 and q_blk.shape[0] > 1:
      s_bhqk = jnp.einsum("bqhd,khd->bhqk", q_blk, k_blk[0], preferred_element_type=F32)
    else:
      s_bhqk = jnp.einsum("bqhd,bkhd->bhqk", q_blk, k_blk, preferred_element_type=F32)
  if bias is not None:
    qp, kp = _slice(qpos, qs, st.block_q), _slice(kpos, ks, st.block_k)
    s_bhqk = s_bhqk + gather_bias(bias, qp, kp).astype(F32)
  allowed_b1qk = mask.block(qs, st.block_q, ks, st.block_k)
  s_bhqk = jnp.where(allowed_b1qk, s_bhqk, MASK_VALUE)
  real_k = (ks + jnp.arange(st.block_k)) < st.n_k
  return jnp.where(real_k, s_bhqk, -jnp.inf), allowed_b1qk


def _last_k_block(st: _Static, mask: Mask, i):
  """One past the last key block query block i sees (all of them unless causal)."""
  if not st.causal:
    return st.num_k_blocks
  last_query = mask.q_offset + (i + 1) * st.block_q - 1
  return jnp.clip(last_query // st.block_k + 1, 1, st.num_k_blocks)


def _first_q_block(st: _Static, mask: Mask, j):
  """The first query block that sees key block j."""
  if not st.causal:
    return 0
  return jnp.clip((j * st.block_k - mask.q_offset) // st.block_q, 0, st.num_q_blocks)


def _forward(st: _Static, q, k, v, bias, qpos, kpos, mask):
  batch, heads, dv = v.shape[0], v.shape[2], v.shape[3]

  def row(i):
    def step(j, carry):
      m_bhq, l_bhq, acc_bhqd = carry
      s_bhqk, _ = _logits(st, q, k, bias, qpos, kpos, mask, i, j)
      m_new = jnp.maximum(m_bhq, s_bhqk.max(-1))
      p_bhqk = jnp.exp(s_bhqk - m_new[..., None])
      corr_bhq = jnp.exp(m_bhq - m_new)
      v_blk = _slice(v, j * st.block_k, st.block_k)
      pv_bhqd = jnp.einsum("bhqk,bkhd->bhqd", p_bhqk.astype(v.dtype), v_blk,
                           preferred_element_type=F32)
      return m_new, l_bhq * corr_bhq + p_bhqk.sum(-1), acc_bhqd * corr_bhq[..., None] + pv_bhqd

    shape = (batch, heads, st.block_q)
    init = (jnp.full(shape, -jnp.inf, F32), jnp.zeros(shape, F32), jnp.zeros(shape + (dv,), F32))
    m_bhq, l_bhq, acc_bhqd = jax.lax.fori_loop(0, _last_k_block(st, mask, i), step, init)
    out_bqhd = jnp.swapaxes(acc_bhqd / l_bhq[..., None], 1, 2).astype(v.dtype)
    return out_bqhd, m_bhq + jnp.log(l_bhq)

  outs, lses = jax.lax.map(row, jnp.arange(st.num_q_blocks))
  out_bqhd = jnp.swapaxes(outs, 0, 1).reshape((batch, -1, heads, dv))
  lse_bhq = jnp.transpose(lses, (1, 2, 0, 3)).reshape((batch, heads, -1))
  return out_bqhd, lse_bhq


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attend(st, q, k, v, bias, qpos, kpos, mask):
  return _forward(st, q, k, v, bias, qpos, kpos, mask)[0]


def _attend_fwd(st, q, k, v, bias, qpos, kpos, mask):
  out, lse = _forward(st, q, k, v, bias, qpos, kpos, mask)
  return out, (q, k, v, bias, qpos, kpos, mask, out, lse)


def _attend_bwd(st, res, g_bqhd):
  q, k, v, bias, qpos, kpos, mask, out, lse_bhq = res
  delta_bhq = jnp.einsum("bqhd,bqhd->bhq", g_bqhd.astype(F32), out.astype(F32))
  bq, bk = st.block_q, st.block_k

  def column(carry, j):
    def step(i, inner):
      dk_bkhd, dv_bkhd, dq_bqhd, dbias = inner
      s_bhqk, allowed_b1qk = _logits(st, q, k, bias, qpos, kpos, mask, i, j)
      lse_i = jax.lax.dynamic_slice_in_dim(lse_bhq, i * bq, bq, axis=2)
      delta_i = jax.lax.dynamic_slice_in_dim(delta_bhq, i * bq, bq, axis=2)
      p_bhqk = jnp.exp(s_bhqk - lse_i[..., None])
      g_i = _slice(g_bqhd, i * bq, bq).astype(F32)
      dv_bkhd = dv_bkhd + jnp.einsum("bhqk,bqhd->bkhd", p_bhqk, g_i)
      dp_bhqk = jnp.einsum("bqhd,bkhd->bhqk", g_i, _slice(v, j * bk, bk).astype(F32))
      ds_bhqk = jnp.where(allowed_b1qk, p_bhqk * (dp_bhqk - delta_i[..., None]), 0.0)
      if k is not None:
        k_j = _slice(k, j * bk, bk).astype(F32)
        if k_j.shape[0] == 1 and ds_bhqk.shape[0] > 1:
          dq_i = jnp.einsum("bhqk,khd->bqhd", ds_bhqk, k_j[0])
        else:
          dq_i = jnp.einsum("bhqk,bkhd->bqhd", ds_bhqk, k_j)
        dq_bqhd = jax.lax.dynamic_update_slice_in_dim(
            dq_bqhd, _slice(dq_bqhd, i * bq, bq) + dq_i, i * bq, axis=1)
        dk = jnp.einsum("bhqk,bqhd->bkhd", ds_bhqk, _slice(q, i * bq, bq).astype(F32))
        dk_bkhd = dk_bkhd + dk.sum(0, keepdims=True) if dk_bkhd.shape[0] == 1 else dk_bkhd + dk
      if bias is not None:
        qp, kp = _slice(qpos, i * bq, bq), _slice(kpos, j * bk, bk)
        if qp.shape[0] == 1 and kp.shape[0] == 1:
          ds_bhqk = ds_bhqk.sum(0, keepdims=True)
        ds_hbqk = jnp.swapaxes(jnp.broadcast_to(
            ds_bhqk, (max(ds_bhqk.shape[0], qp.shape[0], kp.shape[0]),) + ds_bhqk.shape[1:]), 0, 1)
        dbias = dbias.at[:, qp[:, :, None], kp[:, None, :]].add(ds_hbqk, mode="drop")
      return dk_bkhd, dv_bkhd, dq_bqhd, dbias

    dq_bqhd, dbias = carry
    dk0 = None if k is None else jnp.zeros((k.shape[0], bk) + k.shape[2:], F32)
    dv0 = jnp.zeros((v.shape[0], bk) + v.shape[2:], F32)
    dk_j, dv_j, dq_bqhd, dbias = jax.lax.fori_loop(
        _first_q_block(st, mask, j), st.num_q_blocks, step, (dk0, dv0, dq_bqhd, dbias))
    return (dq_bqhd, dbias), (dk_j, dv_j)

  dq0 = None if q is None else jnp.zeros(q.shape, F32)
  dbias0 = None if bias is None else jnp.zeros(bias.shape, F32)
  (dq, dbias), (dks, dvs) = jax.lax.scan(column, (dq0, dbias0), jnp.arange(st.num_k_blocks))

  def unblock(x, like):
    return None if x is None else jnp.swapaxes(x, 0, 1).reshape(like.shape).astype(like.dtype)

  cast = lambda x, like: None if x is None else x.astype(like.dtype)
  return (cast(dq, q), unblock(dks, k), unblock(dvs, v), cast(dbias, bias), None, None, None)


_attend.defvjp(_attend_fwd, _attend_bwd)
