"""Analytic parameter and FLOP counts of one attention layer, per kind.

The formulas are the ones tabulated in docs/synthesizers.md (symbols: n
length, d d_model, h heads, d_h head_dim, f dense hidden width, l max_len,
k rank, (a, b) factor sizes) and are checked against real parameter trees and
XLA's cost analysis by tests/test_costs.py. FLOPs count a multiply-add as 2
and include only the matrix products (softmax and other elementwise work are
O(h n^2) and left out).
"""

from __future__ import annotations

from synthesizer_jax.attention import parse_kind
from synthesizer_jax.config import AttentionConfig


def _source_params(kind: str, c: AttentionConfig, d: int) -> dict[str, int]:
  h, dh, f, ln, k = c.num_heads, c.head_dim, c.dense_hidden_dim, c.max_len, c.random_rank
  a, b = c.factor_sizes
  two_layer = lambda out: h * (d * f + f + f * out + out)  # W1, b1, W2, b2 per head
  return {
      "dot": {"trained": 2 * d * h * dh},
      "dense": {"trained": two_layer(ln)},
      "random": {"trained": h * ln * ln},
      "fixed_random": {"constant": h * ln * ln},
      "factorized_dense": {"trained": two_layer(a) + two_layer(b)},
      "factorized_random": {"trained": 2 * h * ln * k},
  }[kind]


def param_count(c: AttentionConfig, d_model: int) -> dict[str, int]:
  """{"trained": ..., "constant": ...} element counts of one attention layer of kind `c.kind`."""
  parts = parse_kind(c.kind)
  trained = 2 * d_model * c.num_heads * c.head_dim  # value and output projections
  constant = 0
  for part in parts:
    counts = _source_params(part, c, d_model)
    trained += counts.get("trained", 0)
    constant += counts.get("constant", 0)
  if len(parts) > 1:
    trained += c.num_heads * len(parts)  # mixture gate logits
  return {"trained": trained, "constant": constant}


def _source_flops(kind: str, c: AttentionConfig, d: int, n: int) -> int:
  h, dh, f, ln, k = c.num_heads, c.head_dim, c.dense_hidden_dim, c.max_len, c.random_rank
  a, b = c.factor_sizes
  return {
      "dot": 2 * 2 * n * d * h * dh + 2 * h * n * n * dh,  # Q, K projections; Q K^T
      "dense": 2 * n * d * h * f + 2 * n * h * f * ln,
      "random": 0,  # a gather of R
      "fixed_random": 0,
      "factorized_dense": 2 * 2 * n * d * h * f + 2 * n * h * f * (a + b),
      "factorized_random": 2 * h * n * n * k,  # R1[pos_q] R2[pos_k]^T
  }[kind]


def forward_flops(c: AttentionConfig, d_model: int, n: int) -> int:
  """Matrix-product FLOPs of one self-attention layer on one sequence of n tokens."""
  h, dh = c.num_heads, c.head_dim
  shared = 2 * n * d_model * h * dh * 2 + 2 * h * n * n * dh  # V and output projections; A V
  return shared + sum(_source_flops(part, c, d_model, n) for part in parse_kind(c.kind))
