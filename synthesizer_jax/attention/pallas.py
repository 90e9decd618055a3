"""`attention_impl="pallas"`: the GPU flash-attention kernel that ships with JAX, for any DotForm.

`jax.experimental.pallas.ops.gpu.attention.mha` (a Triton kernel with its own backward)
takes queries, keys and values of one head width, a causal flag and one segment-id array
shared by queries and keys. That serves self-attention in training: causal, packed
(segment ids) and padded (valid flags folded into the segment ids: a padding query then
sees only padding keys, a real query never sees padding) batches. What it cannot express
(cross-attention, prefill's query offset, bias tables) `fused.attend` computes blockwise.
`INTERPRET` runs the kernel in Pallas's interpreter: how the tests check it on a CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthesizer_jax.attention.core import DotForm, Mask

#: Run the kernel in Pallas's interpreter (any backend; slow): for tests on a CPU.
INTERPRET = False
#: Query and key block of the kernel (rows are padded to a multiple of it).
BLOCK = 128


def supports(form: DotForm, mask: Mask, q_len: int, k_len: int) -> bool:
  """Whether `mha` computes this call exactly (see the module docstring)."""
  same_rows = (mask.q_valid_bq is mask.k_valid_bk and mask.q_segments_bq is mask.k_segments_bk)
  no_offset = isinstance(mask.q_offset, int) and mask.q_offset == 0
  return form.bias_hll is None and q_len == k_len and same_rows and no_offset


def _segment_ids(mask: Mask, batch: int, n: int, padded: int) -> jax.Array | None:
  """One int32 id per row slot; None when nothing but causality masks (and no rows are added)."""
  seg, valid = mask.q_segments_bq, mask.q_valid_bq
  if seg is None and valid is None and (padded == n or mask.causal):
    return None  # added rows are in every real query's future
  ids = jnp.ones((1, n), jnp.int32) if seg is None else seg.astype(jnp.int32)
  if valid is not None:
    ids = jnp.where(valid, ids, 0)
  ids = jnp.broadcast_to(ids, (batch, n))
  return jnp.pad(ids, ((0, 0), (0, padded - n)), constant_values=-1)  # added rows: own segment


def mha(form: DotForm, v_bkhd: jax.Array, mask: Mask) -> jax.Array:
  """softmax(mask(q k^T)) v by the Pallas GPU kernel: [b, n, heads, dv]."""
  from jax.experimental.pallas.ops.gpu import attention as pallas_attention

  batch, n, heads, dv = v_bkhd.shape
  width = max(form.q_bqhd.shape[-1], dv)
  width = -(-width // 16) * 16
  block = min(BLOCK, -(-n // 16) * 16)
  padded = -(-n // block) * block

  def prepare(x):
    x = jnp.broadcast_to(x, (batch,) + x.shape[1:]).astype(v_bkhd.dtype)
    return jnp.pad(x, ((0, 0), (0, padded - n), (0, 0), (0, width - x.shape[-1])))

  sizes = pallas_attention.BlockSizes(block_q=block, block_k=block, block_q_dkv=block,
                                      block_kv_dkv=block, block_q_dq=block, block_kv_dq=block)
  out = pallas_attention.mha(prepare(form.q_bqhd), prepare(form.k_bkhd), prepare(v_bkhd),
                             _segment_ids(mask, batch, n, padded), sm_scale=1.0,
                             causal=mask.causal, block_sizes=sizes, interpret=INTERPRET)
  return out[:, :n, :, :dv]
