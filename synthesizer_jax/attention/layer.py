"""`Attention`: values, the kind's logits, the shared kernel, and the output projection."""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthesizer_jax import attention as registry
from synthesizer_jax.attention.core import check_positions, masked_softmax
from synthesizer_jax.config import AttentionConfig
from synthesizer_jax.layers import Projection


class Attention(nn.Module):
  """Multi-head attention of any kind: softmax(mask(B)) (X Wv) Wo.

  B comes from the kind's `LogitSource` (`cfg.kind`); masking, the float32
  softmax, dropout and the value product are shared by every kind. The softmax
  weights are sown as `intermediates/.../attention_weights`, [b, h, q, k].
  """

  cfg: AttentionConfig

  @nn.compact
  def __call__(self, x_bqe: jax.Array, x_bke: jax.Array, mask_b1qk: Optional[jax.Array],
               pos_bq: jax.Array, pos_bk: jax.Array, *, deterministic: bool = True) -> jax.Array:
    """Attends from queries x_bqe to keys/values x_bke.

    Args:
      x_bqe: query-side hidden states [batch, q_len, embed].
      x_bke: key/value-side hidden states [batch, k_len, embed].
      mask_b1qk: boolean [batch or 1, 1, q_len, k_len], True where attending is allowed.
      pos_bq, pos_bk: segment-relative integer positions of queries and keys, [batch or 1, len].
        A batch dimension of 1 (with a mask of batch 1) lets the random family compute
        its softmax once for the whole batch.
      deterministic: disables attention dropout.

    Returns:
      [batch, q_len, embed].
    """
    c = self.cfg
    if registry.uses_positions(c.kind):
      check_positions(pos_bq, pos_bq.shape[1], c.max_len)
      check_positions(pos_bk, pos_bk.shape[1], c.max_len)
    source = registry.make_source(c)
    v_bkhd = Projection((c.num_heads, c.head_dim), ("embed",), ("heads", "head_dim"),
                        dtype=c.dtype, name="value")(x_bke)
    logits_bhqk = source.logits(x_bqe, source.keys(x_bke), pos_bq, pos_bk)
    weights_bhqk = masked_softmax(logits_bhqk, mask_b1qk)
    batch = x_bqe.shape[0]
    if self.is_mutable_collection("intermediates"):
      self.sow("intermediates", "attention_weights",
               jnp.broadcast_to(weights_bhqk, (batch,) + weights_bhqk.shape[1:]))
    weights_bhqk = nn.Dropout(c.dropout_rate)(weights_bhqk, deterministic=deterministic)
    if weights_bhqk.shape[0] == 1 and batch > 1:
      # Input-independent weights (random family, no padding/packing): one [h, q, k] matrix
      # serves the whole batch; no [batch, heads, q, k] tensor is ever built.
      out_bqhd = jnp.einsum("hqk,bkhd->bqhd", weights_bhqk[0].astype(c.dtype), v_bkhd)
    else:
      out_bqhd = jnp.einsum("bhqk,bkhd->bqhd", weights_bhqk.astype(c.dtype), v_bkhd)
    return Projection((x_bqe.shape[-1],), ("heads", "head_dim"), ("embed",), dtype=c.dtype,
                      name="out")(out_bqhd)
