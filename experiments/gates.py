"""Where a mixture's learned gates ended: the weight of each component per layer and head.

A mixture `a+b` learns per-head gate logits; its logits are sum_c softmax(gates)_c B_c
(synthesizer_jax/attention/mixture.py). After training, does a `random+dot` head move to
`dot`, to `random`, or share? `gate_weights(params)` reads them from a parameter tree;
`gate_table(runs)` does it for every mixture run of a sweep (from its final checkpoint) and
`plot_gates` draws one heatmap per mixture kind (seeds averaged).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from experiments import report_plots


def gate_weights(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """{attention module path: softmax(gate_logits) [heads, components]} of a parameter tree."""
  found: dict[str, np.ndarray] = {}

  def walk(tree, path):
    for key, value in tree.items():
      if key == "gate_logits":
        logits = np.asarray(getattr(value, "value", value), np.float64)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        found["/".join(path)] = e / e.sum(-1, keepdims=True)
      elif isinstance(value, Mapping):
        walk(value, path + [key])

  walk(params, [])
  return dict(sorted(found.items()))


def gate_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per (mixture run, attention layer): the components' weights per head."""
  from synthesizer_jax import attention, loading

  rows = []
  for run in runs:
    kind = run["kind"]
    if "+" not in kind:
      continue
    _, variables, _ = loading.load_checkpoint(run["workdir"])
    for layer, w_hc in gate_weights(variables["params"]).items():
      rows.append({"task": run["task"], "kind": kind, "seed": run["seed"], "layer": layer,
                   "components": attention.parse_kind(kind), "weights": w_hc.tolist()})
  return rows


def markdown(rows: list[dict[str, Any]]) -> str:
  """Per mixture kind and layer: each component's weight per head, mean over seeds."""
  out = []
  for (task, kind), group in _groups(rows).items():
    comps = group[0]["components"]
    out += [f"### {task}: `{kind}` gates at the end of training (mean over "
            f"{len({r['seed'] for r in group})} seeds)", "",
            "| layer | " + " | ".join(f"weight of `{c}` per head" for c in comps) + " |",
            "| --- |" + " --- |" * len(comps)]
    for layer in dict.fromkeys(r["layer"] for r in group):
      w = np.mean([r["weights"] for r in group if r["layer"] == layer], axis=0)  # [h, c]
      out.append(f"| {layer} | " + " | ".join(
          ", ".join(f"{x:.2f}" for x in w[:, c]) for c in range(len(comps))) + " |")
    out.append("")
  return "\n".join(out)


def plot_gates(rows: list[dict[str, Any]], plot_dir: str) -> list[str]:
  """One heatmap per (task, mixture): the first component's weight, layers x heads."""
  if not rows:
    return []
  plt = report_plots.pyplot()
  written = []
  for (task, kind), group in _groups(rows).items():
    layers = list(dict.fromkeys(r["layer"] for r in group))
    grid = np.array([np.mean([np.asarray(r["weights"])[:, 0] for r in group
                              if r["layer"] == layer], axis=0) for layer in layers])
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * grid.shape[1], 0.8 + 0.45 * len(layers)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="coolwarm", aspect="auto")
    ax.set_yticks(range(len(layers)), [layer.split("/")[-3] for layer in layers])
    ax.set_xlabel("head")
    ax.set_title(f"{task}: weight of {group[0]['components'][0]} in {kind}", fontsize=9)
    fig.colorbar(im, ax=ax)
    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, f"gates_{task}_{kind.replace('+', '_plus_')}.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    written.append(path)
  return written


def _groups(rows):
  groups: dict[tuple[str, str], list] = {}
  for r in rows:
    groups.setdefault((r["task"], r["kind"]), []).append(r)
  return groups
