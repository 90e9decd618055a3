"""The LM comparison at equal wall-clock: every kind gets the seconds the fastest kind needs.

    python -m experiments.equal_time --out experiments/results/learn [--steps 900]

The sweep gives every kind the same steps. The paper's argument is about cost, so this asks
what each kind reaches in the same time on this machine. It reads each LM run's
training curve, with its steps/s, from runs.jsonl:

* a kind's speed is the median of its logged training steps/s (the first interval, which
  holds compilation, left out), averaged over its seeds;
* the time budget T is the fastest kind's time for `--steps` steps; a kind reaches
  T x its speed steps, never more than `--steps`;
* the model quality at a step is the training loss there: a line fitted to the logged
  losses within +-150 steps, none past `--steps` + 50. Each of the first ~970 steps reads
  batches no step saw before (one epoch of offline_lm is 1.99M tokens, 2,048 per step), so
  up to there the training loss is a held-out loss. `--steps` + 50 must stay below the epoch.

Writes equal_time.md (one row per kind: speed, steps in T, perplexity at equal steps and at
equal time, paired-by-seed difference with dot) and plots/equal_time_lm.png (training
perplexity against seconds of training steps).
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import numpy as np

from experiments import budgets, report, report_plots


def run_log(record: dict[str, Any]) -> list[dict[str, Any]]:
  """[{step, loss, steps_per_sec}] of a sweep record, from its curve."""
  curve = record["curve"]
  if not curve.get("steps_per_sec"):
    raise ValueError(
        f"the {record.get('kind')} seed {record.get('seed')} record has no steps/s in its curve "
        "(it predates them): rerun it with experiments.sweep, which records them")
  rate = dict(map(tuple, curve["steps_per_sec"]))
  return [{"step": step, "loss": loss, "steps_per_sec": rate.get(step)}
          for step, loss in curve["train_loss"]]


def speed(log: list[dict[str, Any]]) -> float:
  """Median training steps/s over the logged intervals, the first (compilation) left out."""
  rates = [r["steps_per_sec"] for r in log[1:] if r.get("steps_per_sec")]
  if not rates:
    raise ValueError("the training log has no steps_per_sec after its first interval")
  return float(np.median(rates))


def loss_at(log: list[dict[str, Any]], step: float, window: float,
            last: float = math.inf) -> float:
  """Training loss at `step`: a straight line fitted to the logged losses within +-window
  steps (and at most `last`), read at `step`. One logged loss is one batch's, so a single
  value is noisy; the fit averages it out without the lag of a trailing mean."""
  near = [(r["step"], r["loss"]) for r in log
          if abs(r["step"] - step) <= window and r["step"] <= last]
  if len(near) < 2:
    raise ValueError(f"fewer than 2 training losses logged within {window} steps of step "
                     f"{step:.0f} (and at most step {last})")
  x, y = np.array(near, float).T
  slope, intercept = np.polyfit(x, y, 1)
  return float(slope * step + intercept)


def compare(logs: dict[tuple[str, int], list], steps: int, window: float = 150.0,
            margin: float = 50.0) -> list[dict[str, Any]]:
  """One row per kind: speed, steps reached in the shared time, perplexities, paired deltas."""
  kinds = sorted({k for k, _ in logs}, key=budgets.kind_order)
  per_run = {key: speed(log) for key, log in logs.items()}
  speeds = {k: float(np.mean([v for key, v in per_run.items() if key[0] == k])) for k in kinds}
  budget_s = min(steps / s for s in speeds.values())
  at_steps, at_time = {}, {}
  for (kind, seed), log in logs.items():
    reached = min(steps, budget_s * speeds[kind])
    at_steps[(kind, seed)] = math.exp(loss_at(log, steps, window, steps + margin))
    at_time[(kind, seed)] = math.exp(loss_at(log, reached, window, steps + margin))
  rows = []
  for kind in kinds:
    seeds = sorted(s for k, s in logs if k == kind)
    row = {"kind": kind, "seeds": seeds, "steps_per_s": speeds[kind],
           "steps_per_s_range": (min(per_run[(kind, s)] for s in seeds),
                                 max(per_run[(kind, s)] for s in seeds)),
           "speed_vs_dot": speeds[kind] / speeds["dot"] if "dot" in speeds else math.nan,
           "budget_s": budget_s, "window": window,
           "steps_in_budget": min(steps, budget_s * speeds[kind]),
           "ppl_equal_steps": [at_steps[(kind, s)] for s in seeds],
           "ppl_equal_time": [at_time[(kind, s)] for s in seeds]}
    if kind != "dot":
      paired = [s for s in seeds if ("dot", s) in at_time]
      if paired:
        row["delta_equal_steps"] = report.paired_delta(
            [at_steps[(kind, s)] - at_steps[("dot", s)] for s in paired])
        row["delta_equal_time"] = report.paired_delta(
            [at_time[(kind, s)] - at_time[("dot", s)] for s in paired])
    rows.append(row)
  return rows


def _mean_std(values: list[float]) -> str:
  return (f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}" if len(values) > 1
          else f"{values[0]:.1f} (1 seed)")


def markdown(rows: list[dict[str, Any]], steps: int) -> str:
  budget, window = rows[0]["budget_s"], rows[0]["window"]
  lines = [f"Time budget: {budget:.0f} s of training steps, the fastest kind's time for "
           f"{steps} steps. Perplexity: exp(training loss) on batches not seen before, "
           f"from a line fitted to the logged losses within {window:g} steps.\n",
           "| kind | steps/s, mean (min .. max over seeds) | vs dot | steps in the budget | "
           "perplexity at equal steps | minus dot (paired) | perplexity at equal time | "
           "minus dot (paired) |",
           "|" + " --- |" * 8]
  for r in rows:
    lines.append(
        f"| {r['kind']} | {r['steps_per_s']:.3f} ({r['steps_per_s_range'][0]:.3f} .. "
        f"{r['steps_per_s_range'][1]:.3f}) | {r['speed_vs_dot']:.3f} | "
        f"{r['steps_in_budget']:.0f} | {_mean_std(r['ppl_equal_steps'])} | "
        f"{report._delta_text(r.get('delta_equal_steps'))} | {_mean_std(r['ppl_equal_time'])} | "
        f"{report._delta_text(r.get('delta_equal_time'))} |")
  return "\n".join(lines) + "\n"


def plot(logs: dict[tuple[str, int], list], path: str, smooth: int = 5) -> str:
  """Training perplexity against seconds of training steps, per kind: the seeds' mean loss at
  each logged step, a running mean over `smooth` logged points, at step / the kind's speed."""
  plt = report_plots.pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for kind in sorted({k for k, _ in logs}, key=budgets.kind_order):
    runs = [logs[key] for key in sorted(logs) if key[0] == kind]
    steps = sorted(set.intersection(*({r["step"] for r in log[1:]} for log in runs)))
    loss = np.mean([[next(r["loss"] for r in log if r["step"] == s) for s in steps]
                    for log in runs], axis=0)
    loss = np.convolve(loss, np.ones(smooth) / smooth, mode="valid")
    rate = np.mean([speed(log) for log in runs])
    x = np.array(steps[smooth // 2: len(steps) - smooth // 2]) / rate
    ax.plot(x, np.exp(loss), linewidth=1.2, linestyle="--" if "+" in kind else "-",
            label=f"{kind} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
  ax.set_yscale("log")
  ax.set_xlabel("seconds of training steps (this machine)")
  ax.set_ylabel(f"training perplexity (unseen batches, mean of {smooth} logs)")
  ax.set_title("lm: perplexity against training time, mean over seeds")
  return report_plots.save_figure(plt, fig, ax, path)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="a sweep's results folder (holds runs.jsonl)")
  p.add_argument("--task", default="lm")
  p.add_argument("--steps", type=int, default=900,
                 help="equal-steps point and the fastest kind's budget (below one epoch)")
  args = p.parse_args(argv)
  runs = [r for r in report.load_runs(args.out) if r["task"] == args.task]
  logs = {(r["kind"], r["seed"]): run_log(r) for r in runs}
  rows = compare(logs, args.steps)
  text = markdown(rows, args.steps)
  with open(os.path.join(args.out, "equal_time.md"), "w") as f:
    f.write(text)
  plot(logs, os.path.join(args.out, "plots", f"equal_time_{args.task}.png"))
  print(text)


if __name__ == "__main__":
  main()
