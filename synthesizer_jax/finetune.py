"""Fine-tune loading: parameters of another run's checkpoint merged into a fresh model.

`TrainConfig.init_from` names the source checkpoint and `init_params` the path prefixes
to take from it ("encoder", or "encoder=decoder" to rename). `checkpointing.py` reads
the source; this module decides which arrays go where.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from synthesizer_jax.checkpointing import flat_paths


def _under(path: str, prefix: str) -> bool:
  prefix = prefix.rstrip("/")
  return path == prefix or path.startswith(prefix + "/")


def _prefix_pairs(prefixes: Sequence[str]) -> list[tuple[str, str, str]]:
  """(entry, target prefix, source prefix) per entry; "encoder=decoder" renames."""
  pairs = []
  for entry in prefixes:
    target, sep, source = entry.partition("=")
    target, source = target.strip().rstrip("/"), (source if sep else target).strip().rstrip("/")
    if not target or not source:
      raise ValueError(f"init_params entry {entry!r}: write a path prefix (\"encoder\") or "
                       "target=source (\"encoder=decoder\" takes a language model's decoder "
                       "layers into this model's encoder)")
    pairs.append((entry, target, source))
  return pairs


def merge_params(target_params, source_params, prefixes: Sequence[str] = (),
                 source_name: str = "checkpoint"):
  """`target_params` with leaves replaced by the matching leaves of `source_params`.

  Args:
    target_params: the fresh model's parameters (any arrays; shardings are kept).
    source_params: parameters of another run (nested dicts of arrays).
    prefixes: take only paths starting with one of these ("encoder", "embed"); an entry
      "target=source" takes the source's paths under `source` into the target's under
      `target` ("encoder=decoder": a DecoderLM's layers into an encoder). () takes every
      path both trees share.
    source_name: for error messages.

  Returns:
    (params, loaded_paths). Raises ValueError on a shape mismatch, when a requested
    prefix matches nothing, or when nothing at all is shared.
  """
  src = flat_paths(source_params)
  tgt = flat_paths(target_params)
  pairs = _prefix_pairs(prefixes)

  def source_path(path):
    """The source path that fills target `path`, or None when no entry asks for it."""
    if not pairs:
      return path
    for _, target, source in pairs:
      if _under(path, target):
        return source + path[len(target):]
    return None

  for entry, target, _ in pairs:
    if not any(_under(p, target) and source_path(p) in src for p in tgt):
      raise ValueError(f"init_params entry {entry!r} matches no parameter shared by the model "
                       f"and {source_name}; shared top-level names: "
                       f"{sorted({p.split('/')[0] for p in tgt if p in src})}; "
                       f"{source_name} has {sorted({p.split('/')[0] for p in src})}")
  taken = {}
  for path, leaf in tgt.items():
    origin = source_path(path)
    if origin in src:
      if tuple(src[origin].shape) != tuple(leaf.shape):
        raise ValueError(f"parameter {path}: shape {tuple(src[origin].shape)} in {source_name}"
                         f"{'' if origin == path else f' (as {origin})'} but "
                         f"{tuple(leaf.shape)} in this model; make the model config match "
                         "(d_model, heads, max_len, vocab) or leave it out with init_params")
      taken[path] = origin
  if not taken:
    raise ValueError(f"no parameter of this model is found in {source_name}")

  def pick(path, leaf):
    key = "/".join(str(k.key) for k in path)
    if key in taken:
      value = np.asarray(src[taken[key]]).astype(leaf.dtype)
      sharding = getattr(leaf, "sharding", None)
      return jax.device_put(value, sharding) if sharding is not None else value
    return leaf

  return jax.tree_util.tree_map_with_path(pick, target_params), list(taken)
