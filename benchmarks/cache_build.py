"""The single-process cache writer against Beam on local workers, side by side in one run:

    python -m benchmarks.cache_build --data_dir data --task offline_summarize \\
        --out benchmarks/results/cache_build_cpu

For `--task` (prepared in `--data_dir`; default: offline_summarize, the largest offline task
by text) it builds the cache of `--split` from scratch `--rounds` times with each builder,
alternating, each build in its own process (TensorFlow's threads and caches stay out of the
other's numbers): `cache.py`'s writer in one process, and `beam_cache.py` on the DirectRunner
with `--workers` worker processes (multi_processing) and `--num_shards` input shards. The
time is the builder's call, from a prepared data dir to a finished manifest (Beam's worker
start-up included). Per build: seconds, examples/s, source MB/s, tokens/s; the median ratio
Beam / single process; and an ESTIMATE of C4 on Dataflow from Beam's rate per worker here.
Writes JSON to `--out`.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

C4_DOCS = 365_000_000  # c4/en train documents (TFDS c4/en: about 365M)
C4_BYTES = 750e9  # its text, about 750 GB (Raffel et al. 2020, section 2.2)


def build(builder: str, task: str, split: str, data_dir: str, out_dir: str, workers: int,
          num_shards: int) -> dict:
  """One build in this process; its numbers."""
  from synthesizer_jax.data import beam_cache, cache, tasks

  quiet = {"log": lambda *a: None}
  start = time.perf_counter()
  if builder == "single":
    m = cache.cache_split(task, split, data_dir, out_dir=out_dir, rebuild=True, **quiet)
  else:
    args = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
            f"--direct_num_workers={workers}"]
    m = beam_cache.build([(task, split)], data_dir, out_dir=out_dir, rebuild=True,
                         num_shards=num_shards, beam_args=args, **quiet)[task, split]
  seconds = time.perf_counter() - start
  source = os.path.getsize(tasks.split_file(task, split, data_dir))
  return {"builder": builder, "seconds": seconds, "examples": m["num_examples"],
          "tokens": sum(m["num_tokens"].values()), "source_bytes": source,
          "examples_per_s": m["num_examples"] / seconds, "mb_per_s": source / 1e6 / seconds,
          "tokens_per_s": sum(m["num_tokens"].values()) / seconds}


def _run(builder: str, args) -> dict:
  with tempfile.TemporaryDirectory(prefix="sj-cache-bench-") as out:
    cmd = [sys.executable, "-m", "benchmarks.cache_build", "--worker", builder, "--task",
           args.task, "--split", args.split, "--data_dir", args.data_dir, "--out_dir", out,
           "--workers", str(args.workers), "--num_shards", str(args.num_shards)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get(
        "PYTHONPATH")]))}  # Beam's workers import this checkout first
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  if res.returncode:
    raise RuntimeError(f"{builder} build failed:\n{res.stderr[-3000:]}")
  return json.loads(res.stdout.strip().splitlines()[-1])


def _versions() -> dict:
  from importlib import metadata

  out = {"python": platform.python_version()}
  for pkg in ("apache-beam", "tensorflow", "seqio", "array_record", "protobuf", "pyarrow"):
    try:
      out[pkg] = metadata.version(pkg)
    except metadata.PackageNotFoundError:
      out[pkg] = None
  return out


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def estimate(per_worker: dict, workers: tuple[int, ...]) -> dict:
  """ESTIMATE: hours for C4 on N workers of Beam's rate per worker measured here (by
  documents and by bytes of text), assuming perfect scaling and no shuffle or I/O limit."""
  out = {}
  for n in workers:
    out[str(n)] = {"hours_by_documents": C4_DOCS / (n * per_worker["examples_per_s"]) / 3600,
                   "hours_by_bytes": C4_BYTES / (n * per_worker["mb_per_s"] * 1e6) / 3600}
  return out


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", default="data")
  p.add_argument("--task", default="offline_summarize")
  p.add_argument("--split", default="train")
  p.add_argument("--workers", type=int, default=2, help="Beam's local worker processes")
  p.add_argument("--num_shards", type=int, default=8, help="Beam's input shards")
  p.add_argument("--rounds", type=int, default=2, help="builds per builder, alternating")
  p.add_argument("--out", default=None, help="write PREFIX.json")
  p.add_argument("--out_dir", default=None, help=argparse.SUPPRESS)
  p.add_argument("--worker", choices=("single", "beam"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.workers < 1 or args.rounds < 1 or args.num_shards < 1:
    p.error("--workers, --rounds and --num_shards must be >= 1")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  args.data_dir = os.path.abspath(args.data_dir)
  if args.worker:
    print(json.dumps(build(args.worker, args.task, args.split, args.data_dir, args.out_dir,
                           args.workers, args.num_shards)))
    return 0
  rows, load = [], [os.getloadavg()[0]]  # other work on the machine shares its cores
  for r in range(args.rounds):
    for builder in ("single", "beam") if r % 2 == 0 else ("beam", "single"):
      rows.append({"round": r, **_run(builder, args)})
      print(f"round {r} {builder}: {rows[-1]['seconds']:.1f} s, "
            f"{rows[-1]['examples_per_s']:,.0f} examples/s", flush=True)
      load.append(os.getloadavg()[0])
  med = {b: {k: statistics.median(x[k] for x in rows if x["builder"] == b)
             for k in ("seconds", "examples_per_s", "mb_per_s", "tokens_per_s")}
         for b in ("single", "beam")}
  per_worker = {k: v / args.workers for k, v in med["beam"].items() if k != "seconds"}
  result = {
      "meta": {"date": time.strftime("%Y-%m-%d"), "command": "python -m benchmarks.cache_build "
               + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": _cpu_model(), "cpus": os.cpu_count(), **_versions(),
               "load_average_1min": [round(x, 2) for x in load],
               "task": args.task, "split": args.split, "workers": args.workers,
               "num_shards": args.num_shards, "rounds": args.rounds},
      "rows": rows, "median": med,
      "ratio_beam_over_single": med["beam"]["examples_per_s"] / med["single"]["examples_per_s"],
      "beam_per_worker": per_worker,
      "c4_estimate": {"label": "ESTIMATE, not measured: C4 documents (365M) or text (~750 GB) "
                      "/ (N x Beam's rate per local worker here); assumes Dataflow workers "
                      "as fast as one core here and perfect scaling",
                      "hours_on_n_workers": estimate(per_worker, (10, 100, 500))}}
  if args.out:
    with open(args.out + ".json", "w") as f:
      json.dump(result, f, indent=1)
  print("\n| builder | s | examples/s | MB/s | tokens/s |\n| --- | --- | --- | --- | --- |")
  for b in ("single", "beam"):
    m = med[b]
    print(f"| {b} | {m['seconds']:.1f} | {m['examples_per_s']:,.0f} | {m['mb_per_s']:.2f} | "
          f"{m['tokens_per_s']:,.0f} |")
  print(f"\nBeam / single process: {result['ratio_beam_over_single']:.2f}x "
        f"({args.workers} workers, {args.task}/{args.split})")
  for n, e in result["c4_estimate"]["hours_on_n_workers"].items():
    print(f"ESTIMATE C4 on {n} workers: {e['hours_by_documents']:.1f} h by documents, "
          f"{e['hours_by_bytes']:.1f} h by bytes")
  return 0


if __name__ == "__main__":
  sys.exit(main())
