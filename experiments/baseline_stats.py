"""Issue 19: is one variant's steps-to-threshold different from another's beyond the seed spread?

Reads one or more runs.jsonl files of `experiments.baseline` (a (variant, seed) found in an
earlier file wins), takes each run's steps to threshold (recomputed from its curve; a run that
never reached the threshold counts as slower than every run that did), and prints for each
variant given to --compare against --against: seeds, solved, median, a Mann-Whitney U test
(mid-ranks for ties; two-sided p from 100 000 random relabellings, as the steps sit on a
100-step grid with many ties) and a bootstrap 95% interval of the difference of medians.

    python -m experiments.baseline_stats --task recall --against ref --compare ours \
        --runs experiments/results/baseline_after/runs.jsonl,experiments/results/baseline/runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from experiments import baseline


def load(paths: list[str], task: str) -> dict[str, dict[int, float]]:
  """{variant: {seed: steps to threshold (inf = never)}} for `task`, at the default steps."""
  out: dict[str, dict[int, float]] = {}
  for path in paths:
    for line in pathlib.Path(path).read_text().splitlines():
      r = json.loads(line)
      if r["task"] != task or r["steps"] != baseline.LoopConfig.steps:
        continue
      hit = next((c["step"] for c in r["curve"] if baseline.reached(task, c)), None)
      out.setdefault(r["variant"], {}).setdefault(r["seed"], np.inf if hit is None else hit)
  return out


def midranks(x: np.ndarray) -> np.ndarray:
  """Ranks 1..n of x, ties sharing their mean rank (inf ranks last)."""
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x))
  ranks[order] = np.arange(1, len(x) + 1)
  for v in np.unique(x):
    tie = x == v
    ranks[tie] = ranks[tie].mean()
  return ranks


def mann_whitney(a: np.ndarray, b: np.ndarray, perms: int = 100_000, seed: int = 0):
  """(U of a, P(a < b) + P(a == b) / 2 estimate, two-sided permutation p)."""
  both = np.concatenate([a, b])
  r = midranks(both)
  n = len(a)

  def u_of(ranks_a):
    return ranks_a.sum(-1) - n * (n + 1) / 2

  u = u_of(r[:n])
  rng = np.random.default_rng(seed)
  perm_r = np.stack([rng.permutation(r) for _ in range(perms)])
  u_perm = u_of(perm_r[:, :n])
  centre = n * len(b) / 2
  p = np.mean(np.abs(u_perm - centre) >= abs(u - centre) - 1e-9)
  # U counts pairs where a ranks above b; "a faster" = a has fewer steps.
  return u, 1.0 - u / (n * len(b)), p


def bootstrap_median_diff(a, b, reps: int = 20_000, seed: int = 0):
  """95% percentile interval of median(a) - median(b) (inf when a resample's median is never)."""
  rng = np.random.default_rng(seed)
  ma = np.median(rng.choice(a, (reps, len(a))), axis=1)
  mb = np.median(rng.choice(b, (reps, len(b))), axis=1)
  with np.errstate(invalid="ignore"):
    d = ma - mb
  d = np.sort(np.where(np.isnan(d), 0.0, d))  # inf - inf: both never
  return d[int(0.025 * reps)], d[int(0.975 * reps) - 1]


def fmt(x: float) -> str:
  return "never" if not np.isfinite(x) else f"{x:.0f}"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", default="recall")
  parser.add_argument("--runs", required=True, help="comma-separated runs.jsonl paths")
  parser.add_argument("--against", default="ref")
  parser.add_argument("--compare", required=True, help="comma-separated variants")
  parser.add_argument("--seeds", default="", help="e.g. 0-19 (default: every seed found)")
  args = parser.parse_args(argv)
  data = load(args.runs.split(","), args.task)
  wanted = None
  if args.seeds:
    lo, hi = (int(x) for x in args.seeds.split("-"))
    wanted = set(range(lo, hi + 1))

  def steps(variant):
    runs = data.get(variant, {})
    seeds = sorted(s for s in runs if wanted is None or s in wanted)
    return seeds, np.array([runs[s] for s in seeds], float)

  ref_seeds, ref = steps(args.against)
  print(f"{args.against}: seeds {ref_seeds}, solved {np.isfinite(ref).sum()}/{len(ref)}, "
        f"median {fmt(np.median(ref))}; steps {' '.join(fmt(x) for x in ref)}")
  for variant in args.compare.split(","):
    seeds, a = steps(variant)
    if not len(a):
      print(f"{variant}: no runs")
      continue
    u, p_faster, p = mann_whitney(a, ref)
    lo, hi = bootstrap_median_diff(a, ref)
    print(f"{variant}: seeds {seeds}, solved {np.isfinite(a).sum()}/{len(a)}, "
          f"median {fmt(np.median(a))}; steps {' '.join(fmt(x) for x in a)}")
    print(f"  vs {args.against}: median difference {np.median(a) - np.median(ref):+.0f}, "
          f"bootstrap 95% [{lo:+.0f}, {hi:+.0f}]; Mann-Whitney U={u:.1f}, "
          f"P({variant} faster than {args.against}) = {p_faster:.2f}, two-sided p = {p:.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
