"""Building blocks shared by every model: embeddings, projections, norms, MLP.

Every parameter carries logical axis names from the vocabulary of DESIGN.md
section 4 (`nn.with_logical_partitioning`), so `sharding.py` can place it on
any mesh without touching this file.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Axes = tuple[str, ...]

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu}


def fan_in_init(fan_in_axes: int | Sequence[int] = 0):
  """LeCun-normal init whose fan-in is the product of `fan_in_axes`.

  Every other axis counts as an output axis, so a per-head kernel [embed, heads, head_dim]
  has fan-in embed, as one [embed, heads * head_dim] matrix would. (Before 2026-12-02 the
  heads axis counted as a receptive field: fan-in embed * heads, a sqrt(heads) times smaller
  init that made `dot` learn recall on 3 of 6 seeds; docs/results_early.md, issue 19.)
  """
  axes = (fan_in_axes,) if isinstance(fan_in_axes, int) else tuple(fan_in_axes)

  def init(key, shape, dtype=jnp.float32):
    ins = tuple(a % len(shape) for a in axes)
    outs = tuple(i for i in range(len(shape)) if i not in ins)
    return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=ins,
                                            out_axis=outs)(key, shape, dtype)

  return init


def param(module: nn.Module, name: str, init, shape: Sequence[int], axes: Axes):
  """A float32 parameter with logical axis names `axes` (one per dimension)."""
  if len(axes) != len(shape):
    raise ValueError(f"{name}: {len(axes)} axis names for shape {tuple(shape)}")
  return module.param(name, nn.with_logical_partitioning(init, axes), tuple(shape), jnp.float32)


def constrain(x: jax.Array, axes: Axes) -> jax.Array:
  """Activation sharding hint; a no-op outside a mesh + rules context."""
  return nn.with_logical_constraint(x, axes)


class Projection(nn.Module):
  """x[..., in...] @ W[in..., out...] (+ bias), W with logical axes.

  Attributes:
    features: the produced trailing dims.
    in_axes: logical names of the contracted trailing input dims (their count
      says how many trailing dims are contracted).
    out_axes: logical names of `features`.
  """

  features: tuple[int, ...]
  in_axes: Axes
  out_axes: Axes
  use_bias: bool = False
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n_in = len(self.in_axes)
    in_shape = tuple(x.shape[-n_in:])
    kernel = param(self, "kernel", fan_in_init(tuple(range(n_in))),
                   in_shape + tuple(self.features), self.in_axes + self.out_axes)
    y = jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype),
                            ((tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in))), ((), ())))
    if self.use_bias:
      bias = param(self, "bias", nn.initializers.zeros, self.features, self.out_axes)
      y = y + bias.astype(self.dtype).reshape((1,) * (y.ndim - bias.ndim) + bias.shape)
    return y


class RMSNorm(nn.Module):
  """Root-mean-square layer norm (T5 style), computed in float32."""

  epsilon: float = 1e-6
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",))
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon)
    return (x32 * scale.reshape((1,) * (x.ndim - 1) + scale.shape)).astype(self.dtype)


class LayerNorm(nn.Module):
  """Layer norm with a learned scale and bias (Ba et al. 2016), computed in float32."""

  epsilon: float = 1e-6
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",))
    bias = param(self, "bias", nn.initializers.zeros, (x.shape[-1],), ("embed",))
    x32 = x.astype(jnp.float32)
    x32 = x32 - jnp.mean(x32, axis=-1, keepdims=True)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon)
    shape = (1,) * (x.ndim - 1) + scale.shape
    return (x32 * scale.reshape(shape) + bias.reshape(shape)).astype(self.dtype)


NORMS = {"rmsnorm": RMSNorm, "layernorm": LayerNorm}


class MLP(nn.Module):
  """Position-wise feed-forward block: d_model -> mlp_dim -> d_model."""

  d_model: int
  mlp_dim: int
  activation: str = "relu"
  dropout_rate: float = 0.0
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x_ble: jax.Array, deterministic: bool) -> jax.Array:
    h_blm = Projection((self.mlp_dim,), ("embed",), ("mlp",), dtype=self.dtype, name="wi")(x_ble)
    h_blm = ACTIVATIONS[self.activation](h_blm)
    h_blm = constrain(h_blm, ("batch", "length", "mlp"))
    h_blm = nn.Dropout(self.dropout_rate)(h_blm, deterministic=deterministic)
    return Projection((self.d_model,), ("mlp",), ("embed",), dtype=self.dtype, name="wo")(h_blm)


def check_token_ids(tokens, vocab_size: int, name: str = "tokens") -> None:
  """ValueError when concrete token ids fall outside [0, vocab_size); traced ids pass.

  A gather would otherwise wrap negative ids around and return NaN (or padding) for ids past
  the table, silently. Under jit `Embed` turns such ids into NaN embeddings instead, which
  the trainer's non-finite guard reports; `steps.check_batch` checks each batch on the host.
  """
  if (isinstance(tokens, jax.core.Tracer) or not getattr(tokens, "is_fully_addressable", True)
      or np.size(tokens) == 0):
    return  # traced or spread over processes: Embed's NaN path and check_batch cover these
  values = np.asarray(tokens)
  if not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"{name} must be integer token ids, got dtype {values.dtype}")
  low, high = int(values.min()), int(values.max())
  if low < 0 or high >= vocab_size:
    bad = low if low < 0 else high
    raise ValueError(
        f"{name} holds token id {bad}, outside [0, vocab_size={vocab_size}): the vocabulary and "
        "the model disagree; encode with the model's vocabulary, or build the model with "
        "ModelConfig.vocab_size = the vocabulary's size")


class Embed(nn.Module):
  """Token embedding table [vocab, embed]; `attend` gives tied output logits."""

  vocab_size: int
  d_model: int
  dtype: str = "float32"

  def setup(self):
    self.embedding = param(self, "embedding", nn.initializers.normal(1.0),
                           (self.vocab_size, self.d_model), ("vocab", "embed"))

  def __call__(self, tokens_bl: jax.Array) -> jax.Array:
    if not jnp.issubdtype(tokens_bl.dtype, jnp.integer):
      raise ValueError(f"tokens must be integers, got dtype {tokens_bl.dtype}")
    check_token_ids(tokens_bl, self.vocab_size)
    ok_bl = (tokens_bl >= 0) & (tokens_bl < self.vocab_size)
    emb_ble = jnp.take(self.embedding, jnp.where(ok_bl, tokens_bl, 0), axis=0)
    return jnp.where(ok_bl[..., None], emb_ble, jnp.nan).astype(self.dtype)  # never wrap around

  def attend(self, x_ble: jax.Array) -> jax.Array:
    """Logits [b, l, vocab] = x E^T / sqrt(d_model) (scaled because E ~ N(0, 1))."""
    emb = self.embedding.astype(self.dtype)
    return jnp.einsum("ble,ve->blv", x_ble, emb) / np.sqrt(self.d_model).astype(self.dtype)


def sinusoidal_positions(positions_bl: jax.Array, d_model: int) -> jax.Array:
  """Sinusoidal timing signal (Vaswani et al. 2017) at arbitrary positions, [b, l, d_model]."""
  half = d_model // 2
  inv_freq = np.exp(-np.log(10_000.0) * np.arange(half) / max(half - 1, 1)).astype(np.float32)
  inv_freq = inv_freq.reshape((1,) * positions_bl.ndim + (half,))
  angles = positions_bl.astype(jnp.float32)[..., None] * inv_freq
  signal = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  if d_model % 2:
    signal = jnp.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, 1)])
  return signal
