"""Fine-tune loading: arrays of another run's checkpoint merged into a fresh model's state.

`TrainConfig.init_from` names the source checkpoint and `init_params` the path prefixes
to take from it ("encoder", or "encoder=decoder" to rename); without init_params, every
top-level name both models have ("embed", "encoder", ...). The rules:

- Every collection of the fresh state is filled from the source's, with the same paths:
  the parameters, and the `constants` (fixed_random's R, the table its layers were trained
  with, which a fresh seed would replace).
- Each entry is loaded whole. A target array under it with no counterpart in the source (a
  deeper target, another attention kind) is an error that lists them, unless
  `TrainConfig.init_partial` leaves them at init; the log names what stayed at init.
- Two entries may not claim the same paths.
- The embedding (and an untied output layer) is refused from a source trained with another
  vocabulary: its rows would be other pieces here.

`checkpointing.py` reads the source; this module decides which arrays go where.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from synthesizer_jax.checkpointing import restore_source

#: Top-level parameters indexed by token id: they mean something only with their vocabulary.
VOCAB_PARAMS = ("embed", "logits_dense")


def flat_paths(tree) -> dict[str, Any]:
  """{"a/b/c": leaf} of a nested dict of arrays."""
  return {"/".join(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


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
    pairs.append((repr(entry), target, source))
  for i, (first, a, _) in enumerate(pairs):
    for later, b, _ in pairs[i + 1:]:
      if _under(a, b) or _under(b, a):
        raise ValueError(f"init_params entries {first} and {later} overlap: {first} already "
                         f"claims the paths under {max(a, b, key=len)!r} that {later} asks "
                         "for, and an array is loaded from one place; keep one of them")
  return pairs


def _path(key: str) -> str:
  """"params/encoder/..." -> "encoder/..." (keys are collection/path)."""
  return key.partition("/")[2]


def _show(key: str) -> str:
  return _path(key) if key.startswith("params/") else key


def compact(keys: Sequence[str], universe: Sequence[str]) -> str:
  """`keys` as the shortest prefixes that cover them and nothing else of `universe`:
  "decoder/layers_1/* (13 arrays), constants/decoder/layers_1/* (1 array)"."""
  keys, out = set(keys), {}
  for key in sorted(keys):
    parts = key.split("/")
    for i in range(2, len(parts)):
      below = [u for u in universe if _under(u, "/".join(parts[:i]))]
      if all(u in keys for u in below):
        n = len(below)
        out[f"{_show('/'.join(parts[:i]))}/* ({n} array{'s' * (n != 1)})"] = None
        break
    else:
      out[_show(key)] = None
  return ", ".join(out)


def _tops(flat: Mapping[str, Any]) -> list[str]:
  return sorted({_path(k).split("/")[0] for k in flat})


def plan(target: Mapping[str, Any], source: Mapping[str, Any], prefixes: Sequence[str] = (), *,
         partial: bool = False, source_name: str = "checkpoint"):
  """Which source array fills which target array.

  Args:
    target, source: {collection: nested dicts of arrays} ({"params": ..., "constants": ...}).
    prefixes: TrainConfig.init_params (see the module docstring); () = every top-level
      name both have, each loaded whole.
    partial: leave target arrays without a source at init instead of refusing.
    source_name: for messages.

  Returns:
    ({target key: source key}, [requested target keys without a source]), keys being
    "collection/path". Raises ValueError on a shape mismatch, an entry that matches
    nothing, overlapping entries, and (unless `partial`) an entry loaded in part.
  """
  tgt, src = flat_paths(target), flat_paths(source)
  pairs = _prefix_pairs(prefixes)
  if not pairs:
    pairs = [(f"{t!r} (a top-level name of both models; init_params is empty)", t, t)
             for t in _tops(tgt) if t in _tops(src)]
    if not pairs:
      raise ValueError(f"no parameter of this model is found in {source_name}")
  taken, missing, errors = {}, [], []
  for label, t, s in pairs:
    claimed = {k: f"{k.partition('/')[0]}/{s}{_path(k)[len(t):]}" for k in tgt
               if _under(_path(k), t)}
    found = {k: v for k, v in claimed.items() if v in src}
    if not found:
      raise ValueError(f"init_params entry {label} matches no parameter shared by the model "
                       f"and {source_name}; shared top-level names: "
                       f"{[n for n in _tops(tgt) if n in _tops(src)]}; {source_name} has "
                       f"{_tops(src)}")
    lost = sorted(set(claimed) - set(found))
    if lost:
      missing += lost
      errors.append(f"entry {label} loads {len(found)} of the {len(claimed)} arrays of this "
                    f"model under {t!r}; no source for {compact(lost, list(tgt))}")
    taken.update(found)
  for key, origin in taken.items():
    if tuple(np.shape(src[origin])) != tuple(np.shape(tgt[key])):
      raise ValueError(f"parameter {_show(key)}: shape {tuple(np.shape(src[origin]))} in "
                       f"{source_name}{'' if origin == key else f' (as {_show(origin)})'} but "
                       f"{tuple(np.shape(tgt[key]))} in this model; make the model config match "
                       "(d_model, heads, max_len, vocab) or leave it out with init_params")
  if errors and not partial:
    raise ValueError(f"init_params would load the model only in part from {source_name}: "
                     + "; ".join(errors) + ". Make the model config match the source's (depth, "
                     "attention kind), narrow the entry to what the source has, or set "
                     "init_partial=True to load the rest and leave these at init.")
  return taken, missing


def apply(target: Mapping[str, Any], source: Mapping[str, Any], taken: Mapping[str, str]):
  """`target` with the planned leaves replaced by the source's (target shardings kept)."""
  src = flat_paths(source)

  def pick(path, leaf):
    key = "/".join(str(k.key) for k in path)
    if key not in taken:
      return leaf
    value = np.asarray(src[taken[key]]).astype(leaf.dtype)
    sharding = getattr(leaf, "sharding", None)
    return jax.device_put(value, sharding) if sharding is not None else value

  return jax.tree_util.tree_map_with_path(pick, dict(target))


def merge_params(target_params, source_params, prefixes: Sequence[str] = (),
                 source_name: str = "checkpoint", partial: bool = False):
  """(params, loaded paths): `plan` and `apply` for one parameter tree."""
  taken, _ = plan({"params": target_params}, {"params": source_params}, prefixes,
                  partial=partial, source_name=source_name)
  merged = apply({"params": target_params}, {"params": source_params}, taken)
  return merged["params"], [_path(k) for k in taken]


def _vocabulary(cfg: Mapping[str, Any]) -> str:
  """"the offline_t5 vocabulary data/vocab/offline_t5.model" (the family where recorded)."""
  family = cfg.get("vocab_family")
  return (f"the {family} vocabulary " if family else "") + str(cfg.get("vocab_path"))


def vocabulary_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
  """How two run configs' vocabularies differ (by content hash when both have one, else by
  path; and by their extra ids, span corruption's sentinels, where both record them), or
  None. The message names both vocabularies."""
  old, new = saved.get("vocab_sha256"), current.get("vocab_sha256")
  if old and new:
    if old != new:
      return (f"{_vocabulary(saved)} had sha256 {old[:12]}... when saved, "
              f"{_vocabulary(current)} has {new[:12]}... now")
  elif saved.get("vocab_path") != current.get("vocab_path"):
    return (f"vocab_path {saved.get('vocab_path')!r} when saved, {current.get('vocab_path')!r} "
            "now")
  extra = (saved.get("vocab_extra_ids"), current.get("vocab_extra_ids"))
  if None not in extra and extra[0] != extra[1]:
    return (f"{_vocabulary(saved)} had {extra[0]} extra ids (sentinels) when saved, "
            f"{_vocabulary(current)} has {extra[1]} now")
  return None


def _vocab_arrays(target, source, prefixes: Sequence[str]) -> list[str]:
  """The target's token-indexed arrays (embedding, untied output layer) that `prefixes`
  would load (every top-level name both have, when empty)."""
  tgt = flat_paths(target)
  wanted = ([t for _, t, _ in _prefix_pairs(prefixes)] if prefixes
            else [t for t in _tops(tgt) if t in _tops(flat_paths(source))])
  return sorted(_show(k) for k in tgt if _path(k).split("/")[0] in VOCAB_PARAMS
                and any(_under(_path(k), t) for t in wanted))


def load_source(state, cfg, run_config: Mapping[str, Any], log=print):
  """(params, constants) of `state` filled from `cfg.init_from` by `cfg.init_params`."""
  source, source_cfg, step = restore_source(cfg.init_from)
  name = f"{cfg.init_from} (step {step})"
  target = {"params": state.params, **state.constants}
  variables = {"params": source["params"], **(source.get("constants") or {})}
  vocab = vocabulary_difference(source_cfg, run_config)
  # Before the shapes are compared: another vocabulary usually has another size too.
  embedded = _vocab_arrays(target, variables, cfg.init_params) if vocab else []
  if embedded:
    raise ValueError(
        f"init_from {name} was trained with another vocabulary than this run's: {vocab}. "
        f"Token ids mean other pieces, so its {', '.join(embedded)} would be wrong here. Leave "
        "the embedding out of init_params (e.g. ('encoder',) or ('encoder=decoder',)), or "
        "fine-tune on a task of the source's vocabulary.")
  taken, missing = plan(target, variables, cfg.init_params, partial=cfg.init_partial,
                        source_name=name)
  merged = apply(target, variables, taken)
  params = merged.pop("params")
  counts = [sum(k.startswith(c + "/") for k in taken) for c in ("params", "constants")]
  every = list(flat_paths(target))
  fresh = sorted(set(every) - set(taken))
  log(f"initialised {counts[0]} parameter arrays"
      + (f" and {counts[1]} constant arrays" if counts[1] else "") + f" from {name}"
      + (f"; at init: {compact(fresh, every)}" if fresh else "")
      + (f" (init_partial=True left {len(missing)} requested arrays without a source: "
         f"{compact(missing, every)})" if missing else ""))
  return params, merged
