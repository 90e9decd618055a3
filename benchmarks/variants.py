"""What the benchmark compares: the library's kinds plus baselines built only for the benchmark.

A *variant* is a library attention kind run one particular way:

- `dot`: the library's einsum attention (logits [b, h, n, n] materialised, float32 softmax).
- `dot_jax`, `dot_xla`, `dot_cudnn`: the same parameters through `jax.nn.dot_product_attention`
  with `implementation=None` (JAX picks; cuDNN flash attention on a GPU when it applies),
  `"xla"` or `"cudnn"` (GPU only, 16-bit dtypes only), and `is_causal=True`.
- `random`, `fixed_random`, `factorized_random`, `dense`, `factorized_dense`: the library kinds;
  in an unpacked decoder the random family takes the batch-free path (one [h, n, n] softmax per
  layer for the whole batch).
- `<kind>/per_batch`: the same kind forced onto the per-batch path by passing explicit
  positions of shape [b, n], which is what a packed batch costs; the gap to `<kind>` is the
  gain of the batch-free path.
- `random/sliced`: `random` with its logits read as the slice R[:, :n, :n] instead of a gather
  by position (valid only for an unpacked batch, positions 0..n-1). The gather's gradient is a
  scatter-add into R; the slice's is a pad. The gap to `random` is what the library would gain by
  slicing when positions are implicit.
- `fixed_random/cached` (layer benchmark only): softmax(mask(R)) of the never-trained R computed
  once, outside the step, as a constant; the gap to `fixed_random` is what caching it saves.

`JaxDotAttention` and `SlicedRandomAttention` have the parameter trees of the library's
`Attention` of their kind, so they run on the same variables (tests/test_benchmarks.py checks
that the outputs agree).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthesizer_jax import transformer
from synthesizer_jax.attention import Attention
from synthesizer_jax.attention.core import Mask, masked_softmax
from synthesizer_jax.config import AttentionConfig
from synthesizer_jax.layers import Projection, param

RANDOM_FAMILY = ("random", "fixed_random", "factorized_random")


@dataclasses.dataclass(frozen=True)
class Variant:
  """One line of the plots: a library kind, and how it is run."""

  name: str
  kind: str
  impl: str | None = None  # jax.nn.dot_product_attention implementation; None: the library
  per_batch: bool = False  # force the per-batch path with explicit [b, n] positions
  cached: bool = False  # fixed_random with softmax(R) precomputed (layer benchmark only)
  sliced: bool = False  # random with R[:, :n, :n] sliced instead of gathered
  attention_impl: str = "auto"  # ModelConfig.attention_impl ("dense@blockwise")

  @property
  def uses_jax_dpa(self) -> bool:
    return self.kind == "dot" and self.name.partition("@")[0] != "dot"

  @property
  def replaces_layer(self) -> bool:
    """Whether the variant runs a benchmark module instead of the library's `Attention`."""
    return self.uses_jax_dpa or self.sliced


def make_variant(name: str) -> Variant:
  """Parses a variant name ("random", "dot_cudnn", "random/per_batch", "fixed_random/cached").

  "kind@impl" runs the library's kind with ModelConfig.attention_impl=impl ("dense@blockwise").
  """
  if "@" in name:
    from synthesizer_jax.attention import fused

    base, _, impl = name.partition("@")
    if impl not in fused.IMPLS:
      raise ValueError(f"variant {name!r}: unknown attention_impl {impl!r}; use {fused.IMPLS}")
    variant = make_variant(base)
    if variant.replaces_layer or variant.cached:
      raise ValueError(f"variant {name!r}: '@{impl}' applies to the library's kinds only")
    return dataclasses.replace(variant, name=name, attention_impl=impl)
  base, _, suffix = name.partition("/")
  impls = {"dot_jax": None, "dot_xla": "xla", "dot_cudnn": "cudnn"}
  if base in impls:
    if suffix:
      raise ValueError(f"variant {name!r}: {base} takes no '/{suffix}' suffix")
    return Variant(name, "dot", impl=impls[base])
  from synthesizer_jax.attention import parse_kind

  parse_kind(base)  # raises a clear error for an unknown kind
  if suffix == "":
    return Variant(name, base)
  if suffix == "per_batch":
    return Variant(name, base, per_batch=True)
  if suffix == "cached" and base == "fixed_random":
    return Variant(name, base, cached=True)
  if suffix == "sliced" and base == "random":
    return Variant(name, base, sliced=True)
  raise ValueError(f"variant {name!r}: unknown suffix '/{suffix}'; use '/per_batch' "
                   "(any kind), '/cached' (fixed_random only) or '/sliced' (random only)")


class _QueryKey(nn.Module):
  """The query and key projections, named like the library's `DotProduct` source."""

  cfg: AttentionConfig

  @nn.compact
  def __call__(self, x_bqe, x_bke):
    c = self.cfg
    shape, axes = (c.num_heads, c.head_dim), ("heads", "head_dim")
    q_bqhd = Projection(shape, ("embed",), axes, dtype=c.dtype, name="query")(x_bqe)
    k_bkhd = Projection(shape, ("embed",), axes, dtype=c.dtype, name="key")(x_bke)
    return q_bqhd, k_bkhd


class JaxDotAttention(nn.Module):
  """`Attention(kind="dot")` computed by `jax.nn.dot_product_attention` (benchmark baseline).

  Only for causal self-attention of an unpacked decoder: with `is_causal` the mask argument is
  ignored (it is exactly the causal mask there), so flash kernels can skip the masked half.
  """

  cfg: AttentionConfig
  implementation: str | None = None
  is_causal: bool = True

  @nn.compact
  def __call__(self, x_bqe, x_bke, mask_b1qk, pos_bq, pos_bk, *, deterministic: bool = True,
               mode: str = "train"):
    del pos_bq, pos_bk, deterministic  # no attention dropout in the benchmark
    if mode != "train":
      raise ValueError(f"JaxDotAttention benchmarks training only, got mode={mode!r}")
    c = self.cfg
    q_bqhd, k_bkhd = _QueryKey(c, name="dot")(x_bqe, x_bke)
    v_bkhd = Projection((c.num_heads, c.head_dim), ("embed",), ("heads", "head_dim"),
                        dtype=c.dtype, name="value")(x_bke)
    mask = None if self.is_causal else _dense(mask_b1qk, x_bqe.shape[1], x_bke.shape[1])
    out_bqhd = jax.nn.dot_product_attention(q_bqhd, k_bkhd, v_bkhd, mask=mask,
                                            is_causal=self.is_causal,
                                            implementation=self.implementation)
    return Projection((x_bqe.shape[-1],), ("heads", "head_dim"), ("embed",), dtype=c.dtype,
                      name="out")(out_bqhd)


def _dense(mask, q_len: int, k_len: int):
  """A boolean [b, 1, q, k] mask from a library `Mask` (what the transformer passes) or array."""
  return mask.dense(q_len, k_len) if isinstance(mask, Mask) else mask


class _RandomTable(nn.Module):
  """The `random` kind's R, [heads, max_len, max_len], named and initialised like the library's."""

  cfg: AttentionConfig

  @nn.compact
  def __call__(self):
    c = self.cfg
    return param(self, "R", nn.initializers.normal(c.random_init_stddev),
                 (c.num_heads, c.max_len, c.max_len), ("heads", "syn_len", "syn_len"))


class SlicedRandomAttention(nn.Module):
  """`Attention(kind="random")` reading R[:, :n, :n] by slicing (benchmark variant).

  Only for an unpacked batch whose positions are 0..n-1 (the mask must have batch 1); there it
  equals the library's gather by position.
  """

  cfg: AttentionConfig

  @nn.compact
  def __call__(self, x_bqe, x_bke, mask_b1qk, pos_bq, pos_bk, *, deterministic: bool = True,
               mode: str = "train"):
    del pos_bq, pos_bk, deterministic
    q_len, k_len = x_bqe.shape[1], x_bke.shape[1]
    mask_b1qk = None if mask_b1qk is None else _dense(mask_b1qk, q_len, k_len)
    if mode != "train" or mask_b1qk is None or mask_b1qk.shape[0] != 1:
      raise ValueError("SlicedRandomAttention runs unpacked training batches only")
    c = self.cfg
    v_bkhd = Projection((c.num_heads, c.head_dim), ("embed",), ("heads", "head_dim"),
                        dtype=c.dtype, name="value")(x_bke)
    r_hll = _RandomTable(c, name="random")()
    logits_1hqk = r_hll[None, :, :q_len, :k_len].astype(c.dtype)
    weights_hqk = masked_softmax(logits_1hqk, mask_b1qk)[0]
    out_bqhd = jnp.einsum("hqk,bkhd->bqhd", weights_hqk.astype(c.dtype), v_bkhd)
    return Projection((x_bqe.shape[-1],), ("heads", "head_dim"), ("embed",), dtype=c.dtype,
                      name="out")(out_bqhd)


def layer_for(variant: Variant, cfg: AttentionConfig, name: str | None = None) -> nn.Module:
  """The attention module a variant runs."""
  if variant.uses_jax_dpa:
    return JaxDotAttention(cfg, implementation=variant.impl, name=name)
  if variant.sliced:
    return SlicedRandomAttention(cfg, name=name)
  return Attention(cfg, name=name)


@contextlib.contextmanager
def model_attention(variant: Variant) -> Iterator[None]:
  """While tracing a model inside this block, its attention layers are `variant`'s module.

  The transformer builds `Attention(cfg, name=...)` inside its compact methods; for the
  benchmark-only variants that global is swapped for the variant's module (`layer_for`) so a
  whole DecoderLM runs on it without touching the library. Use only around init and lowering.
  """
  if not variant.replaces_layer:
    yield
    return
  original = transformer.Attention

  def make(cfg, name=None, **kwargs):
    if kwargs.get("cross"):
      raise ValueError(f"variant {variant.name!r} runs decoder-only models")
    return layer_for(variant, cfg, name=name)

  transformer.Attention = make
  try:
    yield
  finally:
    transformer.Attention = original


def cached_fixed_random_weights(layer_vars, cfg: AttentionConfig, mask_11qk) -> jax.Array:
  """softmax(mask(R[:n, :n])) of a `fixed_random` layer, [h, n, n]: a constant of training."""
  r_hll = nn.meta.unbox(layer_vars["constants"]["fixed_random"]["R"])
  n = mask_11qk.shape[-1]
  return masked_softmax(r_hll[None, :, :n, :n], mask_11qk)[0]


def apply_with_cached_weights(params, weights_hqk, x_bqe, cfg: AttentionConfig) -> jax.Array:
  """The `fixed_random` layer's output given its precomputed weights: (W (X Wv)) Wo."""
  params = nn.meta.unbox(params)
  v_bkhd = jnp.einsum("bke,ehd->bkhd", x_bqe.astype(cfg.dtype),
                      params["value"]["kernel"].astype(cfg.dtype))
  out_bqhd = jnp.einsum("hqk,bkhd->bqhd", weights_hqk.astype(cfg.dtype), v_bkhd)
  return jnp.einsum("bqhd,hde->bqe", out_bqhd, params["out"]["kernel"].astype(cfg.dtype))
