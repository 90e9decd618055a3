"""Analytic parameter and FLOP counts of one attention layer, per kind.

Each kind declares its own counts (`LogitSource.param_counts`, `forward_flops`); the
formulas are the ones tabulated in docs/synthesizers.md (symbols: n
length, d d_model, h heads, d_h head_dim, f dense hidden width, l max_len,
k rank, (a, b) factor sizes) and are checked against real parameter trees and
XLA's cost analysis by tests/test_costs.py. FLOPs count a multiply-add as 2
and include only the matrix products (softmax and other elementwise work are
O(h n^2) and left out).
"""

from __future__ import annotations

from synthesizer_jax.attention import registry
from synthesizer_jax.attention.core import AttentionConfig


def param_count(c: AttentionConfig, d_model: int) -> dict[str, int]:
  """{"trained": ..., "constant": ...} element counts of one attention layer of kind `c.kind`."""
  sources = registry.sources(c.kind)
  trained = 2 * d_model * c.num_heads * c.head_dim  # value and output projections
  constant = 0
  for source in sources:
    counts = source.param_counts(c, d_model)
    trained += counts.get("trained", 0)
    constant += counts.get("constant", 0)
  if len(sources) > 1:
    trained += c.num_heads * len(sources)  # mixture gate logits
  return {"trained": trained, "constant": constant}


def forward_flops(c: AttentionConfig, d_model: int, n: int) -> int:
  """Matrix-product FLOPs of one self-attention layer on one sequence of n tokens."""
  h, dh = c.num_heads, c.head_dim
  shared = 2 * n * d_model * h * dh * 2 + 2 * h * n * n * dh  # V and output projections; A V
  return shared + sum(s.forward_flops(c, d_model, n) for s in registry.sources(c.kind))
