"""A steadier score where the final evaluation is noisy: the mean of each run's last evaluations.

    python -m experiments.late_average --out experiments/results/learn --task classify --last 3

On a small validation split, one evaluation swings by its sampling error from step to step
(offline_classify: 383 reviews, about 2 points at 80%), so a kind's final accuracy is partly
the luck of the last step. This averages each run's last `--last` evaluations of the task's
metric (from the validation curve in runs.jsonl) and prints the sweep's table on that score:
mean ± std over seeds and the difference with dot paired by seed, with its t-test. It also
writes `late_<task>.md` beside runs.jsonl. Only runs whose curve holds the task's metric
qualify (each curve names its metric): a beam-decoded task's curve is the validation loss,
since its BLEU / ROUGE is scored once, at the end.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from experiments import budgets, report


def late_runs(runs: list[dict[str, Any]], task: str, last: int) -> list[dict[str, Any]]:
  """`task`'s records with their metric replaced by the mean of their last `last` evaluations
  (and those evaluations' steps under "late_steps", the same for every run)."""
  if task not in budgets.TASKS:
    raise ValueError(f"unknown sweep task {task!r}; choose from {sorted(budgets.TASKS)}")
  metric = budgets.TASKS[task].metric
  if last < 1:
    raise ValueError(f"--last must be at least 1, got {last}")
  out = []
  for r in runs:
    if r["task"] != task:
      continue
    held = r["curve"].get("metric")
    if held != metric:
      raise ValueError(f"{task} {r['kind']} seed {r['seed']}: its validation curve holds "
                       f"{held or 'an unnamed metric (a record from before 2026-12-03)'}, "
                       f"not {metric}, so it cannot be averaged: choose a task scored on its "
                       f"curve")
    values = [v for _, v in r["curve"]["validation"]]
    if len(values) < last:
      raise ValueError(f"{task} {r['kind']} seed {r['seed']} has {len(values)} evaluations, "
                       f"fewer than --last {last}: lower --last")
    steps = [s for s, _ in r["curve"]["validation"]][-last:]
    if out and steps != out[0]["late_steps"]:
      raise ValueError(f"{task} {r['kind']} seed {r['seed']} ends its evaluations at steps "
                       f"{steps}, {out[0]['kind']} seed {out[0]['seed']} at "
                       f"{out[0]['late_steps']}: average runs of one budget (one --out)")
    out.append({**r, "late_steps": steps,
                "metrics": {**r["metrics"], metric: float(np.mean(values[-last:]))}})
  if not out:
    raise ValueError(f"no {task} runs in the records: run experiments.sweep --tasks {task}")
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="a sweep's results folder (holds runs.jsonl)")
  p.add_argument("--task", default="classify", choices=sorted(budgets.TASKS))
  p.add_argument("--last", type=int, default=3, help="evaluations averaged per run")
  args = p.parse_args(argv)
  runs = late_runs(report.load_runs(args.out), args.task, args.last)
  text = (f"Score: the mean of each run's last {args.last} evaluations (steps "
          f"{', '.join(map(str, runs[0]['late_steps']))}), not the final one.\n\n"
          + report.markdown_tables(report.summarize(runs)))
  with open(os.path.join(args.out, f"late_{args.task}.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
