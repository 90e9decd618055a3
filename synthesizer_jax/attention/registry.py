"""Attention kinds by name: the one place a kind is registered.

`SOURCES` maps each single kind to its `LogitSource` class; a mixture is written "a+b[+c]".
Everything else asks these functions, so a new kind is one class and one line here (or one
`register` call). A leaf module: it imports the kinds, nothing imports it back.
"""

from __future__ import annotations

from synthesizer_jax.attention.core import AttentionConfig, LogitSource
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
#: The paper's single kinds (a kind registered later is in SOURCES, not here).
KINDS: tuple[str, ...] = tuple(SOURCES)


def register(name: str, source: type[LogitSource]) -> None:
  """Adds a kind (a LogitSource subclass declaring its costs) under `name`."""
  if not name or "+" in name or name in SOURCES:
    raise ValueError(f"cannot register attention kind {name!r}: the name must be new and "
                     "contain no '+'")
  SOURCES[name] = source


def parse_kind(kind: str) -> tuple[str, ...]:
  """Splits "a+b" into its components, raising ValueError on an unknown or repeated one."""
  if not isinstance(kind, str) or not kind:
    raise ValueError(f"attention kind must be a non-empty string, got {kind!r}; "
                     f"choose from {KINDS} or a mixture like 'random+dot'")
  parts = tuple(kind.split("+"))
  for part in parts:
    if part not in SOURCES:
      raise ValueError(f"unknown attention kind {part!r} in {kind!r}; choose from "
                       f"{tuple(SOURCES)}, or join several with '+' for a mixture (e.g. "
                       "'dense+dot')")
  if len(set(parts)) != len(parts):
    raise ValueError(f"attention mixture {kind!r} repeats a component; list each kind once")
  return parts


def sources(kind: str) -> tuple[type[LogitSource], ...]:
  """The LogitSource classes of `kind`'s components."""
  return tuple(SOURCES[part] for part in parse_kind(kind))


def needs_keys(kind: str) -> bool:
  """Whether `kind` reads key content (its decode cache must hold keys)."""
  return any(s.needs_keys for s in sources(kind))


def uses_positions(kind: str) -> bool:
  """Whether `kind` indexes position tables of size max_len."""
  return any(s.uses_positions for s in sources(kind))


def has_dot_form(kind: str) -> bool:
  """Whether every component of `kind` has a dot-product form (the fused kernels can run it)."""
  return all(s.has_dot_form for s in sources(kind))


def has_bias(kind: str) -> bool:
  """Whether the dot-product form of `kind` has a positional bias table (the random family)."""
  return any(s.has_bias for s in sources(kind))


def make_source(cfg: AttentionConfig, name: str | None = None) -> LogitSource:
  """The LogitSource for `cfg.kind`: a single kind or a Mixture of its components."""
  parts = parse_kind(cfg.kind)
  if len(parts) == 1:
    return SOURCES[parts[0]](cfg, name=name or parts[0])
  return Mixture(cfg, components=parts, source_types=sources(cfg.kind), name=name or "mixture")
