"""`Positions`: where each query or key sits in its segment, the one form attention layers use.

Two cases, one type:

* contiguous (`array_bl` None): positions 0..length-1 in every row, what an unpacked batch
  has. The synthetic kinds read their tables by *slicing* (R[:, :n, :n]), whose gradient is
  a pad instead of a gather's scatter-add, and every row shares them (batch 1), so the
  random family computes one softmax for the whole batch.
* explicit (`array_bl` [batch or 1, length] int): packed batches (positions restart at each
  segment), caches and left-padded prompts (a negative position marks a padding slot in the
  cached modes). Tables are read by gathering; a position >= the table size gives NaN.

Every kind reads positions only through `rows`, `columns` and `dense`, so each kind has one
code path; whether it slices or gathers, per example or once per batch, is decided here.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Positions:
  """Segment-relative positions of `length` queries or keys (see the module docstring)."""

  array_bl: jax.Array | None
  length: int = flax.struct.field(pytree_node=False)

  @classmethod
  def contiguous(cls, length: int) -> Positions:
    """0..length-1 in every row."""
    return cls(None, int(length))

  @classmethod
  def of(cls, pos, length: int | None = None) -> Positions:
    """`pos` as Positions: Positions pass through, an int n means `contiguous(n)`, None means
    `contiguous(length)`, an array [batch or 1, length] is explicit."""
    if isinstance(pos, Positions):
      return pos
    if pos is None:
      if length is None:
        raise ValueError("Positions.of(None) needs the length")
      return cls.contiguous(length)
    if isinstance(pos, int | np.integer):
      return cls.contiguous(int(pos))
    if pos.ndim != 2:
      raise ValueError(f"positions must have shape [batch or 1, length], got {pos.shape}")
    return cls(pos, pos.shape[1])

  @property
  def is_contiguous(self) -> bool:
    return self.array_bl is None

  @property
  def batch(self) -> int:
    """Rows of the positions: 1 when every row shares them."""
    return 1 if self.array_bl is None else self.array_bl.shape[0]

  def dense(self) -> jax.Array:
    """The positions as an int32 array [batch or 1, length]."""
    if self.array_bl is None:
      return jnp.arange(self.length, dtype=jnp.int32)[None, :]
    return self.array_bl.astype(jnp.int32)

  def clipped(self) -> Positions:
    """Padding slots (negative positions) read position 0."""
    return self if self.array_bl is None else Positions(jnp.maximum(self.array_bl, 0), self.length)

  def rows(self, table_hlx: jax.Array) -> jax.Array:
    """out[b, h, i, :] = table[h, pos[b, i], :], [batch or 1, heads, length, x]."""
    if self.array_bl is None:
      return table_hlx[None, :, :self.length]
    out_hbqx = jnp.take(table_hlx, self.array_bl, axis=1, mode="fill", fill_value=jnp.nan)
    return jnp.transpose(out_hbqx, (1, 0, 2, 3))

  def columns(self, table_bhql: jax.Array) -> jax.Array:
    """out[b, h, q, j] = table[b, h, q, pos[b, j]], [batch, heads, q, length]."""
    if self.array_bl is None:
      return table_bhql[..., :self.length]
    pos_bk = self.array_bl
    batch = max(table_bhql.shape[0], pos_bk.shape[0])
    table_bhql = jnp.broadcast_to(table_bhql, (batch,) + table_bhql.shape[1:])
    idx_bhqk = jnp.broadcast_to(pos_bk[:, None, None, :], table_bhql.shape[:3] + pos_bk.shape[-1:])
    return jnp.take_along_axis(table_bhql, idx_bhqk, axis=-1, mode="fill", fill_value=jnp.nan)

  def check(self, max_len: int) -> None:
    """ValueError when a table of `max_len` positions would be read past its end.

    Contiguous positions are checked by their length, concrete arrays by their values;
    traced arrays cannot be checked (the gathers then give NaN, not a wrong answer).
    """
    if self.array_bl is None:
      if self.length > max_len:
        raise ValueError(
            f"sequence length {self.length} exceeds max_len={max_len}, the number of positions "
            "the synthetic attention kinds were built for: truncate the input or raise "
            "ModelConfig.max_len (this changes the parameter shapes)")
      return
    if isinstance(self.array_bl, jax.core.Tracer) or not np.size(self.array_bl):
      return
    top = int(np.max(np.asarray(self.array_bl)))
    if top >= max_len:
      raise ValueError(
          f"position {top} >= max_len={max_len}: synthetic attention kinds only have logits "
          "for positions 0..max_len-1; truncate or split the sequence, or raise "
          "ModelConfig.max_len")
