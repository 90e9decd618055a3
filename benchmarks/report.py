"""Markdown tables of a benchmark result, for benchmarks/README.md.

    python -m benchmarks.report benchmarks/results/cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_MIB = 2**20


def _pivot(records, bench, mode, key, scale=1.0, fmt="{:.1f}", col="length") -> list[str]:
  """Rows: variants (in run order); columns: lengths (or batch sizes); cells: rec[key] * scale."""
  cells: dict[str, dict[int, str]] = {}
  cols: list[int] = []
  for rec in records:
    if rec["bench"] != bench or rec["mode"] != mode:
      continue
    value = rec.get(key)
    text = "error" if rec.get("error") else ("" if value is None else fmt.format(value * scale))
    cells.setdefault(rec["variant"], {})[rec[col]] = text
    if rec[col] not in cols:
      cols.append(rec[col])
  if not cells:
    return []
  cols.sort()
  name = "n" if col == "length" else "batch"
  lines = ["| variant | " + " | ".join(f"{name}={c}" for c in cols) + " |",
           "| --- |" + " ---: |" * len(cols)]
  for variant, row in cells.items():
    lines.append(f"| `{variant}` | " + " | ".join(row.get(c, "") for c in cols) + " |")
  return lines


def _load(values) -> str:
  return "?" if not values else ", ".join(f"{v:.1f}" for v in values)


def render(payload: dict[str, Any]) -> str:
  meta, records = payload["meta"], payload["records"]
  cfg = meta["config"]
  out = [
      f"- Machine: {meta['device_kind']} ({meta['backend']}, {meta['device_count']} device(s)), "
      f"CPU {meta['cpu']} x {meta['cpu_count']} cores. Date: {meta['date']}.",
      f"- Versions: Python {meta['python']}, jax {meta['jax']}, flax {meta['flax']}, "
      f"optax {meta['optax']}, numpy {meta['numpy']}.",
      f"- Command: `{meta['command']}` ({meta.get('wall_s', '?')} s; load average at start/end "
      f"{_load(meta.get('load_average_at_start'))} / {_load(meta.get('load_average_at_end'))}).",
      f"- Model: d_model {cfg['d_model']}, {cfg['num_heads']} heads, mlp {cfg['mlp_dim']}, "
      f"{cfg['num_layers']} layers, vocab {cfg['vocab_size']}, {cfg['dtype']}, max_len = n; "
      f"batch = {cfg['tokens_per_batch']} // n; median of {meta['repeats']} runs after 1 warm-up.",
  ]
  if meta.get("note"):
    out.append(f"- Note: {meta['note']}")
  for run in meta.get("appended_runs", []):
    out.append(f"- Added by: `{run['command']}` ({run['date']}, {run.get('wall_s', '?')} s; "
               f"load average "
               f"{_load(run.get('load_average_at_start'))} / "
               f"{_load(run.get('load_average_at_end'))}).")
  batch_of = {r["length"]: r["batch"] for r in records if r["bench"] in ("layer", "step")}
  if batch_of:
    pairs = ", ".join(f"n={n}: {b}" for n, b in sorted(batch_of.items()))
    out.append(f"- Batch per length: {pairs}.")
  sections = [
      ("One attention layer, forward (ms)", ("layer", "fwd", "time_ms", 1.0, "{:.1f}")),
      ("One attention layer, forward + backward (ms)", ("layer", "fwd_bwd", "time_ms", 1.0,
                                                        "{:.1f}")),
      ("One attention layer, forward + backward, compiled footprint (MiB)",
       ("layer", "fwd_bwd", "mem_footprint_bytes", 1 / _MIB, "{:.1f}")),
      ("One attention layer, forward: analytic FLOPs / XLA FLOPs",
       ("layer", "fwd", "flops_ratio", 1.0, "{:.2f}")),
      ("DecoderLM training step (ms)", ("step", "train_step", "time_ms", 1.0, "{:.0f}")),
      ("DecoderLM training step, tokens/s", ("step", "train_step", "tokens_per_s", 1.0,
                                             "{:.0f}")),
      ("DecoderLM training step, compiled footprint (MiB)",
       ("step", "train_step", "mem_footprint_bytes", 1 / _MIB, "{:.0f}")),
      ("One attention layer, forward + backward, compiled memory: temporaries (MiB; compile only)",
       ("memory", "layer_fwd_bwd", "mem_temp_bytes", 1 / _MIB, "{:.1f}")),
      ("DecoderLM training step, compiled memory: temporaries (MiB; compile only)",
       ("memory", "train_step", "mem_temp_bytes", 1 / _MIB, "{:.0f}")),
      ("DecoderLM training step, compiled memory: footprint (MiB; compile only)",
       ("memory", "train_step", "mem_footprint_bytes", 1 / _MIB, "{:.0f}")),
      ("DecoderLM training step: analytic FLOPs (3 x forward) / XLA FLOPs",
       ("step", "train_step", "flops_ratio", 1.0, "{:.2f}")),
      ("DecoderLM training step, MFU (analytic FLOPs / time / bf16 peak)",
       ("step", "train_step", "mfu", 100.0, "{:.1f}%")),
  ]
  for title, (bench, mode, key, scale, fmt) in sections:
    if key == "mfu" and not meta.get("peak_flops"):
      continue
    table = _pivot(records, bench, mode, key, scale, fmt)
    if table:
      out += ["", f"**{title}**", ""] + table
  batch = [r for r in records if r["bench"] == "batch"]
  if batch:
    n = batch[0]["length"]
    for title, key in ((f"Memory vs batch at n={n}: layer forward+backward temporaries (MiB)",
                        "layer_fwd_bwd_temp_bytes"),
                       (f"Memory vs batch at n={n}: training step footprint (MiB)",
                        "step_footprint_bytes")):
      out += ["", f"**{title}**", ""] + _pivot(batch, "batch", "memory", key, 1 / _MIB,
                                               "{:.1f}", col="batch")
  cache = meta.get("decode_cache_bytes")
  if cache:
    out += ["", f"**Decode cache of the whole model, batch {cache['batch']}, n={cache['length']} "
                "(analytic; keys only for kinds that read them)**", "",
            "| kind | cache (MiB) |", "| --- | ---: |"]
    out += [f"| `{k}` | {v / _MIB:.1f} |" for k, v in cache["bytes"].items()]
  errors = [r for r in records if r.get("error")]
  if errors:
    out += ["", "Errors (recorded, sweep continued):", ""]
    out += [f"- {r['bench']} {r['mode']} `{r['variant']}` n={r['length']} b={r['batch']}: "
            f"{r['error'][:160]}" for r in errors]
  return "\n".join(out) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("results", nargs="+", help="benchmark result JSON files (benchmarks/results)")
  for name in parser.parse_args(argv).results:
    with open(name) as f:
      print(render(json.load(f)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
