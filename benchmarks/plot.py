"""Plots of a benchmark result: time and memory against length (one line per variant), and
memory against batch size. Called by benchmarks.attention; also `python -m benchmarks.plot X.json`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_PANELS = {  # file suffix -> [(bench, mode, value key, axis label)]
    "layer": [("layer", "fwd", "time_ms", "forward time (ms)"),
              ("layer", "fwd_bwd", "time_ms", "forward+backward time (ms)"),
              ("layer", "fwd_bwd", "mem_footprint_bytes", "fwd+bwd compiled footprint (MiB)")],
    "step": [("step", "train_step", "time_ms", "train step time (ms)"),
             ("step", "train_step", "tokens_per_s", "tokens / s"),
             ("step", "train_step", "mem_footprint_bytes", "train step compiled footprint (MiB)")],
}


def _series(records, bench, mode, key):
  lines: dict[str, list] = {}
  for rec in records:
    if rec["bench"] == bench and rec["mode"] == mode and rec.get(key) is not None:
      value = rec[key] / 2**20 if key.endswith("bytes") else rec[key]
      lines.setdefault(rec["variant"], []).append((rec["length"], value))
  return {name: sorted(points) for name, points in lines.items()}


def _style(name: str) -> dict[str, Any]:
  if name.startswith("dot"):
    return {"linestyle": "--", "marker": "s"}
  if name.endswith("/per_batch") or name.endswith("/cached"):
    return {"linestyle": ":", "marker": "x"}
  return {"linestyle": "-", "marker": "o"}


def plot_all(payload: dict[str, Any], out_prefix: str) -> list[str]:
  """Writes <prefix>_layer.png, <prefix>_step.png, <prefix>_batch.png for the benches present."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  meta, records = payload["meta"], payload["records"]
  title = f"{meta['device_kind']} ({meta['backend']}), {meta['config']['dtype']}"
  paths = []
  for suffix, panels in _PANELS.items():
    if not any(r["bench"] == panels[0][0] for r in records):
      continue
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (bench, mode, key, label) in zip(axes, panels, strict=False):
      for name, points in _series(records, bench, mode, key).items():
        xs, ys = zip(*points, strict=False)
        ax.plot(xs, ys, label=name, **_style(name))
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_xlabel("sequence length n")
      ax.set_ylabel(label)
      ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{suffix}: {title}")
    fig.tight_layout()
    path = f"{out_prefix}_{suffix}.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    paths.append(path)
  batch = [r for r in records if r["bench"] == "batch"]
  if batch:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "layer_fwd_bwd_temp_bytes", "layer fwd+bwd temp (MiB)"),
                           (axes[1], "step_footprint_bytes", "train step footprint (MiB)")):
      lines: dict[str, list] = {}
      for rec in batch:
        if rec.get(key) is not None:
          lines.setdefault(rec["variant"], []).append((rec["batch"], rec[key] / 2**20))
      for name, points in lines.items():
        xs, ys = zip(*sorted(points), strict=False)
        ax.plot(xs, ys, label=name, **_style(name))
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_xlabel(f"batch size (n = {batch[0]['length']})")
      ax.set_ylabel(label)
      ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"memory vs batch: {title}")
    fig.tight_layout()
    path = f"{out_prefix}_batch.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    paths.append(path)
  return paths


if __name__ == "__main__":
  for name in sys.argv[1:]:
    with open(name) as f:
      print(plot_all(json.load(f), name.rsplit(".", 1)[0]))
