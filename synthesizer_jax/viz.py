"""Plots: attention maps per layer and head, learned random matrices, kinds side by side, curves.

matplotlib is imported lazily (Agg backend), so the library imports without it.
Every plot function writes a PNG and returns its path.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np

from synthesizer_jax import checks, paths


def _plt():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _path_name(path) -> str:
  """"a/b/c" from a pytree key path, without sow's tuple index and leaf name."""
  keys = [str(getattr(k, "key", getattr(k, "name", ""))) for k in path if not hasattr(k, "idx")]
  return "/".join(k for k in keys if k and k != "attention_weights")


def attention_maps(model: nn.Module, variables, *args, **kwargs) -> dict[str, np.ndarray]:
  """Runs `model` and returns every attention layer's softmax weights, [batch, heads, q, k].

  Keys are layer paths such as "decoder/layers_0/self_attention"; extra args go to
  `model.apply` (tokens, positions, ...).
  """
  _, state = model.apply(variables, *args, mutable=["intermediates"], **kwargs)
  leaves = jax.tree_util.tree_leaves_with_path(state["intermediates"])
  return {_path_name(p): np.asarray(w) for p, w in leaves}


def random_matrices(variables, softmax: bool = True) -> dict[str, np.ndarray]:
  """Learned (or fixed) random attention matrices [heads, max_len, max_len] of every layer.

  Covers `random` and `fixed_random` (R) and `factorized_random` (R1 R2^T), also inside
  mixtures. With `softmax`, rows are turned into attention distributions (no mask).
  """
  out = {}
  for collection in ("params", "constants"):
    tree = nn.meta.unbox(variables.get(collection, {}))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      name = _path_name(path)
      if name.endswith("/R"):
        out[name[:-2]] = np.asarray(leaf)
      elif name.endswith("/R1"):
        r2 = _lookup(tree, path[:-1])["R2"]
        out[name[:-3]] = np.einsum("hir,hjr->hij", np.asarray(leaf), np.asarray(r2))
  if softmax:
    out = {k: np.asarray(jax.nn.softmax(v, axis=-1)) for k, v in out.items()}
  return out


def _lookup(tree, path):
  for k in path:
    tree = tree[getattr(k, "key", k)]
  return tree


def _grid(plt, rows, cols, size=2.2):
  fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  return fig, axes


def _maps(maps, name: str, ndims: tuple[int, ...], shape: str) -> dict[str, np.ndarray]:
  """{name: float array} of `maps`, each with one of `ndims` dimensions, else a clear error."""
  if not isinstance(maps, Mapping):
    raise TypeError(f"{name} must be a dict {{name: {shape} array}}, got {type(maps).__name__}; "
                    f"wrap a single map as {{'name': array}}")
  out = {}
  for key, w in maps.items():
    try:
      w = np.asarray(w)
    except (TypeError, ValueError):
      raise ValueError(f"{name}[{key!r}] is not an array (rows of different lengths?): "
                       f"expected a {shape} array") from None
    if w.ndim not in ndims or w.size == 0 or not np.issubdtype(w.dtype, np.number):
      raise ValueError(f"{name}[{key!r}] has shape {w.shape} and dtype {w.dtype}: expected a "
                       f"non-empty numeric {shape} array")
    out[key] = w
  return out


def _check_path(path) -> None:
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path={path!r:.60} must be a file name (str), such as 'maps.png'")


def plot_attention(maps: Mapping[str, np.ndarray], path: str, example: int = 0,
                   max_heads: int = 8, title: str | None = None) -> str:
  """One row per layer, one column per head: weights of batch row `example` (query x key).

  Args:
    maps: {layer name: [batch, heads, q, k] or [heads, q, k] weights}, as `attention_maps`
      returns.
    path: the PNG to write.
    example: the batch row shown (of 4-D maps), 0 <= example < batch.
    max_heads: at most this many heads (columns), >= 1.
    title: the figure's title.
  """
  _check_path(path)
  maps = _maps(maps, "maps", (3, 4), "[batch, heads, q, k] or [heads, q, k]")
  if not maps:
    raise ValueError("no attention maps to plot: did the model run with mutable=['intermediates']?")
  checks.integer(max_heads, "max_heads", 1)
  batch = min((m.shape[0] for m in maps.values() if m.ndim == 4), default=None)
  if batch is not None:
    checks.integer(example, "example", 0, batch - 1, f" (a batch row of the maps: batch={batch})")
  plt = _plt()
  heads = min(max_heads, max(m.shape[-3] for m in maps.values()))
  fig, axes = _grid(plt, len(maps), heads)
  for r, (name, w) in enumerate(maps.items()):
    w = w[example] if w.ndim == 4 else w
    for h in range(min(heads, w.shape[0])):
      axes[r, h].imshow(w[h], cmap="viridis", aspect="auto", interpolation="nearest")
      axes[r, h].set_title(f"head {h}", fontsize=7)
    axes[r, 0].set_ylabel(name.replace("/", "\n"), fontsize=6)
  if title:
    fig.suptitle(title)
  return _save(fig, plt, path)


def plot_kinds(maps_by_kind: Mapping[str, np.ndarray], path: str, head: int = 0) -> str:
  """Side by side: one panel per kind, each a [q, k] (or [heads, q, k]: `head` is shown) map.

  Maps of shape [batch, heads, q, k] show batch row 0. `head` must be a head of every map
  with a heads axis (0 <= head < heads).
  """
  _check_path(path)
  maps_by_kind = _maps(maps_by_kind, "maps_by_kind", (2, 3, 4),
                       "[q, k], [heads, q, k] or [batch, heads, q, k]")
  if not maps_by_kind:
    raise ValueError("maps_by_kind is empty: nothing to plot")
  heads = min((w.shape[-3] for w in maps_by_kind.values() if w.ndim > 2), default=None)
  if heads is not None:
    checks.integer(head, "head", 0, heads - 1, f" (a head of every map: the fewest is {heads})")
  plt = _plt()
  fig, axes = _grid(plt, 1, len(maps_by_kind), size=2.8)
  for ax, (kind, w) in zip(axes[0], maps_by_kind.items()):
    while w.ndim > 2:
      w = w[0] if w.ndim == 4 else w[head]
    ax.imshow(w, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_title(kind, fontsize=8)
  return _save(fig, plt, path)


def read_jsonl(path: paths.PathLike) -> list:
  """Records of a JSONL metrics log (one JSON object per line; blank lines skipped); local
  or in a bucket (gs://)."""
  log = paths.as_path(path)
  if not log.exists():
    raise FileNotFoundError(f"no metrics log at {path}: train with a workdir first")
  return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def plot_curves(records: Iterable[Mapping], path: str, keys: Sequence[str] | None = None,
                step_key: str = "step") -> str:
  """Training curves: one panel per metric key (default: every numeric key but the step).

  Args:
    records: dicts such as `read_jsonl` returns.
    path: the PNG to write.
    keys: the metrics to plot (a single name may be given as a string); each must have a
      numeric value in some record that also has `step_key`.
    step_key: the x axis.
  """
  _check_path(path)
  if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
    raise TypeError(f"records must be a list of dicts (such as read_jsonl(path) returns), got "
                    f"{type(records).__name__}")
  records = list(records)
  bad = [i for i, r in enumerate(records) if not isinstance(r, Mapping)]
  if bad:
    raise TypeError(f"records[{bad[0]}] is a {type(records[bad[0]]).__name__}, not a dict of "
                    "metrics")
  numeric = lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
  found = {k for r in records if step_key in r for k, v in r.items() if numeric(v)} - {step_key}
  if keys is None:
    keys = sorted(found)
  elif isinstance(keys, str):
    keys = [keys]
  missing = [k for k in keys if k not in found]
  if missing:
    raise ValueError(f"keys {missing} have no numeric value in any record with {step_key!r}; "
                     f"plottable keys: {sorted(found)}")
  if not keys:
    raise ValueError("no numeric metrics to plot")
  plt = _plt()
  cols = min(3, len(keys))
  rows = math.ceil(len(keys) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
  for ax, key in zip(axes.flat, keys):
    pts = [(r[step_key], r[key]) for r in records if step_key in r and numeric(r.get(key))]
    if pts:
      xs, ys = zip(*pts)
      ax.plot(xs, ys, marker="." if len(pts) < 30 else None)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel(step_key)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  return _save(fig, plt, path)


def _save(fig, plt, path: paths.PathLike) -> str:
  """Writes the figure as a PNG at `path` (local or gs://), creating its folder."""
  out = paths.as_path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=100)
  plt.close(fig)
  out.write_bytes(png.getvalue())
  return os.fspath(path)
