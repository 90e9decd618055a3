"""The plots of experiments/report.py: validation curves per kind, and the attention maps of
every kind on one validation row (from the runs' checkpoints); `pyplot` and `save_figure` for
the other experiment scripts' plots."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import numpy as np

from experiments import budgets, diagnostics


def pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def plot_curves(runs: list[dict[str, Any]], task: str, path: str) -> str | None:
  """Validation metric vs step per kind: mean over seeds, shaded min..max."""
  by_kind: dict[str, list] = defaultdict(list)
  for r in runs:
    if r["task"] == task and r["curve"]["validation"]:
      by_kind[r["kind"]].append(dict(map(tuple, r["curve"]["validation"])))
  if not by_kind:
    return None
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for kind in sorted(by_kind, key=budgets.kind_order):
    curves = by_kind[kind]
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    vals = np.array([[c[s] for s in steps] for c in curves])
    line, = ax.plot(steps, vals.mean(0), marker=".", label=kind,
                    linestyle="--" if "+" in kind else "-")
    if len(curves) > 1:
      ax.fill_between(steps, vals.min(0), vals.max(0), alpha=0.15, color=line.get_color())
  metric = budgets.TASKS[task].metric
  if metric == "perplexity":
    ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel(f"validation {metric}")
  ax.set_title(f"{task}: validation {metric} per attention kind")
  return save_figure(plt, fig, ax, path)


def save_figure(plt, fig, ax, path: str) -> str:
  """Legend, layout, write `path` (its folder made), close."""
  ax.legend(fontsize=7, ncol=2)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def example_inputs(task: str, record: dict[str, Any], data_dir: str):
  """Model args for one validation row of `task` (tuple), or None when data is missing."""
  t = budgets.TASKS[task]
  lengths = record["lengths"]
  if t.diagnostic:
    data = diagnostics.DiagnosticData(diagnostics.DiagSpec(**record.get("diag_spec", {})))
  else:
    from synthesizer_jax import data

    try:
      data.get_vocabulary(t.data_task, data_dir)
    except Exception:  # noqa: BLE001 -- data not prepared here: skip the maps
      return None
  batch = next(iter(data.get_dataset(t.data_task, "validation", feature_lengths=lengths,
                                     batch_size=1, pack=False, shuffle=False, seed=0,
                                     data_dir=data_dir, repeat=False)))
  if "decoder_input_tokens" in batch and "encoder_input_tokens" in batch:
    return (batch["encoder_input_tokens"], batch["decoder_input_tokens"])
  if "decoder_input_tokens" in batch:
    return (batch["decoder_input_tokens"],)
  return (batch["encoder_input_tokens"],)


def restorable_maps(candidates: list[dict[str, Any]], inputs):
  """(record, variables, maps) of the lowest seed whose checkpoint the current code can run.

  A checkpoint written before a change of parameter names restores as a tree but fails in
  `apply`; such runs are skipped with a message, and the next seed is tried.
  """
  from synthesizer_jax import loading, viz

  for record in candidates:
    try:
      model, variables, _ = loading.load_checkpoint(record["workdir"])
      return record, variables, viz.attention_maps(model, variables, *inputs)
    except Exception as err:  # noqa: BLE001 -- try the next seed
      print(f"report: skipping {record['workdir']} for attention maps: "
            f"{type(err).__name__}: {str(err)[:200]}")
  return None


def plot_maps(runs: list[dict[str, Any]], task: str, plot_dir: str,
              data_dir: str = "data") -> list[str]:
  """Attention maps of every kind (its lowest restorable seed) and learned random matrices."""
  from synthesizer_jax import viz

  by_kind: dict[str, list[dict[str, Any]]] = {}
  for r in sorted((r for r in runs if r["task"] == task), key=lambda r: r["seed"]):
    if os.path.isdir(os.path.join(r["workdir"], "checkpoints")):
      by_kind.setdefault(r["kind"], []).append(r)
  if not by_kind:
    return []
  inputs = example_inputs(task, next(iter(by_kind.values()))[0], data_dir)
  if inputs is None:
    return []
  first_layer, randoms, written = {}, {}, []
  for kind in sorted(by_kind, key=budgets.kind_order):
    found = restorable_maps(by_kind[kind], inputs)
    if found is None:
      continue
    record, variables, maps = found
    self_maps = {k: v for k, v in maps.items() if "cross" not in k}
    skipped = record["seed"] != by_kind[kind][0]["seed"]
    label = f"{kind} (seed {record['seed']})" if skipped else kind
    first_layer[label] = next(iter(self_maps.values()))
    if kind == "dense":
      written.append(viz.plot_attention(self_maps, os.path.join(plot_dir, f"dense_{task}.png"),
                                        title=f"{task}: dense synthesizer, every layer / head"))
    for name, matrix in viz.random_matrices(variables).items():
      if "layers_0" in name or name.endswith("_0"):
        randoms[label] = matrix
        break
  if first_layer:
    written.append(viz.plot_kinds(first_layer, os.path.join(plot_dir, f"maps_{task}.png")))
  if randoms:
    written.append(viz.plot_kinds(randoms, os.path.join(plot_dir, f"random_{task}.png")))
  return written
