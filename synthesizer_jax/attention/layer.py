"""`Attention`: values, the kind's logits, the shared kernel, the output projection, the cache."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthesizer_jax.attention import fused, registry
from synthesizer_jax.attention.core import AttentionConfig, Mask, masked_softmax
from synthesizer_jax.attention.positions import Positions
from synthesizer_jax.layers import Projection

MODES = ("train", "prefill", "decode")


def check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: must be one of {MODES}")


class Attention(nn.Module):
  """Multi-head attention of any kind: softmax(mask(B)) (X Wv) Wo.

  B comes from the kind's `LogitSource` (`cfg.kind`); masking, the float32
  softmax, dropout and the value product are shared by every kind. The softmax
  weights are sown as `intermediates/.../attention_weights`, [b, h, q, k].
  `cfg.impl` chooses how (fused.py): the materialized logits, or a fused kernel
  fed the kind's `dot_form`; asking for the weights (a mutable "intermediates")
  or for attention dropout always takes the materialized path under "auto".

  Modes: "train" attends within the given inputs. "prefill" and "decode" use
  the "cache" collection: self-attention appends the new tokens' values (and
  keys, for kinds that read them: synthetic kinds cache values only) at the
  cache index and attends over every valid cached slot up to its own;
  cross-attention (`cross=True`) stores the encoder's values/keys at prefill
  and reads them at every decode step. In cached modes a negative query
  position marks a padding slot (left-padded prompts).

  Attributes:
    cfg: the layer's AttentionConfig.
    cross: True for encoder-decoder cross-attention.
  """

  cfg: AttentionConfig
  cross: bool = False

  @nn.compact
  def __call__(self, x_bqe: jax.Array, x_bke: jax.Array | None,
               mask: Mask | jax.Array | None, pos_bq: Positions | jax.Array | int | None,
               pos_bk: Positions | jax.Array | int | None, *,
               deterministic: bool = True, mode: str = "train") -> jax.Array:
    """Attends from queries x_bqe to keys/values x_bke.

    Args:
      x_bqe: query-side hidden states [batch, q_len, embed].
      x_bke: key/value-side hidden states [batch, k_len, embed] (None in decode mode).
      mask: a `Mask` (or a boolean [batch or 1, 1, q_len, k_len] array, materialized path
        only), True where attending is allowed (train mode, and cross-attention prefill;
        self-attention builds it from the cache). None: every key is visible.
      pos_bq, pos_bk: segment-relative positions of queries and keys: `Positions` (what the
        models pass), or an int array [batch or 1, len], or an int n / None for 0..n-1 of
        every row (`Positions.of`). Contiguous positions are read by slicing; positions (and
        masks) of batch 1 let the random family compute its softmax once for the batch.
      deterministic: disables attention dropout.
      mode: "train", "prefill" or "decode".

    Returns:
      [batch, q_len, embed].
    """
    check_mode(mode)
    c = self.cfg
    batch, q_len = x_bqe.shape[:2]
    mask = Mask() if mask is None else mask
    pos_bq = Positions.of(pos_bq, q_len)
    source = registry.make_source(c)
    value = Projection((c.num_heads, c.head_dim), ("embed",), ("heads", "head_dim"),
                       dtype=c.dtype, name="value")
    if mode == "train":
      pos_bk = Positions.of(pos_bk, x_bke.shape[1])
      self._check(pos_bq, pos_bk)
      v_bkhd, keys = value(x_bke), source.keys(x_bke)
    elif self.cross:
      v_bkhd, keys, pos_bk, mask = self._cross_cache(value, source, x_bke, mask, pos_bk, mode)
    else:
      if mode == "decode" and not self.has_variable("cache", "cached_value"):
        raise ValueError("decode step without a cache: create one with "
                         "sj.decoding.init_cache(...) and pass it as variables['cache']")
      self._check(pos_bq, None)
      v_bkhd, keys, pos_bk, mask = self._self_cache(value(x_bqe), source.keys(x_bqe),
                                                    pos_bq.dense())
      pos_bq = pos_bq.clipped()
    impl = fused.choose(
        c.impl, has_dot_form=registry.has_dot_form(c.kind),
        mask_is_dense=not isinstance(mask, Mask),
        dropout_active=c.dropout_rate > 0 and not deterministic, decoding=mode == "decode",
        wants_weights=self.is_mutable_collection("intermediates"),
        logits_bytes=4 * batch * c.num_heads * q_len * v_bkhd.shape[1], k_len=v_bkhd.shape[1],
        platform=jax.default_backend())
    if impl == "materialized":
      out_bqhd = self._materialized(source, x_bqe, keys, v_bkhd, mask, pos_bq, pos_bk,
                                    deterministic)
    else:
      form = source.dot_form(x_bqe, keys, pos_bq, pos_bk)
      out_bqhd = fused.attend(impl, form, v_bkhd, mask, pos_bq, pos_bk, q_len,
                              block_size=c.block_size).astype(c.dtype)
    return Projection((x_bqe.shape[-1],), ("heads", "head_dim"), ("embed",), dtype=c.dtype,
                      name="out")(out_bqhd)

  def _materialized(self, source, x_bqe, keys, v_bkhd, mask, pos_bq, pos_bk, deterministic):
    """softmax(mask(B)) V from the logits B [b, h, q, k]; sows the weights."""
    c = self.cfg
    logits_bhqk = source.logits(x_bqe, keys, pos_bq, pos_bk)
    weights_bhqk = masked_softmax(logits_bhqk, mask)
    batch = x_bqe.shape[0]
    if self.is_mutable_collection("intermediates"):
      self.sow("intermediates", "attention_weights",
               jnp.broadcast_to(weights_bhqk, (batch,) + weights_bhqk.shape[1:]))
    if c.dropout_rate > 0 and not deterministic:
      # One dropout mask per example: batch-free weights are broadcast first (only then).
      weights_bhqk = jnp.broadcast_to(weights_bhqk, (batch,) + weights_bhqk.shape[1:])
    weights_bhqk = nn.Dropout(c.dropout_rate)(weights_bhqk, deterministic=deterministic)
    if weights_bhqk.shape[0] == 1 and batch > 1:
      # Input-independent weights (random family, no padding/packing): one [h, q, k] matrix
      # serves the whole batch; no [batch, heads, q, k] tensor is ever built.
      out_bqhd = jnp.einsum("hqk,bkhd->bqhd", weights_bhqk[0].astype(c.dtype), v_bkhd)
    else:
      out_bqhd = jnp.einsum("bhqk,bkhd->bqhd", weights_bhqk.astype(c.dtype), v_bkhd)
    return out_bqhd

  def _check(self, pos_bq: Positions, pos_bk: Positions | None):
    if registry.uses_positions(self.cfg.kind):
      for pos in (pos_bq, pos_bk):
        if pos is not None:
          pos.check(self.cfg.max_len)

  def _self_cache(self, v_bqhd, keys_new, pos_bq):
    """Appends the new slots to the cache; returns cached values, keys, positions and mask."""
    q_len = v_bqhd.shape[1]
    if pos_bq.shape[0] != v_bqhd.shape[0]:
      pos_bq = jnp.broadcast_to(pos_bq, (v_bqhd.shape[0], q_len))
    # Created by sj.decoding.init_cache from a full-length call; zeros mean "empty slot".
    cached_v = self.variable("cache", "cached_value", jnp.zeros_like, v_bqhd)
    cached_k = (None if keys_new is None else
                self.variable("cache", "cached_keys", jax.tree.map, jnp.zeros_like, keys_new))
    cached_pos = self.variable("cache", "cached_positions", jnp.zeros, pos_bq.shape, jnp.int32)
    cached_ok = self.variable("cache", "cached_valid", jnp.zeros, pos_bq.shape, bool)
    index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    i = index.value

    def write(buf, new):
      return jax.lax.dynamic_update_slice_in_dim(buf, new.astype(buf.dtype), i, axis=1)

    cached_v.value = write(cached_v.value, v_bqhd)
    if cached_k is not None:
      cached_k.value = jax.tree.map(write, cached_k.value, keys_new)
    cached_pos.value = write(cached_pos.value, jnp.maximum(pos_bq, 0))
    cached_ok.value = write(cached_ok.value, pos_bq >= 0)
    index.value = i + q_len
    mask = Mask(k_valid_bk=cached_ok.value, q_offset=i, causal=True)
    return (cached_v.value, None if cached_k is None else cached_k.value,
            Positions.of(cached_pos.value), mask)

  def _cross_cache(self, value, source, x_bke, mask, pos_bk, mode):
    """Encoder values/keys: computed and stored at prefill, read at every decode step."""
    if mode == "prefill":
      if x_bke is None or pos_bk is None:
        raise ValueError("cross-attention prefill needs the encoder outputs and positions")
      pos_bk = Positions.of(pos_bk, x_bke.shape[1])
      self._check(pos_bk, None)
      v_new, k_new = value(x_bke), source.keys(x_bke)
      if isinstance(mask, Mask):
        mask = mask.dense(1, x_bke.shape[1])
      visible_bk = jnp.broadcast_to(jnp.any(mask, axis=(1, 2)), x_bke.shape[:2])
      pos_new = jnp.broadcast_to(pos_bk.dense(), visible_bk.shape)
    else:
      if not self.has_variable("cache", "cross_value"):
        raise ValueError("cross-attention decode step before prefill: run the decoder once with "
                         "mode='prefill' (sj.decoding does) so the encoder keys/values are cached")
      v_new = k_new = pos_new = visible_bk = None
    make = lambda name, x: self.variable("cache", name, lambda: x)
    cv, cp, cm = make("cross_value", v_new), make("cross_positions", pos_new), make(
        "cross_visible", visible_bk)
    ck = None if not source.needs_keys else make("cross_keys", k_new)
    if mode == "prefill":
      cv.value, cp.value, cm.value = v_new, pos_new, visible_bk
      if ck is not None:
        ck.value = k_new
    return (cv.value, None if ck is None else ck.value, Positions.of(cp.value),
            Mask(k_valid_bk=cm.value))
