"""Attention kinds behind one interface, selected by name.

`KINDS` lists the single kinds; a mixture is written "a+b[+c]" and learns
per-head gates over its components' logits. `make_source(cfg)` builds the
`LogitSource` of `cfg.kind`; `Attention` (layer.py) runs any of them.
"""

from __future__ import annotations

from synthesizer_jax.attention.core import DotForm, LogitSource, Mask
from synthesizer_jax.attention.dot_product import DotProduct
from synthesizer_jax.attention.mixture import Mixture
from synthesizer_jax.attention.synthetic import (
  Dense,
  FactorizedDense,
  FactorizedRandom,
  FixedRandom,
  Random,
)

SOURCES: dict[str, type[LogitSource]] = {
    "dot": DotProduct,
    "dense": Dense,
    "random": Random,
    "fixed_random": FixedRandom,
    "factorized_dense": FactorizedDense,
    "factorized_random": FactorizedRandom,
}
KINDS: tuple[str, ...] = tuple(SOURCES)


def parse_kind(kind: str) -> tuple[str, ...]:
  """Splits "a+b" into its components, raising ValueError on an unknown or repeated one."""
  if not isinstance(kind, str) or not kind:
    raise ValueError(f"attention kind must be a non-empty string, got {kind!r}; "
                     f"choose from {KINDS} or a mixture like 'random+dot'")
  parts = tuple(kind.split("+"))
  for part in parts:
    if part not in SOURCES:
      raise ValueError(f"unknown attention kind {part!r} in {kind!r}; choose from {KINDS}, "
                       "or join several with '+' for a mixture (e.g. 'dense+dot')")
  if len(set(parts)) != len(parts):
    raise ValueError(f"attention mixture {kind!r} repeats a component; list each kind once")
  return parts


def needs_keys(kind: str) -> bool:
  """Whether `kind` reads key content (its decode cache must hold keys)."""
  return any(SOURCES[k].needs_keys for k in parse_kind(kind))


def uses_positions(kind: str) -> bool:
  """Whether `kind` indexes position tables of size max_len."""
  return any(SOURCES[k].uses_positions for k in parse_kind(kind))


def has_dot_form(kind: str) -> bool:
  """Whether every component of `kind` has a dot-product form (the fused kernels can run it)."""
  return all(SOURCES[k].has_dot_form for k in parse_kind(kind))


def has_bias(kind: str) -> bool:
  """Whether the dot-product form of `kind` has a positional bias table (the random family)."""
  return any(SOURCES[k].has_bias for k in parse_kind(kind))


def make_source(cfg, name: str | None = None) -> LogitSource:
  """The LogitSource for `cfg.kind` (an AttentionConfig): a single kind or a Mixture."""
  parts = parse_kind(cfg.kind)
  if len(parts) == 1:
    return SOURCES[parts[0]](cfg, name=name or parts[0])
  return Mixture(cfg, components=parts, name=name or "mixture")


from synthesizer_jax.attention.layer import Attention  # noqa: E402  (needs the registry above)

__all__ = ["Attention", "DotForm", "KINDS", "LogitSource", "Mask", "Mixture", "SOURCES",
           "has_bias", "has_dot_form", "make_source", "needs_keys", "parse_kind", "uses_positions"]
