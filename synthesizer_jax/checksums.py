"""Per-array checksums of a train state that do not depend on how the arrays are sharded.

A checkpoint can decode cleanly and still hold a flipped bit (a disk or a copy went wrong).
`tree_checksums` sums each array's bits, each element weighted by an odd number drawn from
its flat index, in uint32 arithmetic (wrapping). Integer addition is associative, so the
result is the same on any mesh and any number of processes, and is computed on device,
where the arrays are (one reduction per array, no host copy). Any single flipped bit
changes the sum: the element's bits change by +-2^k, k < 32, and an odd weight times 2^k
is never 0 modulo 2^32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_GOLDEN = np.uint32(2654435761)  # Knuth's multiplicative hash constant


def _bits_u32(x: jax.Array) -> jax.Array:
  """The element bits of `x` as uint32 (8-, 16- and 32-bit types; 64-bit split in halves)."""
  x = jnp.asarray(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  size = x.dtype.itemsize
  if size == 8:
    halves = jax.lax.bitcast_convert_type(x, jnp.uint32)  # [..., 2]
    return halves[..., 0] ^ (halves[..., 1] * _GOLDEN)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _array_checksum(x: jax.Array) -> jax.Array:
  bits = _bits_u32(x).reshape(-1)
  index = jnp.arange(bits.shape[0], dtype=jnp.uint32)
  weights = (index * _GOLDEN) | jnp.uint32(1)  # odd
  return jnp.sum(bits * weights, dtype=jnp.uint32)


_checksums = jax.jit(lambda tree: jax.tree.map(_array_checksum, tree))


def _path(key_path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                  for k in key_path)


def tree_checksums(tree: Any) -> dict[str, int]:
  """{"params/decoder/.../kernel": uint32 checksum} for every array leaf of `tree`."""
  sums = jax.device_get(_checksums(tree))
  return {_path(p): int(v) for p, v in jax.tree_util.tree_leaves_with_path(sums)}


def mismatches(tree: Any, expected: dict[str, int]) -> list[str]:
  """Paths whose checksum differs from `expected` (paths absent from `expected` are skipped)."""
  got = tree_checksums(tree)
  return [f"{path} (saved {expected[path]:#010x}, read {value:#010x})"
          for path, value in got.items() if path in expected and expected[path] != value]
