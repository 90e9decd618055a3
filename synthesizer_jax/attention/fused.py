"""Which implementation computes a layer's attention, and the fused ones' calls.

`ModelConfig.attention_impl` names it: "materialized" (logits [b, h, q, k], the
reference), "blockwise" (`blockwise.py`, pure JAX, any backend), "cudnn"
(`jax.nn.dot_product_attention` on an NVIDIA GPU), "pallas" (`pallas.py`, JAX's Pallas
flash kernels for GPUs and TPUs) or "auto". `check_static` refuses a
combination that can never work when the config is built; `choose` decides per call,
where "auto" falls back to materialized instead of raising.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthesizer_jax.attention import pallas
from synthesizer_jax.attention.blockwise import blockwise_attention
from synthesizer_jax.attention.core import DotForm, Mask, gather_bias
from synthesizer_jax.attention.positions import Positions

IMPLS = ("auto", "materialized", "blockwise", "cudnn", "pallas")
#: "auto" computes blockwise once the materialized float32 logits of one layer would exceed
#: this many bytes, and on a CPU from this many keys on, where it measured faster
#: (benchmarks/README.md, "Fused attention"). GPUs and TPUs keep materialized for speed
#: until their measurements exist.
AUTO_BLOCKWISE_BYTES = 1 << 30
AUTO_BLOCKWISE_MIN_KEYS_CPU = 1024
#: Head-dim bound of cuDNN's fused attention (after padding to a multiple of 8) on Hopper and
#: later; JAX refuses more than 128 on older GPUs with its own message.
CUDNN_MAX_HEAD_DIM = 256
#: What "cudnn" passes to jax.nn.dot_product_attention; tests set "xla" to run its
#: argument plumbing on a CPU.
CUDNN_BACKEND = "cudnn"


def check_static(impl: str, kind: str, *, has_dot_form: bool, dropout_rate: float,
                 dtype: str) -> None:
  """ValueError for a fused `impl` that cannot compute `kind` under any input."""
  if impl not in IMPLS:
    raise ValueError(f"attention_impl={impl!r}: must be one of {IMPLS}")
  if impl in ("auto", "materialized"):
    return
  if not has_dot_form:
    raise ValueError(f"attention_impl={impl!r} cannot compute kind {kind!r}: factorized_dense "
                     "logits are not a dot product; use attention_impl='materialized' or 'auto'")
  if dropout_rate > 0:
    raise ValueError(f"attention_impl={impl!r} does not apply attention dropout "
                     f"(attention_dropout_rate={dropout_rate}); use 'materialized' or 'auto', "
                     "or set attention_dropout_rate=0")
  if impl == "cudnn" and dtype == "float32":
    raise ValueError("attention_impl='cudnn' runs in bfloat16 or float16 only (dtype='float32'); "
                     "set dtype='bfloat16', or use 'blockwise' / 'auto'")


def choose(impl: str, *, has_dot_form: bool, mask_is_dense: bool, dropout_active: bool,
           decoding: bool, wants_weights: bool, logits_bytes: int, k_len: int = 0,
           platform: str = "cpu") -> str:
  """The implementation one call uses: `impl` itself, or what "auto" picks.

  Cached decode steps (one query) and calls that ask for the attention weights are
  always materialized; a fused `impl` given a boolean mask array raises.
  """
  if decoding or wants_weights or impl == "materialized":
    return "materialized"
  if impl != "auto":
    if mask_is_dense:
      raise ValueError(f"attention_impl={impl!r} takes its mask as an sj.attention.Mask (the "
                       "rule, not a [b, 1, q, k] boolean array); pass a Mask, or use "
                       "attention_impl='materialized'")
    return impl
  if not has_dot_form or dropout_active or mask_is_dense:
    return "materialized"
  if logits_bytes > AUTO_BLOCKWISE_BYTES:
    return "blockwise"
  if platform == "cpu" and k_len >= AUTO_BLOCKWISE_MIN_KEYS_CPU:
    return "blockwise"
  return "materialized"


def attend(impl: str, form: DotForm, v_bkhd: jax.Array, mask: Mask, pos_bq: Positions,
           pos_bk: Positions, q_len: int, *, block_size: int = 512) -> jax.Array:
  """softmax(mask(form's logits)) V by a fused implementation: [b, q_len, heads, dv]."""
  if impl == "blockwise":
    return blockwise_attention(form, v_bkhd, mask, pos_bq, pos_bk, q_len, block_q=block_size,
                               block_k=block_size)
  if impl == "cudnn":
    _require_gpu("cudnn", "needs an NVIDIA GPU", emulated=CUDNN_BACKEND != "cudnn")
    return dot_product_attention(form, v_bkhd, mask, pos_bq, pos_bk, q_len,
                                 implementation=CUDNN_BACKEND)
  if impl == "pallas":
    if pallas.TPU_INTERPRET or jax.devices()[0].platform == "tpu":
      if pallas.tpu_supports(mask):
        return pallas.tpu_flash(form, v_bkhd, mask, pos_bq, pos_bk, q_len)
    else:
      _require_gpu("pallas", "wraps JAX's Pallas flash kernels for GPUs and TPUs",
                   emulated=pallas.INTERPRET)
      if form.bias_hll is not None:
        raise ValueError("attention_impl='pallas' on a GPU cannot compute the random family "
                         "(random, fixed_random and their mixtures): JAX's Pallas GPU flash "
                         "kernel takes no bias, and their logits are a bias table; use "
                         "attention_impl='blockwise' or 'auto' (a TPU's kernel takes one)")
      if pallas.supports(form, mask, q_len, v_bkhd.shape[1]):
        return pallas.mha(form, v_bkhd, mask)
    # Masks the kernel cannot express (GPU: cross-attention, prefill; TPU: prefill's
    # offset causal mask): the same result blockwise.
    return attend("blockwise", form, v_bkhd, mask, pos_bq, pos_bk, q_len, block_size=block_size)
  raise ValueError(f"attend: {impl!r} is not a fused implementation")


def _require_gpu(impl: str, what: str, emulated: bool) -> None:
  """ValueError naming the platform and the alternative, unless on a GPU (or emulated)."""
  platform = jax.devices()[0].platform
  if platform != "gpu" and not emulated:
    raise ValueError(f"attention_impl={impl!r} {what}, and this process runs on {platform!r}; "
                     "use attention_impl='blockwise' or 'auto'")


def _pad_last(x: jax.Array, size: int) -> jax.Array:
  return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, size - x.shape[-1])])


def dot_product_attention(form: DotForm, v_bkhd: jax.Array, mask: Mask, pos_bq: Positions,
                          pos_bk: Positions, q_len: int, *,
                          implementation: str | None = "cudnn") -> jax.Array:
  """`form` through `jax.nn.dot_product_attention` (cuDNN on a GPU; "xla" runs anywhere).

  Queries, keys and values share one head dim there: all are zero-padded to a multiple
  of 8 (a zero changes no logit; the padded output columns are dropped). A bias table is
  gathered at the positions into [b or 1, h, q, k]; the mask is passed as causal alone
  when it is nothing else, else as a boolean [b, 1, q, k].
  """
  batch, n_k, heads, dv = v_bkhd.shape
  n_q = q_len
  q, k = form.q_bqhd, form.k_bkhd
  dtype = v_bkhd.dtype
  if q is None:  # bias only: zero queries and keys of width 8
    q, k = jnp.zeros((batch, n_q, heads, 8), dtype), jnp.zeros((1, n_k, heads, 8), dtype)
  width = -(-max(q.shape[-1], dv) // 8) * 8
  if implementation == "cudnn" and width > CUDNN_MAX_HEAD_DIM:
    raise ValueError(f"attention_impl='cudnn': queries/keys of width {q.shape[-1]} and values of "
                     f"width {dv} exceed cuDNN's head dim {CUDNN_MAX_HEAD_DIM}; use 'blockwise'")
  q, k, v = (_pad_last(x.astype(dtype), width) for x in (q, k, v_bkhd))
  k = jnp.broadcast_to(k, (batch,) + k.shape[1:])
  bias = None
  if form.bias_hll is not None:
    bias = gather_bias(jnp.asarray(form.bias_hll), pos_bq.dense(), pos_bk.dense()).astype(dtype)
  plain_causal = mask.causal and mask.is_plain
  dense = None
  if not mask.is_plain:
    dense = jnp.broadcast_to(mask.dense(n_q, n_k), (batch, 1, n_q, n_k))
  out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=dense, scale=1.0,
                                     is_causal=plain_causal, implementation=implementation)
  return out[..., :dv]

