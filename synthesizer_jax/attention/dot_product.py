"""`dot`: the vanilla Transformer's query-key logits, B = (X Wq)(X Wk)^T / sqrt(d_h)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synthesizer_jax.attention.core import DotForm, LogitSource
from synthesizer_jax.layers import Projection


class DotProduct(LogitSource):
  """Scaled dot-product logits; per-head Wq, Wk of shape [embed, heads, head_dim]."""

  needs_keys = True
  uses_positions = False

  def setup(self):
    c = self.cfg
    self.query = Projection(
        (c.num_heads, c.head_dim), ("embed",), ("heads", "head_dim"), dtype=c.dtype)
    self.key = Projection(
        (c.num_heads, c.head_dim), ("embed",), ("heads", "head_dim"), dtype=c.dtype)

  @classmethod
  def param_counts(cls, c, d_model):
    return {"trained": 2 * d_model * c.num_heads * c.head_dim}  # Wq, Wk

  @classmethod
  def forward_flops(cls, c, d_model, n):
    h, dh = c.num_heads, c.head_dim
    return 2 * 2 * n * d_model * h * dh + 2 * h * n * n * dh  # Q, K projections; Q K^T

  def keys(self, x_bke: jax.Array) -> jax.Array:
    return self.key(x_bke)  # [b, k, h, d]

  def logits(self, x_bqe, keys, pos_bq, pos_bk):
    del pos_bq, pos_bk
    return jnp.einsum("bqhd,bkhd->bhqk", self._queries(x_bqe), keys)

  def dot_form(self, x_bqe, keys, pos_bq, pos_bk):
    del pos_bq, pos_bk
    return DotForm(self._queries(x_bqe), keys)

  def _queries(self, x_bqe):
    return self.query(x_bqe) / np.sqrt(self.cfg.head_dim).astype(self.cfg.dtype)
