"""Runs of different attention kinds compared: maps side by side, mixture gates, curves.

`notebooks/compare_kinds.ipynb` is built from these: the same layer and heads of every
run on one sentence (`plot_kinds_side_by_side`), each mixture's learned weights per layer
and head (`mixture_gates`, `plot_gates`), and each run's validation perplexity and curves
(`run_summary`, `plot_run_curves`). Every plot writes a PNG (local or gs://) and returns
its path; the `*_figure` functions return the matplotlib Figure instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np

from synthesizer_jax import logging_utils, paths, viz, viz_panels
from synthesizer_jax.attention import parse_kind

RESULTS_FILE = "eval_results.json"  # written by evaluation.write_results at the end of a run


def kinds_figure(maps_by_run: Mapping[str, Mapping[str, np.ndarray]], layer, heads=(0,), *,
                 example: int = 0, tokens=None, vocab=None, pad_id: int = 0,
                 max_labels: int = 40, figsize=None, title: str | None = None):
  """The Figure `plot_kinds_side_by_side` writes (same arguments, without `path`)."""
  if not isinstance(maps_by_run, Mapping) or not maps_by_run:
    raise ValueError("maps_by_run must be a non-empty dict {run label: attention_maps(...)}")
  rows = []
  for label, maps in maps_by_run.items():
    maps = viz.checked_maps(maps, f"maps_by_run[{label!r}]", (3, 4), "[batch, heads, q, k]")
    (name,) = viz.select_layers(maps, [layer])
    masked = viz_panels.attention_masks({name: maps[name]}, tokens, pad_id)[name]
    panels = viz.layer_panels(name, maps[name], masked, heads, example, tokens, vocab)
    rows.append((f"{label}\n{name}", panels))
  return viz_panels.panels_figure(rows, title=title, max_labels=max_labels, figsize=figsize)


def plot_kinds_side_by_side(maps_by_run: Mapping[str, Mapping[str, np.ndarray]], path: str,
                            layer, heads=(0,), **kwargs) -> str:
  """One row per run (kind), one column per head: the same layer on the same input.

  Args:
    maps_by_run: {run label (e.g. its kind): `viz.attention_maps(...)` of that run}, every
      run on the same tokens.
    path: the PNG to write.
    layer: the layer shown, a name ("decoder/layers_0/self_attention") or an index.
    heads: the heads shown (indices; an int for one).
    **kwargs: example, tokens, vocab, pad_id, max_labels, figsize, title, as in
      `viz.plot_attention`: `tokens` label the axes and mark padding; causal cells of a
      decoder's self-attention are masked. All panels share one colour scale.
  """
  viz.check_path(path)
  return viz_panels.save_figure(kinds_figure(maps_by_run, layer, heads, **kwargs), path)


def mixture_gates(model: nn.Module, variables) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
  """Each mixture layer's learned weights: {layer: (components, [heads, components])}.

  Weights are softmax(gate_logits) per head (rows sum to one); components are the kinds of
  `model.cfg.self_attention` (or `cross_attention`) in the order the mixture sums them.
  Layers are named as `viz.attention_maps` names them; a model without mixtures gives {}.
  """
  tree = nn.meta.unbox(variables.get("params", {}))
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name = viz.path_name(path)
    if not name.endswith("/mixture/gate_logits"):
      continue
    layer = name.removesuffix("/mixture/gate_logits")
    kind = model.cfg.cross_attention if "cross_attention" in layer else model.cfg.self_attention
    gates = np.asarray(jax.nn.softmax(np.asarray(leaf, np.float32), axis=-1))
    out[layer] = (parse_kind(kind), gates)
  return out


def gates_figure(gates_by_run: Mapping[str, Mapping[str, tuple]], title: str | None = None):
  """The Figure `plot_gates` writes; runs without a mixture are left out."""
  runs = {label: g for label, g in gates_by_run.items() if g}
  if not runs:
    raise ValueError("no run has a mixture (kinds such as 'random+dot'): no gates to plot")
  plt = viz_panels.plt_module()
  cols = max(len(g) for g in runs.values())
  heads = max(w.shape[0] for g in runs.values() for _, w in g.values())
  fig, axes = plt.subplots(len(runs), cols, squeeze=False, layout="constrained",
                           figsize=(cols * 2.6 + 1.2, len(runs) * (0.35 * heads + 1.6)))
  image = None
  for r, (label, gates) in enumerate(runs.items()):
    for c in range(cols):
      ax = axes[r, c]
      if c >= len(gates):
        ax.axis("off")
        continue
      layer, (components, w_hc) = list(gates.items())[c]
      image = ax.imshow(w_hc, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
      for (h, k), value in np.ndenumerate(w_hc):
        ax.text(k, h, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="black" if value > 0.6 else "white")
      ax.set_xticks(range(len(components)), components, fontsize=7)
      ax.set_yticks(range(w_hc.shape[0]), [f"head {h}" for h in range(w_hc.shape[0])],
                    fontsize=7)
      ax.set_title(layer.replace("/", " / "), fontsize=7)
      if c == 0:
        ax.set_ylabel(label, fontsize=8)
  fig.colorbar(image, ax=axes, shrink=0.8, label="gate weight")
  fig.suptitle(title or "mixture gates: softmax(gate logits) per layer and head", fontsize=9)
  return fig


def plot_gates(gates_by_run: Mapping[str, Mapping[str, tuple]], path: str,
               title: str | None = None) -> str:
  """One row per mixture run, one panel per layer: its [heads, components] gate weights.

  Args:
    gates_by_run: {run label: `mixture_gates(model, variables)` of that run}.
    path: the PNG to write.
    title: the figure's title.
  """
  viz.check_path(path)
  return viz_panels.save_figure(gates_figure(gates_by_run, title), path)


def run_summary(workdir: paths.PathLike) -> dict:
  """A run's kind, final validation metrics and curves, read from its workdir (local or gs://).

  Returns {"workdir", "kind", "step", "perplexity", "metrics", "train", "eval"}: `metrics`
  are eval_results.json's (else the last eval record's), `train` and `eval` the records of
  metrics.jsonl by split. `perplexity` is None for a run that reports none (a classifier).
  """
  root = paths.as_path(workdir)
  if not (root / "config.json").exists():
    raise FileNotFoundError(f"{workdir} has no config.json: is it a train.py workdir?")
  config = json.loads((root / "config.json").read_text())
  records = logging_utils.read_metrics(root)
  train = [r for r in records if r.get("split") == "train"]
  evals = [r for r in records if r.get("split") not in (None, "train")]
  if (root / RESULTS_FILE).exists():
    results = json.loads((root / RESULTS_FILE).read_text())
    step, metrics = results.get("step"), results.get("metrics", {})
  else:
    last = evals[-1] if evals else {}
    step, metrics = last.get("step"), last
  return {"workdir": str(workdir), "kind": config["model"]["self_attention"], "step": step,
          "perplexity": metrics.get("perplexity"), "metrics": metrics, "train": train,
          "eval": evals}


def summary_table(summaries: Mapping[str, Mapping]) -> str:
  """A Markdown table: one row per run with its kind, step and validation perplexity."""
  lines = ["| run | kind | step | validation perplexity |", "| --- | --- | --- | --- |"]
  for label, s in summaries.items():
    ppl = "-" if s["perplexity"] is None else f"{s['perplexity']:.2f}"
    lines.append(f"| {label} | {s['kind']} | {s['step']} | {ppl} |")
  return "\n".join(lines)


def curves_figure(summaries: Mapping[str, Mapping], keys: Sequence[tuple[str, str]] = (
    ("train", "loss"), ("eval", "perplexity"))):
  """The Figure `plot_run_curves` writes: one panel per (split, metric), one line per run."""
  plt = viz_panels.plt_module()
  fig, axes = plt.subplots(1, len(keys), squeeze=False, layout="constrained",
                           figsize=(4.5 * len(keys), 3.4))
  for ax, (split, key) in zip(axes[0], keys):
    for label, s in summaries.items():
      pts = [(r["step"], r[key]) for r in s[split] if "step" in r and key in r]
      if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="." if len(pts) < 30 else None, label=label)
    ax.set_title(f"{split} {key}", fontsize=9)
    ax.set_xlabel("step")
    if ax.lines:
      ax.legend(fontsize=7)
  return fig


def plot_run_curves(summaries: Mapping[str, Mapping], path: str,
                    keys: Sequence[tuple[str, str]] = (("train", "loss"),
                                                       ("eval", "perplexity"))) -> str:
  """Every run's curves in the same panels: by default train loss and validation perplexity.

  Args:
    summaries: {run label: `run_summary(workdir)`}.
    path: the PNG to write.
    keys: (split, metric) of each panel, split "train" or "eval".
  """
  viz.check_path(path)
  return viz_panels.save_figure(curves_figure(summaries, keys), path)
