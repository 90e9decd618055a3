"""The synthetic kinds of Tay et al. (2021): logits without query-key products.

All of them produce, for query i, logits over the *positions* 0..max_len-1 and
gather the columns of the keys' segment-relative positions (never the first
k_len columns), so packed and unpacked batches agree and decoding can read one
row at a time. See docs/synthesizers.md for shapes, initialisations and sources.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthesizer_jax.attention.core import DotForm, LogitSource
from synthesizer_jax.attention.positions import Positions
from synthesizer_jax.layers import fan_in_init, param


class HeadwiseMLP(nn.Module):
  """Per-head two-layer F(x) = W2 relu(W1 x + b1) + b2: [b, q, embed] -> [b, q, heads, out]."""

  num_heads: int
  hidden_dim: int
  out_dim: int
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x_bqe: jax.Array, factors: bool = False):
    """F(x) [b, q, heads, out]; with `factors`, (relu(W1 x + b1) [b, q, h, f], W2, b2) instead."""
    h, f, o = self.num_heads, self.hidden_dim, self.out_dim
    w1 = param(self, "w1", fan_in_init(0), (x_bqe.shape[-1], h, f), ("embed", "heads", "head_dim"))
    b1 = param(self, "b1", nn.initializers.zeros, (h, f), ("heads", "head_dim"))
    w2 = param(self, "w2", fan_in_init(1), (h, f, o), ("heads", "head_dim", "syn_len"))
    b2 = param(self, "b2", nn.initializers.zeros, (h, o), ("heads", "syn_len"))
    dt = self.dtype
    pre_bqhf = jnp.einsum("bqe,ehf->bqhf", x_bqe.astype(dt), w1.astype(dt))
    hid_bqhf = jax.nn.relu(pre_bqhf + b1.astype(dt)[None, None])
    if factors:
      return hid_bqhf, w2.astype(dt), b2.astype(dt)
    return jnp.einsum("bqhf,hfo->bqho", hid_bqhf, w2.astype(dt)) + b2.astype(dt)[None, None]


def _two_layer_params(c, d_model: int, out: int) -> int:
  """W1, b1, W2, b2 of one HeadwiseMLP per head."""
  f = c.dense_hidden_dim
  return c.num_heads * (d_model * f + f + f * out + out)


class Dense(LogitSource):
  """`dense`: B[i, j] = F_h(x_i)[pos_j], F_h a per-head two-layer MLP onto max_len logits."""

  @classmethod
  def param_counts(cls, c, d_model):
    return {"trained": _two_layer_params(c, d_model, c.max_len)}

  @classmethod
  def forward_flops(cls, c, d_model, n):
    h, f = c.num_heads, c.dense_hidden_dim
    return 2 * n * d_model * h * f + 2 * n * h * f * c.max_len

  def setup(self):
    c = self.cfg
    self.f = HeadwiseMLP(c.num_heads, c.dense_hidden_dim, c.max_len, dtype=c.dtype)

  def logits(self, x_bqe, keys, pos_bq, pos_bk):
    del keys, pos_bq
    table_bhql = jnp.transpose(self.f(x_bqe), (0, 2, 1, 3))
    return pos_bk.columns(table_bhql)

  def dot_form(self, x_bqe, keys, pos_bq, pos_bk):
    """query = [relu(W1 x_i + b1), 1], key = [W2[:, pos_j], b2[pos_j]] (docs/synthesizers.md)."""
    del keys, pos_bq
    hid_bqhf, w2_hfl, b2_hl = self.f(x_bqe, factors=True)
    q_bqhd = jnp.concatenate([hid_bqhf, jnp.ones_like(hid_bqhf[..., :1])], axis=-1)
    table_hld = jnp.concatenate([jnp.swapaxes(w2_hfl, 1, 2), b2_hl[..., None]], axis=-1)
    return DotForm(q_bqhd, _rows(table_hld, pos_bk))


class FactorizedDense(LogitSource):
  """`factorized_dense`: B[i, j] = A_h(x_i)[pos_j mod a] * C_h(x_i)[pos_j div a], a * b = max_len.

  A tiles its a logits b times along the max_len axis, C repeats each of its b
  logits a times, and the two tiled rows multiply elementwise (paper eq. 4). A product
  of two logits is no dot product of one query with one key: materialized only.
  """

  has_dot_form = False

  @classmethod
  def param_counts(cls, c, d_model):
    a, b = c.factor_sizes
    return {"trained": _two_layer_params(c, d_model, a) + _two_layer_params(c, d_model, b)}

  @classmethod
  def forward_flops(cls, c, d_model, n):
    h, f = c.num_heads, c.dense_hidden_dim
    a, b = c.factor_sizes
    return 2 * 2 * n * d_model * h * f + 2 * n * h * f * (a + b)

  def setup(self):
    c = self.cfg
    a, b = c.factor_sizes
    self.f_a = HeadwiseMLP(c.num_heads, c.dense_hidden_dim, a, dtype=c.dtype)
    self.f_c = HeadwiseMLP(c.num_heads, c.dense_hidden_dim, b, dtype=c.dtype)

  def logits(self, x_bqe, keys, pos_bq, pos_bk):
    del keys, pos_bq
    a, b = self.cfg.factor_sizes
    pos = pos_bk.dense()
    # Positions >= a * b are sent out of range so they give NaN, like the other kinds.
    pos = jnp.where(pos < a * b, pos, a * b * 2)
    a_bhqa = jnp.transpose(self.f_a(x_bqe), (0, 2, 1, 3))
    c_bhqb = jnp.transpose(self.f_c(x_bqe), (0, 2, 1, 3))
    return Positions.of(pos % a).columns(a_bhqa) * Positions.of(pos // a).columns(c_bhqb)


class Random(LogitSource):
  """`random`: B[i, j] = R_h[pos_i, pos_j], R a trainable [heads, max_len, max_len] parameter."""

  trainable = True
  has_bias = True

  @classmethod
  def param_counts(cls, c, d_model):
    del d_model
    return {"trained" if cls.trainable else "constant": c.num_heads * c.max_len * c.max_len}

  @classmethod
  def forward_flops(cls, c, d_model, n):
    del c, d_model, n
    return 0  # a gather of R

  def setup(self):
    c = self.cfg
    shape = (c.num_heads, c.max_len, c.max_len)
    axes = ("heads", "syn_len", "syn_len")
    init = nn.initializers.normal(c.random_init_stddev)
    if self.trainable:
      self.table = param(self, "R", init, shape, axes)
    else:
      # Not a parameter: lives in the "constants" collection, never in grads or the optimizer.
      boxed = nn.with_logical_partitioning(init, axes)
      self._table = self.variable("constants", "R", lambda: boxed(self.make_rng("params"), shape))

  def matrix(self) -> jax.Array:
    """R of every head, [heads, max_len, max_len]."""
    return self.table if self.trainable else self._table.value

  def logits(self, x_bqe, keys, pos_bq, pos_bk):
    del x_bqe, keys
    return pos_bk.columns(pos_bq.rows(self.matrix().astype(self.cfg.dtype)))

  def dot_form(self, x_bqe, keys, pos_bq, pos_bk):
    del x_bqe, keys, pos_bq, pos_bk
    return DotForm(bias_hll=self.matrix().astype(self.cfg.dtype))


class FixedRandom(Random):
  """`fixed_random`: `random` with R drawn at init and never trained."""

  trainable = False


class FactorizedRandom(LogitSource):
  """`factorized_random`: B[i, j] = (R1_h R2_h^T)[pos_i, pos_j], R1, R2 of shape [max_len, k].

  Each factor is N(0, s / sqrt(k)) entrywise (s = random_init_stddev) so that the
  product's entries have standard deviation s, like the unfactorized R.
  """

  @classmethod
  def param_counts(cls, c, d_model):
    del d_model
    return {"trained": 2 * c.num_heads * c.max_len * c.random_rank}

  @classmethod
  def forward_flops(cls, c, d_model, n):
    del d_model
    return 2 * c.num_heads * n * n * c.random_rank  # R1[pos_q] R2[pos_k]^T

  def setup(self):
    c = self.cfg
    shape = (c.num_heads, c.max_len, c.random_rank)
    axes = ("heads", "syn_len", "syn_rank")
    init = nn.initializers.normal((c.random_init_stddev ** 0.5) / c.random_rank ** 0.25)
    self.r1 = param(self, "R1", init, shape, axes)
    self.r2 = param(self, "R2", init, shape, axes)

  def matrix(self) -> jax.Array:
    """R1 R2^T of every head, [heads, max_len, max_len]."""
    return jnp.einsum("hir,hjr->hij", self.r1, self.r2)

  def logits(self, x_bqe, keys, pos_bq, pos_bk):
    del x_bqe, keys
    dt = self.cfg.dtype
    r1_bhqr = pos_bq.rows(self.r1.astype(dt))
    r2_bhkr = pos_bk.rows(self.r2.astype(dt))
    return jnp.einsum("bhqr,bhkr->bhqk", r1_bhqr, r2_bhkr)

  def dot_form(self, x_bqe, keys, pos_bq, pos_bk):
    """query = R1[pos_i], key = R2[pos_j] (rank k)."""
    del x_bqe, keys
    dt = self.cfg.dtype
    return DotForm(_rows(self.r1.astype(dt), pos_bq), _rows(self.r2.astype(dt), pos_bk))


def _rows(table_hlx: jax.Array, pos: Positions) -> jax.Array:
  """table[h, pos[b, q], :] as [b or 1, q, h, x] (a query or key of a positional table)."""
  return jnp.transpose(pos.rows(table_hlx), (0, 2, 1, 3))
