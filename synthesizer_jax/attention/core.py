"""The shared attention kernel: masks, float32 softmax, and the logit-source interface.

Every attention kind is a `LogitSource`: it turns queries (and, for `dot`, keys)
into logits [batch, heads, q_len, k_len]. Everything after the logits (masking,
softmax, dropout, the value product) is the same for every kind and lives here
and in `layer.py`, so a new kind cannot get masking wrong.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from synthesizer_jax.attention.positions import Positions


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
  """What one attention layer needs to know; built by `ModelConfig.attention`.

  Attributes:
    kind: a single kind ("dense") or a mixture ("random+dot").
    num_heads: number of heads h.
    head_dim: per-head width d_h of values (and of queries/keys for `dot`).
    max_len: l, the number of positions synthetic kinds can attend over.
    dense_hidden_dim: hidden width of each head's two-layer F in `dense`.
    random_rank: k, the rank of `factorized_random` (R = R1 R2^T).
    factor_sizes: (a, b), a * b == max_len, for `factorized_dense`.
    random_init_stddev: stddev of the normal init of R, R1, R2.
    dropout_rate: dropout on the attention weights.
    dtype: compute dtype name; the softmax is always float32.
    impl: how the attention is computed ("auto", "materialized", "blockwise", "cudnn"; see
      attention/fused.py and docs/synthesizers.md).
    block_size: query and key block size of the blockwise implementation.
  """

  kind: str
  num_heads: int
  head_dim: int
  max_len: int
  dense_hidden_dim: int
  random_rank: int
  factor_sizes: tuple[int, int]
  random_init_stddev: float = 1.0
  dropout_rate: float = 0.0
  dtype: str = "float32"
  impl: str = "auto"
  block_size: int = 512


# Large but finite so that a fully masked row (padding) softmaxes to uniform, not NaN.
MASK_VALUE = float(np.finfo(np.float32).min) / 2


class LogitSource(nn.Module):
  """Interface of one attention kind.

  A subclass implements `logits`, and `keys` if it reads the keys' content.
  `keys(x)` is what a decode cache must keep per key position (None: nothing,
  the pure synthetic kinds); `logits` gets it back together with the query
  hidden states and the segment-relative positions of queries and keys
  (`positions.Positions`, read through its `rows` / `columns`).
  """

  cfg: AttentionConfig
  #: True when the logits read the keys' content (a decode cache needs keys).
  needs_keys: ClassVar[bool] = False
  #: True when positions index a table of size max_len (positions must be < max_len).
  uses_positions: ClassVar[bool] = True
  #: True when `dot_form` writes the logits as a dot product (the fused kernels can run it).
  has_dot_form: ClassVar[bool] = True
  #: True when that form has a positional bias table (kernels without a bias cannot run it).
  has_bias: ClassVar[bool] = False

  def __call__(self, x_bqe: jax.Array, x_bke: jax.Array, pos_bq: Positions,
               pos_bk: Positions) -> jax.Array:
    """Logits [batch, heads, q_len, k_len] from query and key hidden states."""
    return self.logits(x_bqe, self.keys(x_bke), pos_bq, pos_bk)

  def keys(self, x_bke: jax.Array) -> Any:
    """Per-key state the logits need; None for kinds that never read the keys."""
    del x_bke
    return None

  def logits(self, x_bqe: jax.Array, keys: Any, pos_bq: Positions,
             pos_bk: Positions) -> jax.Array:
    """Attention logits, [batch, heads, q_len, k_len]."""
    raise NotImplementedError

  @classmethod
  def param_counts(cls, c: AttentionConfig, d_model: int) -> dict[str, int]:
    """{"trained": ..., "constant": ...} element counts of this kind's own parameters."""
    raise NotImplementedError(f"{cls.__name__} declares no parameter count")

  @classmethod
  def forward_flops(cls, c: AttentionConfig, d_model: int, n: int) -> int:
    """Matrix-product FLOPs of the logits of one sequence of n tokens (multiply-add = 2)."""
    raise NotImplementedError(f"{cls.__name__} declares no FLOP count")

  def dot_form(self, x_bqe: jax.Array, keys: Any, pos_bq: Positions,
               pos_bk: Positions) -> DotForm | None:
    """The same logits as `DotForm` (queries, keys, bias table) for the fused kernels.

    None: the kind has no such form and is only computed materialized.
    """
    del x_bqe, keys, pos_bq, pos_bk
    return None


@dataclasses.dataclass(frozen=True)
class DotForm:
  """Logits written as B[b, h, i, j] = q[b, i, h] . k[b, j, h] + bias[h, pos_i, pos_j].

  Attributes:
    q_bqhd: queries with any scale folded in, or None (no query-key term).
    k_bkhd: keys, [batch or 1, k_len, heads, d] (batch 1: input-independent keys).
    bias_hll: a positional bias table [heads, max_len, max_len] read at the query and key
      positions, or None.
  """

  q_bqhd: jax.Array | None = None
  k_bkhd: jax.Array | None = None
  bias_hll: jax.Array | None = None

  def __add__(self, other: DotForm) -> DotForm:
    """Logits of the sum: queries and keys concatenated along d, bias tables added."""
    qs = [f.q_bqhd for f in (self, other) if f.q_bqhd is not None]
    ks = [f.k_bkhd for f in (self, other) if f.k_bkhd is not None]
    if len(ks) == 2 and ks[0].shape[0] != ks[1].shape[0]:
      batch = max(ks[0].shape[0], ks[1].shape[0])
      ks = [jnp.broadcast_to(k, (batch,) + k.shape[1:]) for k in ks]
    if len(qs) == 2:
      dtype = jnp.result_type(*qs)
      qs, ks = [q.astype(dtype) for q in qs], [k.astype(dtype) for k in ks]
    biases = [f.bias_hll for f in (self, other) if f.bias_hll is not None]
    return DotForm(jnp.concatenate(qs, -1) if len(qs) == 2 else (qs or [None])[0],
                   jnp.concatenate(ks, -1) if len(ks) == 2 else (ks or [None])[0],
                   sum(biases[1:], biases[0]) if biases else None)

  def scaled(self, w_h: jax.Array) -> DotForm:
    """Logits times a per-head weight w_h [heads] (a mixture's gate)."""
    w_11hd = w_h[None, None, :, None]
    q = None if self.q_bqhd is None else self.q_bqhd * w_11hd.astype(self.q_bqhd.dtype)
    bias = None if self.bias_hll is None else self.bias_hll * w_h[:, None, None]
    return DotForm(q, self.k_bkhd, bias)


@flax.struct.dataclass
class Mask:
  """Which keys each query may see, without building the [b, 1, q, k] boolean tensor.

  Query i may see key j iff q_valid[i] & k_valid[j] & (q_segments[i] == k_segments[j])
  & (not causal or q_offset + i >= j). Arrays have batch b or 1 (shared by every row);
  None means all valid / one segment. `dense()` builds the boolean tensor for the
  materialized path; the fused kernels evaluate the rule block by block.
  """

  q_valid_bq: jax.Array | None = None
  k_valid_bk: jax.Array | None = None
  q_segments_bq: jax.Array | None = None
  k_segments_bk: jax.Array | None = None
  q_offset: jax.Array | int = 0
  causal: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def is_plain(self) -> bool:
    """True when nothing but (maybe) causality restricts attention, known at trace time."""
    fields = (self.q_valid_bq, self.k_valid_bk, self.q_segments_bq, self.k_segments_bk)
    return all(x is None for x in fields) and isinstance(self.q_offset, int) and not self.q_offset

  def dense(self, q_len: int, k_len: int) -> jax.Array:
    """The boolean mask [batch, 1, q_len, k_len] (batch 1 when every field has batch 1)."""
    return self.block(0, q_len, 0, k_len)

  def block(self, q_start, q_len: int, k_start, k_len: int) -> jax.Array:
    """The rule on queries q_start.. (q_len of them) and keys k_start..: [b or 1, 1, q, k]."""

    def take(x, start, size, fill=None):
      if x is None:
        return None if fill is None else jnp.full((1, size), fill)
      if x.shape[1] == size and isinstance(start, int) and start == 0:
        return x
      return jax.lax.dynamic_slice_in_dim(x, start, size, axis=1)

    return make_mask(take(self.q_valid_bq, q_start, q_len, True),
                     take(self.k_valid_bk, k_start, k_len, True),
                     take(self.q_segments_bq, q_start, q_len),
                     take(self.k_segments_bk, k_start, k_len), self.causal,
                     (self.q_offset + q_start + jnp.arange(q_len))[None, :],
                     (k_start + jnp.arange(k_len))[None, :])


def gather_bias(table_hll: jax.Array, pos_bq: jax.Array, pos_bk: jax.Array) -> jax.Array:
  """out[b, h, q, k] = table[h, pos_q[b, q], pos_k[b, k]] (batch of the positions; NaN when
  out of range): a `DotForm`'s bias read for a block of queries and keys."""
  out_hbqk = table_hll.at[:, pos_bq[:, :, None], pos_bk[:, None, :]].get(
      mode="fill", fill_value=jnp.nan)
  return jnp.swapaxes(out_hbqk, 0, 1)


def make_mask(q_valid_bq: jax.Array, k_valid_bk: jax.Array,
              q_segment_bq: jax.Array | None = None, k_segment_bk: jax.Array | None = None,
              causal: bool = False, q_index_bq: jax.Array | None = None,
              k_index_bk: jax.Array | None = None) -> jax.Array:
  """Boolean attention mask [batch, 1, q_len, k_len]: True where query may see key.

  Combines padding (valid flags), packing (equal segment ids) and, when
  `causal`, key index <= query index (indices default to 0..len-1 of the row).
  """
  mask_bqk = q_valid_bq[:, :, None] & k_valid_bk[:, None, :]
  if q_segment_bq is not None:
    mask_bqk &= q_segment_bq[:, :, None] == k_segment_bk[:, None, :]
  if causal:
    if q_index_bq is None:
      q_index_bq = jnp.arange(q_valid_bq.shape[1])[None, :]
    if k_index_bk is None:
      k_index_bk = jnp.arange(k_valid_bk.shape[1])[None, :]
    mask_bqk &= q_index_bq[:, :, None] >= k_index_bk[:, None, :]
  return mask_bqk[:, None, :, :]


def masked_softmax(logits_bhqk: jax.Array, mask_b1qk: jax.Array | Mask | None) -> jax.Array:
  """Softmax over keys in float32, masked entries excluded."""
  logits_bhqk = logits_bhqk.astype(jnp.float32)
  if isinstance(mask_b1qk, Mask):
    mask_b1qk = mask_b1qk.dense(*logits_bhqk.shape[2:])
  if mask_b1qk is not None:
    logits_bhqk = jnp.where(mask_b1qk, logits_bhqk, MASK_VALUE)
  return jax.nn.softmax(logits_bhqk, axis=-1)
