"""Plots: attention maps per layer and head, learned random matrices, kinds side by side, curves.

matplotlib is imported lazily (Agg backend), so the library imports without it.
Every plot function writes a PNG and returns its path; `attention_figure` returns the
Figure itself. Labelled panels and masks live in `viz_panels`, runs compared in `viz_compare`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np

from synthesizer_jax import checks, paths, viz_panels
from synthesizer_jax.viz_panels import Panel, plt_module, save_figure


def path_name(path) -> str:
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
  return {path_name(p): np.asarray(w) for p, w in leaves}


def random_matrices(variables, softmax: bool = True) -> dict[str, np.ndarray]:
  """Learned (or fixed) random attention matrices [heads, max_len, max_len] of every layer.

  Covers `random` and `fixed_random` (R) and `factorized_random` (R1 R2^T), also inside
  mixtures. With `softmax`, rows are turned into attention distributions (no mask).
  """
  out = {}
  for collection in ("params", "constants"):
    tree = nn.meta.unbox(variables.get(collection, {}))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      name = path_name(path)
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


def checked_maps(maps, name: str, ndims: tuple[int, ...], shape: str) -> dict[str, np.ndarray]:
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


def check_path(path) -> None:
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path={path!r:.60} must be a file name (str), such as 'maps.png'")


def select_layers(maps: Mapping[str, np.ndarray], layers) -> list[str]:
  """Names of the chosen layers of `maps`: None (all), or names and / or indices into `maps`."""
  names = list(maps)
  if layers is None:
    return names
  if isinstance(layers, (str, int)):
    layers = [layers]
  chosen = []
  for layer in layers:
    index = isinstance(layer, (int, np.integer)) and not isinstance(layer, bool)
    if isinstance(layer, str) and layer in maps:
      chosen.append(layer)
    elif index and -len(names) <= layer < len(names):
      chosen.append(names[int(layer)])
    else:
      raise ValueError(f"layers: {layer!r} is not a layer of the maps; choose names or indices "
                       f"of {names}")
  if not chosen:
    raise ValueError("layers is empty: choose at least one layer (None: all)")
  return chosen


def _labels(name: str, tokens, vocab, example: int) -> tuple[list | None, list | None]:
  """Tick labels (query pieces, key pieces) of layer `name`'s map of batch row `example`."""
  if tokens is None:
    return None, None
  out = []
  for ids in viz_panels.layer_tokens(name, tokens):
    row = ids[min(example, ids.shape[0] - 1)]
    pieces = viz_panels.token_pieces(vocab, row) if vocab is not None else None
    out.append(pieces or [str(int(i)) for i in row])
  return out[0], out[1]


def layer_panels(name: str, w, masked, heads, example: int = 0, tokens=None, vocab=None,
                 max_heads: int = 8) -> list[Panel]:
  """One `Panel` per head of layer `name`'s map `w` ([batch, heads, q, k] or [heads, q, k]).

  `masked` is bool [batch or 1, q, k] (True: masked), `heads` a list of head indices
  (None: the first `max_heads`).
  """
  w = w[example] if w.ndim == 4 else w
  if heads is None:
    heads = range(min(max_heads, w.shape[0]))
  elif isinstance(heads, int):
    heads = [heads]
  for h in heads:
    checks.integer(h, "heads", 0, w.shape[0] - 1, f" (a head of {name}: it has {w.shape[0]})")
  masked_qk = None if masked is None else masked[min(example, masked.shape[0] - 1)]
  queries, keys = _labels(name, tokens, vocab, example)
  return [Panel(f"head {h}", w[h], masked_qk, queries, keys) for h in heads]


def _masks(maps, tokens, pad_id: int, masks) -> dict[str, np.ndarray]:
  """The model's masks of `maps` (`attention_masks`), overridden by the given `masks`."""
  out = viz_panels.attention_masks(maps, tokens, pad_id)
  if masks is not None and not isinstance(masks, Mapping):
    raise TypeError(f"masks must be a dict {{layer: bool [q, k] or [batch, q, k]}}, got "
                    f"{type(masks).__name__}")
  for name, m in (masks or {}).items():
    m = np.asarray(m, bool)
    if name not in maps or m.ndim not in (2, 3) or m.shape[-2:] != maps[name].shape[-2:]:
      raise ValueError(f"masks[{name!r}] has shape {m.shape}: expected a layer of the maps, "
                       "bool [q, k] or [batch, q, k] like its map")
    out[name] = m.reshape((-1,) + m.shape[-2:])
  return out


def attention_figure(maps: Mapping[str, np.ndarray], example: int = 0, max_heads: int = 8,
                     title: str | None = None, *, layers=None, heads=None, tokens=None,
                     vocab=None, masks=None, pad_id: int = 0, max_labels: int = 40,
                     figsize: tuple[float, float] | None = None):
  """The matplotlib Figure that `plot_attention` writes (same arguments, without `path`)."""
  maps = checked_maps(maps, "maps", (3, 4), "[batch, heads, q, k] or [heads, q, k]")
  if not maps:
    raise ValueError("no attention maps to plot: did the model run with mutable=['intermediates']?")
  checks.integer(max_heads, "max_heads", 1)
  checks.integer(max_labels, "max_labels", 1)
  batch = min((m.shape[0] for m in maps.values() if m.ndim == 4), default=None)
  if batch is not None:
    checks.integer(example, "example", 0, batch - 1, f" (a batch row of the maps: batch={batch})")
  names = select_layers(maps, layers)
  masks = _masks(maps, tokens, pad_id, masks)
  rows = [(name, layer_panels(name, maps[name], masks[name], heads, example, tokens, vocab,
                              max_heads)) for name in names]
  return viz_panels.panels_figure(rows, title=title, max_labels=max_labels, figsize=figsize)


def plot_attention(maps: Mapping[str, np.ndarray], path: str, example: int = 0,
                   max_heads: int = 8, title: str | None = None, **kwargs) -> str:
  """One row per layer, one column per head: weights of batch row `example` (query x key).

  Rows are labelled with the query pieces and columns with the key pieces (given `tokens`
  and `vocab`); one colour bar is shared by all panels; cells the model masks (a decoder's
  causal mask, padding) are hatched, not drawn as zero weight.

  Args:
    maps: {layer name: [batch, heads, q, k] or [heads, q, k] weights}, as `attention_maps`
      returns.
    path: the PNG to write (local or gs://).
    example: the batch row shown (of 4-D maps), 0 <= example < batch.
    max_heads: at most this many heads (columns), >= 1, when `heads` is not given.
    title: the figure's title.
    **kwargs: keyword-only options of `attention_figure`:
      layers: the layers shown (names or indices into `maps`; default all);
      heads: the heads shown (indices; default the first `max_heads`);
      tokens: the model's input tokens, [batch, len] (a tuple (encoder, decoder) for an
        encoder-decoder): they label the axes and mark padding as masked;
      vocab: decodes `tokens` into pieces for the labels (default: the ids);
      masks: {layer: bool [q, k] or [batch, q, k]}, True = masked, overriding the model's
        masks (`viz_panels.attention_masks`); pad_id: the padding id (0);
      max_labels: at most this many tick labels per axis (long sequences stay legible);
      figsize: (width, height) in inches (default: from the panels and sequence length).
  """
  check_path(path)
  return save_figure(attention_figure(maps, example, max_heads, title, **kwargs), path)


def plot_kinds(maps_by_kind: Mapping[str, np.ndarray], path: str, head: int = 0) -> str:
  """Side by side: one panel per kind, each a [q, k] (or [heads, q, k]: `head` is shown) map.

  Maps of shape [batch, heads, q, k] show batch row 0. `head` must be a head of every map
  with a heads axis (0 <= head < heads).
  """
  check_path(path)
  maps_by_kind = checked_maps(maps_by_kind, "maps_by_kind", (2, 3, 4),
                       "[q, k], [heads, q, k] or [batch, heads, q, k]")
  if not maps_by_kind:
    raise ValueError("maps_by_kind is empty: nothing to plot")
  heads = min((w.shape[-3] for w in maps_by_kind.values() if w.ndim > 2), default=None)
  if heads is not None:
    checks.integer(head, "head", 0, heads - 1, f" (a head of every map: the fewest is {heads})")
  plt = plt_module()
  fig, axes = _grid(plt, 1, len(maps_by_kind), size=2.8)
  for ax, (kind, w) in zip(axes[0], maps_by_kind.items()):
    while w.ndim > 2:
      w = w[0] if w.ndim == 4 else w[head]
    ax.imshow(w, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_title(kind, fontsize=8)
  return save_figure(fig, path)


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
  check_path(path)
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
  plt = plt_module()
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
  return save_figure(fig, path)

