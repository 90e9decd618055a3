"""Plots: attention maps per layer and head, learned random matrices, kinds side by side, curves.

matplotlib is imported lazily (Agg backend), so the library imports without it.
Every plot function writes a PNG and returns its path.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np


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


def plot_attention(maps: Mapping[str, np.ndarray], path: str, example: int = 0,
                   max_heads: int = 8, title: str | None = None) -> str:
  """One row per layer, one column per head: weights of batch row `example` (query x key)."""
  if not maps:
    raise ValueError("no attention maps to plot: did the model run with mutable=['intermediates']?")
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
  """Side by side: one panel per kind, each a [q, k] (or [heads, q, k]: `head` is shown) map."""
  plt = _plt()
  fig, axes = _grid(plt, 1, len(maps_by_kind), size=2.8)
  for ax, (kind, w) in zip(axes[0], maps_by_kind.items()):
    w = np.asarray(w)
    while w.ndim > 2:
      w = w[0] if w.ndim == 4 else w[head]
    ax.imshow(w, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_title(kind, fontsize=8)
  return _save(fig, plt, path)


def read_jsonl(path: str) -> list:
  """Records of a JSONL metrics log (one JSON object per line; blank lines skipped)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"no metrics log at {path}: train with a workdir first")
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_curves(records: Iterable[Mapping], path: str, keys: Sequence[str] | None = None,
                step_key: str = "step") -> str:
  """Training curves: one panel per metric key (default: every numeric key but the step)."""
  records = list(records)
  if keys is None:
    keys = sorted({k for r in records for k, v in r.items()
                   if k != step_key and isinstance(v, (int, float)) and not isinstance(v, bool)})
  if not keys:
    raise ValueError("no numeric metrics to plot")
  plt = _plt()
  cols = min(3, len(keys))
  rows = math.ceil(len(keys) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
  for ax, key in zip(axes.flat, keys):
    pts = [(r[step_key], r[key]) for r in records if key in r and step_key in r]
    if pts:
      xs, ys = zip(*pts)
      ax.plot(xs, ys, marker="." if len(pts) < 30 else None)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel(step_key)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  return _save(fig, plt, path)


def _save(fig, plt, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
