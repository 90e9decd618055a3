"""The result files of benchmarks/attention.py: one line per record as it is measured, the
<prefix>.json / .csv / plots at the end, and `--append`'s merge into earlier results."""

from __future__ import annotations

import csv
import json
import os
from typing import Any


def log_line(rec: dict[str, Any]) -> None:
  if rec.get("error"):
    status = "ERROR " + rec["error"][:120]
  elif rec["bench"] == "memory":
    status = (f"step temp {(rec.get('mem_temp_bytes') or 0) / 2**20:9.1f} MiB  "
              f"footprint {(rec.get('mem_footprint_bytes') or 0) / 2**20:9.1f} MiB")
  elif rec["bench"] == "batch":
    status = (f"layer temp {(rec['layer_fwd_bwd_temp_bytes'] or 0) / 2**20:9.1f} MiB  "
              f"step mem {(rec['step_footprint_bytes'] or 0) / 2**20:9.1f} MiB")
  else:
    status = (f"{rec.get('time_ms', float('nan')):10.2f} ms  "
              f"{rec.get('tokens_per_s', 0):12.0f} tok/s  "
              f"mem {(rec.get('mem_footprint_bytes') or 0) / 2**20:9.1f} MiB  "
              f"flops analytic/XLA {rec.get('flops_ratio', float('nan')):.2f}")
  print(f"{rec['bench']:5s} {rec['mode']:10s} {rec['variant']:28s} n={rec['length']:5d} "
        f"b={rec['batch']:3d}  {status}", flush=True)


def write_results(payload: dict[str, Any], out_prefix: str) -> list[str]:
  """Writes <prefix>.json, <prefix>.csv (one row per record) and the plots; returns the paths."""
  os.makedirs(os.path.dirname(out_prefix) or ".", exist_ok=True)
  with open(out_prefix + ".json", "w") as f:
    json.dump(payload, f, indent=1, default=float)
  records = payload["records"]
  columns = sorted({k for rec in records for k in rec if k != "times_ms"})
  with open(out_prefix + ".csv", "w", newline="") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
  from benchmarks import plot

  return [out_prefix + ".json", out_prefix + ".csv"] + plot.plot_all(payload, out_prefix)


def _key(rec):
  return rec["bench"], rec["mode"], rec["variant"], rec["length"], rec["batch"]


def merge(path: str, new: dict[str, Any]) -> dict[str, Any]:
  """The results at `path` with `new`'s records added (replacing equal measurements)."""
  with open(path) as f:
    old = json.load(f)
  replaced = {_key(r) for r in new["records"]}
  meta = old["meta"]
  run = {k: new["meta"][k] for k in ("command", "date", "wall_s", "load_average_at_start",
                                     "load_average_at_end")}
  meta.setdefault("appended_runs", []).append(run)
  if new["meta"]["decode_cache_bytes"]["length"] == meta["decode_cache_bytes"]["length"]:
    meta["decode_cache_bytes"]["bytes"].update(new["meta"]["decode_cache_bytes"]["bytes"])
  records = [r for r in old["records"] if _key(r) not in replaced] + new["records"]
  return {"meta": meta, "records": records}
