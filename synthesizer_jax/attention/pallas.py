"""`attention_impl="pallas"`: the flash-attention kernels that ship with JAX, for any DotForm.

GPU: `jax.experimental.pallas.ops.gpu.attention.mha` (a Triton kernel with its own backward)
takes queries, keys and values of one head width, a causal flag and one segment-id array
shared by queries and keys. That serves self-attention in training: causal, packed
(segment ids) and padded (valid flags folded into the segment ids: a padding query then
sees only padding keys, a real query never sees padding) batches. What it cannot express
(cross-attention, prefill's query offset) `fused.attend` computes blockwise; it takes no
bias, so the random family is refused there.

TPU: `jax.experimental.pallas.ops.tpu.flash_attention` (Mosaic, with its own backward) takes
separate query and key segment ids and a bias [b, h, q, k], so it serves self- and
cross-attention and the random family (whose table is gathered into that bias, O(n^2) like
cuDNN's); only prefill's query offset falls back to blockwise. Rows are padded to its block
of 128 and head widths to a multiple of 128 (zeros change no logit).

`INTERPRET` runs the GPU kernel in Pallas's interpreter on any backend; `TPU_INTERPRET`
routes to the TPU kernel, which the TPU interpreter then runs: how the tests check both on
a CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthesizer_jax.attention.core import DotForm, Mask, gather_bias
from synthesizer_jax.attention.positions import Positions

#: Run the GPU kernel in Pallas's interpreter (any backend; slow): for tests on a CPU.
INTERPRET = False
#: Route "pallas" to the TPU kernel on any backend; with the calls traced inside
#: `jax.experimental.pallas.tpu.force_tpu_interpret_mode()` it runs in Pallas's TPU
#: interpreter (slow): for tests on a CPU.
TPU_INTERPRET = False
#: Query and key block of the kernels (rows are padded to a multiple of it).
BLOCK = 128
#: Head widths on the TPU are zero-padded to a multiple of this (its lane width).
TPU_LANES = 128


def supports(form: DotForm, mask: Mask, q_len: int, k_len: int) -> bool:
  """Whether the GPU `mha` computes this call exactly (see the module docstring)."""
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


def tpu_supports(mask: Mask) -> bool:
  """Whether the TPU `flash_attention` computes this call exactly: any but an offset causal
  mask (prefill), whose queries do not start at key 0."""
  return not mask.causal or (isinstance(mask.q_offset, int) and mask.q_offset == 0)


def _tpu_ids(segments, valid, batch: int, n: int, padded: int, added: int) -> jax.Array:
  """Segment ids of one side for the TPU kernel: real segment + 1, 0 for invalid slots,
  `added` for the rows added up to the block (queries and keys get different values, so an
  added row never matches a real one)."""
  ids = jnp.ones((1, n), jnp.int32) if segments is None else segments.astype(jnp.int32) + 1
  if valid is not None:
    ids = jnp.where(valid, ids, 0)
  ids = jnp.broadcast_to(ids, (batch, n))
  return jnp.pad(ids, ((0, 0), (0, padded - n)), constant_values=added)


def tpu_flash(form: DotForm, v_bkhd: jax.Array, mask: Mask, pos_bq: Positions,
              pos_bk: Positions, q_len: int) -> jax.Array:
  """softmax(mask(q k^T + bias)) v by the Pallas TPU kernel: [b, q_len, heads, dv]."""
  from jax.experimental.pallas.ops.tpu import flash_attention as tpu_attention

  batch, n_k, heads, dv = v_bkhd.shape
  dtype = v_bkhd.dtype
  q, k = form.q_bqhd, form.k_bkhd
  if q is None:  # bias only: zero queries and keys
    q, k = jnp.zeros((batch, q_len, heads, 1), dtype), jnp.zeros((1, n_k, heads, 1), dtype)
  width = -(-max(q.shape[-1], dv) // TPU_LANES) * TPU_LANES
  pq, pk = (-(-n // BLOCK) * BLOCK for n in (q_len, n_k))

  def prepare(x, rows):  # [b?, n, h, d] -> [b, h, rows, width]
    x = jnp.broadcast_to(x, (batch,) + x.shape[1:]).astype(dtype)
    x = jnp.pad(x, ((0, 0), (0, rows - x.shape[1]), (0, 0), (0, width - x.shape[-1])))
    return jnp.swapaxes(x, 1, 2)

  bias = None
  if form.bias_hll is not None:
    bias = gather_bias(jnp.asarray(form.bias_hll), pos_bq.dense(), pos_bk.dense())
    bias = jnp.broadcast_to(bias, (batch,) + bias.shape[1:]).astype(dtype)
    bias = jnp.pad(bias, ((0, 0), (0, 0), (0, pq - q_len), (0, pk - n_k)))
  ids = tpu_attention.SegmentIds(
      _tpu_ids(mask.q_segments_bq, mask.q_valid_bq, batch, q_len, pq, -1),
      _tpu_ids(mask.k_segments_bk, mask.k_valid_bk, batch, n_k, pk, -2))
  sizes = tpu_attention.BlockSizes(
      block_q=BLOCK, block_k_major=BLOCK, block_k=BLOCK, block_b=1, block_q_major_dkv=BLOCK,
      block_k_major_dkv=BLOCK, block_k_dkv=BLOCK, block_q_dkv=BLOCK, block_k_major_dq=BLOCK,
      block_k_dq=BLOCK, block_q_dq=BLOCK)

  out = tpu_attention.flash_attention(prepare(q, pq), prepare(k, pk), prepare(v_bkhd, pk), bias,
                                      ids, causal=mask.causal, sm_scale=1.0, block_sizes=sizes)
  return jnp.swapaxes(out, 1, 2)[:, :q_len, :, :dv]
