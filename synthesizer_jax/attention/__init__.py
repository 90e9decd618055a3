"""Attention kinds behind one interface, selected by name.

`KINDS` lists the single kinds (registry.py, the one place a kind is registered); a
mixture is written "a+b[+c]" and learns per-head gates over its components' logits.
`make_source(cfg)` builds the `LogitSource` of `cfg.kind`; `Attention` (layer.py) runs
any of them, materialized or fused (fused.py).
"""

from __future__ import annotations

from synthesizer_jax.attention.core import AttentionConfig, DotForm, LogitSource, Mask
from synthesizer_jax.attention.layer import Attention
from synthesizer_jax.attention.mixture import Mixture
from synthesizer_jax.attention.positions import Positions
from synthesizer_jax.attention.registry import (
  KINDS,
  SOURCES,
  has_bias,
  has_dot_form,
  make_source,
  needs_keys,
  parse_kind,
  register,
  uses_positions,
)

__all__ = ["Attention", "AttentionConfig", "DotForm", "KINDS", "LogitSource", "Mask", "Mixture",
           "Positions", "SOURCES", "has_bias", "has_dot_form", "make_source", "needs_keys",
           "parse_kind", "register", "uses_positions"]
