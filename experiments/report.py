"""Tables and plots from a sweep's `runs.jsonl`.

    python -m experiments.report --out experiments/results/small [--workroot workdirs/experiments]

Writes into `--out`:
  summary.csv       one row per (task, kind): seeds, mean, std, min, max of the headline
                    metric, parameter count, budget, mean wall time
  tables.md         the same as Markdown tables, one per task, best kind in bold
  plots/curves_<task>.png   validation metric vs step, one line per kind (mean over seeds,
                    band = min..max)
  plots/maps_<task>.png     first layer, head 0 attention of every kind on one validation row
  plots/dense_<task>.png    every layer and head of the `dense` synthesizer on that row
  plots/random_<task>.png   learned (softmaxed) random matrices, layer 0 head 0, per kind
The map plots need the seed-0 checkpoints under `--workroot` (skipped when absent); they are
drawn by experiments/report_plots.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections import defaultdict
from typing import Any

import numpy as np

from experiments import budgets, diagnostics, gates, report_plots

SOLVED = 95.0  # diagnostic accuracy (%) counted as "solved"


def load_runs(out: str) -> list[dict[str, Any]]:
  path = os.path.join(out, "runs.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {path}: run `python -m experiments.sweep --out {out}` first")
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per (task, kind) with mean / std (ddof=1) / min / max over seeds."""
  groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
  for r in runs:
    groups[(r["task"], r["kind"])].append(r)
  rows = []
  for (task, kind), rs in groups.items():
    metric = budgets.TASKS[task].metric
    vals = np.array([r["metrics"].get(metric, math.nan) for r in rs], float)
    rows.append({
        "task": task, "kind": kind, "metric": metric, "seeds": len(rs),
        "mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(rs) > 1 else 0.0,
        "min": float(np.min(vals)), "max": float(np.max(vals)),
        "values": [round(float(v), 3) for v in vals], "params": rs[0]["params"],
        "steps": rs[0]["steps"], "batch_size": rs[0]["batch_size"],
        "token_budget": rs[0]["token_budget"],
        "wall_s": float(np.mean([r.get("wall_s", r.get("train_eval_s", 0)) for r in rs])),
        "solved_at": [_first_step(r["curve"]["validation"], SOLVED) for r in rs],
        "diag_spec": rs[0].get("diag_spec"),
    })
  _add_paired_deltas(rows, runs)
  task_order = list(budgets.TASKS)
  return sorted(rows, key=lambda r: (task_order.index(r["task"]), budgets.kind_order(r["kind"])))


def _add_paired_deltas(rows: list[dict[str, Any]], runs: list[dict[str, Any]],
                       baseline: str = "dot") -> None:
  """Adds "delta_vs_dot": metric(kind, seed) - metric(dot, seed) over the seeds both ran.

  Seeds share the data order and initialisation stream, so differences paired by seed
  cancel much of the seed-to-seed spread that the mean ± std columns carry.
  """
  value = {(r["task"], r["kind"], r["seed"]): r["metrics"].get(budgets.TASKS[r["task"]].metric,
                                                               math.nan) for r in runs}
  for row in rows:
    if row["kind"] == baseline:
      continue
    seeds = sorted(s for (t, k, s) in value if t == row["task"] and k == row["kind"]
                   and (t, baseline, s) in value)
    diffs = np.array([value[(row["task"], row["kind"], s)] - value[(row["task"], baseline, s)]
                      for s in seeds], float)
    if len(diffs):
      row["delta_vs_dot"] = paired_delta(diffs)


def paired_delta(diffs) -> dict[str, Any]:
  """Mean, std, range of differences paired by seed, and a two-sided paired t-test.

  "outside_noise" means p < 0.05: the mean difference is larger than the seed-to-seed
  spread of the differences explains (at 3 seeds that needs |mean| > 2.48 std).
  """
  diffs = np.asarray(diffs, float)
  out = {"mean": float(diffs.mean()), "n": len(diffs),
         "std": float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0,
         "min": float(diffs.min()), "max": float(diffs.max()), "p": None, "outside_noise": None}
  if len(diffs) > 1:
    from scipy import stats

    p = 0.0 if out["std"] == 0 and out["mean"] != 0 else float(stats.ttest_1samp(diffs, 0).pvalue)
    out.update(p=p, outside_noise=bool(p < 0.05))
  return out


def _first_step(curve, threshold: float) -> int | None:
  """First evaluated step whose value reaches `threshold` (None: never)."""
  return next((int(step) for step, value in curve if value >= threshold), None)


def write_csv(rows: list[dict[str, Any]], path: str) -> str:
  keys = ["task", "kind", "metric", "seeds", "mean", "std", "min", "max", "params", "steps",
          "batch_size", "token_budget", "wall_s"]
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
      w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
  return path


def _verdict(row: dict[str, Any], guess: float) -> str:
  if row["min"] >= SOLVED:
    return "solved (all seeds)"
  if row["max"] >= SOLVED:
    return "solved by some seeds"
  if row["mean"] <= 100 * guess * 1.5:
    return "near guessing"
  return "partly"


def _delta_text(delta: dict[str, Any] | None) -> str:
  if delta is None:
    return "-"
  spread = f" ± {delta['std']:.2f}" if delta["n"] > 1 else ""
  test = ""
  if delta.get("p") is not None:
    test = f"; p = {delta['p']:.2f}, " + ("outside" if delta["outside_noise"] else "inside")
    test += " seed noise"
  return (f"{delta['mean']:+.2f}{spread} ({delta['min']:+.2f} .. {delta['max']:+.2f}, "
          f"{delta['n']} seed{'s' if delta['n'] > 1 else ''}{test})")


def markdown_tables(rows: list[dict[str, Any]], diag_spec=None) -> str:
  """One Markdown table per task; best mean in bold; diagnostics get a verdict column.

  A diagnostic's guessing level comes from the DiagSpec its runs recorded (`diag_spec`
  stands in for runs that predate that field).
  """
  parts = []
  for task in dict.fromkeys(r["task"] for r in rows):
    trs = [r for r in rows if r["task"] == task]
    t = budgets.TASKS[task]
    best = (max if t.higher_is_better else min)(r["mean"] for r in trs)
    arrow = "higher is better" if t.higher_is_better else "lower is better"
    first = trs[0]
    diag = t.diagnostic
    if diag:
      spec = (diagnostics.DiagSpec(**first["diag_spec"]) if first.get("diag_spec")
              else diag_spec or diagnostics.DiagSpec())
      guess = diagnostics.guess_level(t.data_task, spec)
    parts.append(f"### {task} ({t.data_task}): {t.metric}, {arrow}\n\n"
                 f"Budget per run: {first['steps']} steps x batch {first['batch_size']}, "
                 f"{first['token_budget']:,} token slots; {first['seeds']} seed(s)."
                 + (f" Guessing scores {100 * guess:.1f}%." if diag else "") + "\n")
    head = "| kind | params | " + t.metric + " mean ± std | min .. max | per seed |"
    head += (f" verdict | first eval step >= {SOLVED:g}% |" if diag
             else " minus dot, paired by seed: mean ± std (min .. max) |")
    parts.append(head)
    parts.append("|" + " --- |" * (7 if diag else 6))
    for r in trs:
      mean = f"{r['mean']:.2f}"
      mean = f"**{mean}**" if r["mean"] == best else mean
      spread = f"± {r['std']:.2f}" if r["seeds"] > 1 else "(1 seed)"
      line = (f"| {r['kind']} | {r['params']:,} | {mean} {spread} | "
              f"{r['min']:.2f} .. {r['max']:.2f} | {', '.join(f'{v:g}' for v in r['values'])} |")
      if diag:
        steps = ", ".join("-" if x is None else str(x) for x in r["solved_at"])
        line += f" {_verdict(r, guess)} | {steps} |"
      else:
        line += f" {_delta_text(r.get('delta_vs_dot'))} |"
      parts.append(line)
    parts.append("")
  return "\n".join(parts)


def write_report(out: str, *, workroot: str | None = None, size: str = "",
                 data_dir: str = "data", maps: bool = True) -> dict[str, Any]:
  """summary.csv, tables.md and the plots for the sweep in `out`; returns their paths."""
  del workroot, size  # records carry their own workdirs
  runs = load_runs(out)
  rows = summarize(runs)
  plot_dir = os.path.join(out, "plots")
  written = {"csv": write_csv(rows, os.path.join(out, "summary.csv"))}
  with open(os.path.join(out, "tables.md"), "w") as f:
    f.write(markdown_tables(rows))
  written["tables"] = os.path.join(out, "tables.md")
  plots = []
  for task in dict.fromkeys(r["task"] for r in runs):
    p = report_plots.plot_curves(runs, task, os.path.join(plot_dir, f"curves_{task}.png"))
    plots += [p] if p else []
    if maps:
      try:
        plots += report_plots.plot_maps(runs, task, plot_dir, data_dir)
      except Exception as err:  # noqa: BLE001 -- a stale checkpoint must not sink the tables
        print(f"report: no attention maps for {task}: {type(err).__name__}: {err}")
  if maps and any("+" in r["kind"] for r in runs):
    try:
      gate_rows = gates.gate_table(runs)
      written["gates"] = os.path.join(out, "gates.md")
      with open(written["gates"], "w") as f:
        f.write(gates.markdown(gate_rows))
      plots += gates.plot_gates(gate_rows, plot_dir)
    except Exception as err:  # noqa: BLE001 -- as for the maps
      print(f"report: no mixture gates: {type(err).__name__}: {err}")
  written["plots"] = plots
  return written


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="a sweep's results folder (holds runs.jsonl)")
  p.add_argument("--data_dir", default="data")
  p.add_argument("--no-maps", dest="maps", action="store_false",
                 help="skip the plots that need checkpoints")
  args = p.parse_args(argv)
  written = write_report(args.out, data_dir=args.data_dir, maps=args.maps)
  print(json.dumps(written, indent=2))
  print(open(written["tables"]).read())


if __name__ == "__main__":
  main()
