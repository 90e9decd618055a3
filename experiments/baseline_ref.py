"""A reference decoder-only Transformer LM written to the recipe of flax's `examples/lm1b`.

Facts of that recipe (flax `examples/lm1b/models.py`, read for issue 19; the code here is ours):
pre-norm blocks with `LayerNorm` (scale and bias, epsilon 1e-6) before self-attention and before
the MLP, a final `LayerNorm`; query/key/value/output projections without biases, dot-product
logits scaled by 1/sqrt(head_dim); a ReLU MLP whose two dense layers have biases; kernels
initialised `xavier_uniform`, biases `normal(1e-6)`; token embedding `normal(stddev=1.0)`, not
scaled on input; a fixed sinusoidal position table (sin in the first half of the features, cos
in the second, inverse timescales exp(-ln(10^4) * i / (d/2 - 1))) added to the embeddings; with
`logits_via_embedding` the logits are x E^T / sqrt(d_model).

`RefSwitches` turns each choice where our `DecoderLM` differs into a flag, so "the reference with
every switch set to ours" computes what `DecoderLM(self_attention="dot")` computes (same
parameter tree up to names; `params_from_ours` converts one into the other).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NORMS = ("layer", "layer_nobias", "rms")
INITS = ("xavier", "lecun")


@dataclasses.dataclass(frozen=True)
class RefSwitches:
  """The choices that can be switched to our library's.

  Attributes:
    norm: "layer" (reference: mean-centred, scale and bias), "layer_nobias" (centred, scale
      only) or "rms" (ours: RMSNorm, scale only).
    mlp_bias: biases in the MLP's two dense layers (reference True, ours False).
    init: "xavier" (reference: xavier_uniform, fan_avg) or "lecun" (ours: truncated normal,
      variance 1 / fan_in) for every projection kernel.
    logit_scale: tied logits divided by sqrt(d_model) (reference and ours: True).
    small_qkv_init: query/key/value kernels [embed, heads, head_dim] drawn with variance
      divided by num_heads (ours: True). Our `layers.fan_in_init` passes only the input axes
      to `variance_scaling` with out_axis=-1, and jax then counts the heads axis as a
      convolution's receptive field: fan_in = d_model * num_heads instead of d_model, so
      these kernels start 1/sqrt(num_heads) (here 1/2) smaller in stddev than LeCun's.
  """

  norm: str = "layer"
  mlp_bias: bool = True
  init: str = "xavier"
  logit_scale: bool = True
  small_qkv_init: bool = False

  def __post_init__(self):
    if self.norm not in NORMS:
      raise ValueError(f"RefSwitches.norm={self.norm!r}: must be one of {NORMS}")
    if self.init not in INITS:
      raise ValueError(f"RefSwitches.init={self.init!r}: must be one of {INITS}")


OURS = RefSwitches(norm="rms", mlp_bias=False, init="lecun", logit_scale=True,
                   small_qkv_init=True)


@dataclasses.dataclass(frozen=True)
class RefConfig:
  """Sizes of the reference model (issue 19 uses the defaults but vocab / length)."""

  vocab_size: int = 40
  max_len: int = 24
  d_model: int = 64
  num_heads: int = 4
  head_dim: int = 16
  mlp_dim: int = 128
  num_layers: int = 2
  switches: RefSwitches = RefSwitches()


def sincos_table(max_len: int, d_model: int) -> np.ndarray:
  """Fixed [max_len, d_model] table: sin(p * w_i) in the first half, cos(p * w_i) in the second."""
  half = d_model // 2
  inv_timescale_h = np.exp(-np.log(10_000.0) * np.arange(half) / (half - 1))
  angle_lh = np.arange(max_len)[:, None] * inv_timescale_h[None, :]
  table_le = np.zeros((max_len, d_model), np.float32)
  table_le[:, :half] = np.sin(angle_lh)
  table_le[:, half:2 * half] = np.cos(angle_lh)
  return table_le


def kernel_init(kind: str, n_in: int, n_out: int, scale: float = 1.0):
  """Initializer of a kernel [in dims..., out dims...] with `n_in` input dims."""
  axes = dict(in_axis=tuple(range(n_in)), out_axis=tuple(range(n_in, n_in + n_out)))
  if kind == "xavier":
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform", **axes)
  return nn.initializers.variance_scaling(scale, "fan_in", "truncated_normal", **axes)


class Dense(nn.Module):
  """Contracts the last `n_in` dims of x with a kernel [in..., features...] (+ bias)."""

  features: tuple[int, ...]
  n_in: int = 1
  use_bias: bool = False
  init: str = "xavier"
  scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = tuple(x.shape[-self.n_in:]) + tuple(self.features)
    init = kernel_init(self.init, self.n_in, len(self.features), self.scale)
    kernel = self.param("kernel", init, shape)
    y = jnp.tensordot(x, kernel, axes=self.n_in)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.normal(1e-6), tuple(self.features))
      y = y + bias.reshape((1,) * (y.ndim - bias.ndim) + bias.shape)
    return y


class Norm(nn.Module):
  """LayerNorm (centred; with or without bias) or RMSNorm over the last dim, epsilon 1e-6."""

  kind: str = "layer"

  @nn.compact
  def __call__(self, x_ble: jax.Array) -> jax.Array:
    d = x_ble.shape[-1]
    if self.kind == "rms":
      y_ble = x_ble * jax.lax.rsqrt(jnp.mean(x_ble * x_ble, -1, keepdims=True) + 1e-6)
    else:
      c_ble = x_ble - jnp.mean(x_ble, -1, keepdims=True)
      y_ble = c_ble * jax.lax.rsqrt(jnp.mean(c_ble * c_ble, -1, keepdims=True) + 1e-6)
    y_ble = y_ble * self.param("scale", nn.initializers.ones, (d,))[None, None, :]
    if self.kind == "layer":
      y_ble = y_ble + self.param("bias", nn.initializers.zeros, (d,))[None, None, :]
    return y_ble


class SelfAttention(nn.Module):
  """Causal multi-head dot-product self-attention, no projection biases."""

  cfg: RefConfig

  @nn.compact
  def __call__(self, x_ble: jax.Array) -> jax.Array:
    c, init = self.cfg, self.cfg.switches.init
    heads = (c.num_heads, c.head_dim)
    scale = 1.0 / c.num_heads if c.switches.small_qkv_init else 1.0
    q_blhd = Dense(heads, init=init, scale=scale, name="query")(x_ble) / np.sqrt(c.head_dim)
    k_blhd = Dense(heads, init=init, scale=scale, name="key")(x_ble)
    v_blhd = Dense(heads, init=init, scale=scale, name="value")(x_ble)
    logits_bhqk = jnp.einsum("bqhd,bkhd->bhqk", q_blhd, k_blhd)
    n = x_ble.shape[1]
    causal_qk = np.tril(np.ones((n, n), bool))
    logits_bhqk = jnp.where(causal_qk[None, None], logits_bhqk, jnp.finfo(jnp.float32).min)
    weights_bhqk = jax.nn.softmax(logits_bhqk, axis=-1)
    out_blhd = jnp.einsum("bhqk,bkhd->bqhd", weights_bhqk, v_blhd)
    return Dense((x_ble.shape[-1],), n_in=2, init=init, name="out")(out_blhd)


class RefLM(nn.Module):
  """Reference decoder LM: input tokens [b, l] (already shifted right) -> logits [b, l, vocab]."""

  cfg: RefConfig

  @nn.compact
  def __call__(self, tokens_bl: jax.Array) -> jax.Array:
    c, s = self.cfg, self.cfg.switches
    embedding_ve = self.param("embedding", nn.initializers.normal(1.0), (c.vocab_size, c.d_model))
    x_ble = jnp.take(embedding_ve, tokens_bl, axis=0)
    x_ble = x_ble + sincos_table(c.max_len, c.d_model)[None, :tokens_bl.shape[1]]
    for i in range(c.num_layers):
      h_ble = Norm(s.norm, name=f"layers_{i}_attn_norm")(x_ble)
      x_ble = x_ble + SelfAttention(c, name=f"layers_{i}_attn")(h_ble)
      h_ble = Norm(s.norm, name=f"layers_{i}_mlp_norm")(x_ble)
      h_blm = jax.nn.relu(Dense((c.mlp_dim,), use_bias=s.mlp_bias, init=s.init,
                                name=f"layers_{i}_wi")(h_ble))
      x_ble = x_ble + Dense((c.d_model,), use_bias=s.mlp_bias, init=s.init,
                            name=f"layers_{i}_wo")(h_blm)
    x_ble = Norm(s.norm, name="final_norm")(x_ble)
    logits_blv = jnp.einsum("ble,ve->blv", x_ble, embedding_ve)
    if s.logit_scale:
      logits_blv = logits_blv / np.sqrt(c.d_model)
    return logits_blv


def params_from_ours(ours: dict) -> dict:
  """The unboxed params of our `DecoderLM` (dot) as params of `RefLM` with our switches (the
  library now: OURS with small_qkv_init=False and norm="layer"; OURS is the library before
  the fan-in fix of 2026-12-02)."""
  dec = ours["decoder"]
  ref = {"embedding": ours["embed"]["embedding"], "final_norm": dict(dec["final_norm"])}
  for name, layer in dec.items():
    if not name.startswith("layers_"):
      continue
    att = layer["self_attention"]
    ref[f"{name}_attn_norm"] = dict(layer["pre_self_attention_norm"])
    ref[f"{name}_mlp_norm"] = dict(layer["pre_mlp_norm"])
    ref[f"{name}_attn"] = {"query": dict(att["dot"]["query"]), "key": dict(att["dot"]["key"]),
                           "value": dict(att["value"]), "out": dict(att["out"])}
    ref[f"{name}_wi"] = dict(layer["mlp"]["wi"])
    ref[f"{name}_wo"] = dict(layer["mlp"]["wo"])
  return ref
