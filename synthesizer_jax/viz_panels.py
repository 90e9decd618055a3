"""Labelled attention panels: token pieces on the axes, masked cells hatched, one colour scale.

The building blocks of `viz.plot_attention` and `viz_compare.plot_kinds_side_by_side`:
which cells of a layer's map the model masks (`attention_masks`), the pieces that label its
rows and columns (`token_pieces`), and a grid of panels sharing a colour bar (`panels_figure`).
matplotlib is imported lazily (Agg backend).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from synthesizer_jax import logging_utils, paths

MASKED_NOTE = "hatched: masked (causal / padding)"


def plt_module():
  """matplotlib.pyplot on the Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def token_pieces(vocab, ids) -> list[str]:
  """The piece of each token id in `ids`: `vocab.pieces` (SentencePiece's "▁the"), else each
  id decoded alone ("<7>" for an id that decodes to nothing, such as padding)."""
  ids = [int(i) for i in np.asarray(ids).reshape(-1)]
  if hasattr(vocab, "pieces"):
    return list(vocab.pieces(ids))
  return [vocab.decode([i]) or f"<{i}>" for i in ids]


def is_causal(name: str) -> bool:
  """Whether the layer `name` (an `attention_maps` key) is a decoder's self-attention."""
  return name.startswith("decoder/") and "self_attention" in name.split("/")


def layer_tokens(name: str, tokens) -> tuple[np.ndarray, np.ndarray]:
  """(query ids, key ids), each [batch, len], of layer `name`.

  `tokens` is the model's input, [batch, len] or [len] (a decoder-only LM or an encoder),
  or a tuple (encoder tokens, decoder tokens) of an encoder-decoder: its decoder layers'
  queries are decoder tokens, and cross-attention's keys are encoder tokens.
  """
  if isinstance(tokens, tuple) and len(tokens) == 2 and all(np.ndim(t) >= 1 for t in tokens):
    enc, dec = (np.atleast_2d(np.asarray(t)) for t in tokens)
    in_decoder = name.startswith("decoder/")
    return (dec if in_decoder else enc), (dec if in_decoder and "cross" not in name else enc)
  ids = np.atleast_2d(np.asarray(tokens))
  return ids, ids


def attention_masks(maps: Mapping[str, np.ndarray], tokens=None,
                    pad_id: int = 0) -> dict[str, np.ndarray]:
  """Which cells of each map the model masks: {layer: bool [batch or 1, q, k]}, True = masked.

  A decoder's self-attention is causal (query i sees keys j <= i; the queries of a shorter
  map are the last ones). With `tokens` (see `layer_tokens`), padding (`pad_id`) is masked
  too: padded keys, and the rows of padded queries, which attend to nothing meaningful.
  """
  out = {}
  for name, w in maps.items():
    q_len, k_len = np.shape(w)[-2:]
    masked = np.zeros((1, q_len, k_len), bool)
    if is_causal(name):
      masked |= np.triu(np.ones((q_len, k_len), bool), k=1 + k_len - q_len)[None]
    if tokens is not None:
      q_ids, k_ids = layer_tokens(name, tokens)
      if q_ids.shape[-1] != q_len or k_ids.shape[-1] != k_len:
        raise ValueError(f"tokens do not fit maps[{name!r}] ([..., {q_len}, {k_len}]): its "
                         f"queries have {q_ids.shape[-1]} tokens and its keys {k_ids.shape[-1]}; "
                         "pass the tokens the maps were computed from ((encoder, decoder) for "
                         "an encoder-decoder)")
      masked = masked | (q_ids == pad_id)[:, :, None] | (k_ids == pad_id)[:, None, :]
    out[name] = masked
  return out


class Panel(NamedTuple):
  """One [q, k] map to draw, with its masked cells and the labels of its rows and columns."""

  title: str
  w_qk: np.ndarray
  masked_qk: np.ndarray | None = None
  queries: Sequence[str] | None = None
  keys: Sequence[str] | None = None


def _ticks(ax, labels: Sequence[str] | None, axis: str, max_labels: int, fontsize: float):
  """At most `max_labels` tick labels, evenly spaced, so long sequences stay legible."""
  if labels is None:
    return
  step = max(1, math.ceil(len(labels) / max_labels))
  idx = list(range(0, len(labels), step))
  shown = [labels[i] for i in idx]
  if axis == "x":
    ax.set_xticks(idx, shown, rotation=90, fontsize=fontsize)
  else:
    ax.set_yticks(idx, shown, fontsize=fontsize)


def panels_figure(rows: Sequence[tuple[str, Sequence[Panel]]], *, title: str | None = None,
                  max_labels: int = 40, figsize: tuple[float, float] | None = None):
  """A figure with one row of panels per (row label, panels) and one colour bar for all.

  Every panel shares the colour scale [0, largest unmasked weight], so panels compare;
  masked cells are left out of the image (a NumPy masked array) and show hatched grey.
  Returns the matplotlib Figure (`save_figure` writes it).
  """
  plt = plt_module()
  n_cols = max(len(panels) for _, panels in rows)
  longest = max(max(p.w_qk.shape) for _, panels in rows for p in panels)
  side = min(8.0, max(2.4, 0.14 * min(longest, max_labels) + 1.4))
  fontsize = 7 if min(longest, max_labels) <= 24 else 5.5
  fig, axes = plt.subplots(len(rows), n_cols, squeeze=False, layout="constrained",
                           figsize=figsize or (n_cols * side + 1.2, len(rows) * side + 0.4))
  shown = [np.ma.masked_array(np.asarray(p.w_qk, np.float32),
                              np.zeros(p.w_qk.shape, bool) if p.masked_qk is None
                              else np.broadcast_to(p.masked_qk, p.w_qk.shape))
           for _, panels in rows for p in panels]
  vmax = max([float(m.max()) for m in shown if m.count()] + [1e-6])
  # Masked cells transparent: the hatched background shows through.
  cmap = plt.get_cmap("viridis").with_extremes(bad=(0, 0, 0, 0))
  images, it, any_masked = [], iter(shown), False
  for r, (row_label, panels) in enumerate(rows):
    for c in range(n_cols):
      ax = axes[r, c]
      if c >= len(panels):
        ax.axis("off")
        continue
      panel, data = panels[c], next(it)
      any_masked |= bool(np.ma.count_masked(data))
      ax.set_facecolor("0.88")
      ax.patch.set_hatch("////")
      ax.patch.set_edgecolor("0.65")
      images.append(ax.imshow(data, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto",
                              interpolation="nearest"))
      ax.set_title(panel.title, fontsize=8)
      _ticks(ax, panel.keys, "x", max_labels, fontsize)
      _ticks(ax, panel.queries, "y", max_labels, fontsize)
      ax.set_xlabel("key", fontsize=7)
      ax.set_ylabel(f"{row_label}\nquery" if c == 0 and row_label else "query", fontsize=7)
  fig.colorbar(images[-1], ax=axes, shrink=0.8, label="attention weight")
  if title or any_masked:
    fig.suptitle("\n".join(t for t in (title, MASKED_NOTE if any_masked else "") if t),
                 fontsize=9)
  return fig


def save_figure(fig, path: paths.PathLike) -> str:
  """Writes the figure as a PNG at `path` (local or gs://), creating its folder; closes it."""
  paths.as_path(path).parent.mkdir(parents=True, exist_ok=True)
  if fig.get_layout_engine() is None:
    fig.tight_layout()
  return logging_utils.save_png(fig, path)
