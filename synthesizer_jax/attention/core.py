"""The shared attention kernel: masks, float32 softmax, and the logit-source interface.

Every attention kind is a `LogitSource`: it turns queries (and, for `dot`, keys)
into logits [batch, heads, q_len, k_len]. Everything after the logits (masking,
softmax, dropout, the value product) is the same for every kind and lives here
and in `layer.py`, so a new kind cannot get masking wrong.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synthesizer_jax.config import AttentionConfig

# Large but finite so that a fully masked row (padding) softmaxes to uniform, not NaN.
MASK_VALUE = float(np.finfo(np.float32).min) / 2


class LogitSource(nn.Module):
  """Interface of one attention kind.

  A subclass implements `logits`, and `keys` if it reads the keys' content.
  `keys(x)` is what a decode cache must keep per key position (None: nothing,
  the pure synthetic kinds); `logits` gets it back together with the query
  hidden states and the segment-relative positions of queries and keys.
  """

  cfg: AttentionConfig
  #: True when the logits read the keys' content (a decode cache needs keys).
  needs_keys: ClassVar[bool] = False
  #: True when positions index a table of size max_len (positions must be < max_len).
  uses_positions: ClassVar[bool] = True

  def __call__(self, x_bqe: jax.Array, x_bke: jax.Array, pos_bq: jax.Array,
               pos_bk: jax.Array) -> jax.Array:
    """Logits [batch, heads, q_len, k_len] from query and key hidden states."""
    return self.logits(x_bqe, self.keys(x_bke), pos_bq, pos_bk)

  def keys(self, x_bke: jax.Array) -> Any:
    """Per-key state the logits need; None for kinds that never read the keys."""
    del x_bke
    return None

  def logits(self, x_bqe: jax.Array, keys: Any, pos_bq: jax.Array, pos_bk: jax.Array) -> jax.Array:
    """Attention logits, [batch, heads, q_len, k_len]."""
    raise NotImplementedError


def gather_columns(table_bhql: jax.Array, pos_bk) -> jax.Array:
  """out[b, h, q, k] = table[b, h, q, pos[b, k]]; an out-of-range position gives NaN.

  `pos_bk` may be an int k, meaning positions 0..k-1 of every row: a slice, which is
  much cheaper than a gather (and whose gradient is no scatter-add).
  """
  if isinstance(pos_bk, int):
    return table_bhql[..., :pos_bk]
  batch = max(table_bhql.shape[0], pos_bk.shape[0])
  table_bhql = jnp.broadcast_to(table_bhql, (batch,) + table_bhql.shape[1:])
  idx_bhqk = jnp.broadcast_to(pos_bk[:, None, None, :],
                              table_bhql.shape[:3] + pos_bk.shape[-1:])
  return jnp.take_along_axis(table_bhql, idx_bhqk, axis=-1, mode="fill", fill_value=jnp.nan)


def gather_rows(table_hlx: jax.Array, pos_bq) -> jax.Array:
  """out[b, h, q, :] = table[h, pos[b, q], :]; an int q means rows 0..q-1 (batch 1)."""
  if isinstance(pos_bq, int):
    return table_hlx[None, :, :pos_bq]
  out_hbqx = jnp.take(table_hlx, pos_bq, axis=1, mode="fill", fill_value=jnp.nan)
  return jnp.transpose(out_hbqx, (1, 0, 2, 3))


def check_positions(positions, length: int, max_len: int) -> None:
  """Raises ValueError when a synthetic kind would index a position >= max_len.

  Checks the static length when positions are implicit (None or an int: 0..length-1),
  and the values when they are concrete. Traced positions cannot be checked here: the
  gathers then yield NaN for out-of-range positions instead of a wrong answer.
  """
  if positions is None or isinstance(positions, int):
    if length > max_len:
      raise ValueError(
          f"sequence length {length} exceeds max_len={max_len}, the number of positions the "
          "synthetic attention kinds were built for: truncate the input or raise "
          "ModelConfig.max_len (this changes the parameter shapes)")
    return
  if isinstance(positions, jax.core.Tracer):
    return
  top = int(np.max(np.asarray(positions))) if np.size(positions) else -1
  if top >= max_len:
    raise ValueError(
        f"position {top} >= max_len={max_len}: synthetic attention kinds only have logits for "
        "positions 0..max_len-1; truncate or split the sequence, or raise ModelConfig.max_len")


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


def masked_softmax(logits_bhqk: jax.Array, mask_b1qk: jax.Array | None) -> jax.Array:
  """Softmax over keys in float32, masked entries excluded."""
  logits_bhqk = logits_bhqk.astype(jnp.float32)
  if mask_b1qk is not None:
    logits_bhqk = jnp.where(mask_b1qk, logits_bhqk, MASK_VALUE)
  return jax.nn.softmax(logits_bhqk, axis=-1)
