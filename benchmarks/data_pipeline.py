"""Grain over the task cache vs seqio over tf.data, side by side: `python -m
benchmarks.data_pipeline --data_dir data --out benchmarks/results/data_pipeline_cpu`.

For each task of `--tasks` (default: one per model shape; any task of the registry, read at
its shape's lengths, `SHAPE_LENGTHS`), prepared and cached in `--data_dir` (`python -m
synthesizer_jax.data.prepare --tasks T --cache`), it reads the training split as training
does: packed where the shape packs, shuffled, repeated, local batch `--batch_size`. Per
task and pipeline:
- batches/s: `--batches` batches after the first;
- CPU s per batch: the process's user + system CPU time (every thread) per batch while
  draining, which is what the pipeline takes from the host that also runs the training step;
- first batch (s) at each `--starts` value of `start_batch` (a resumed run). seqio reads and
  drops `start_batch` batches; Grain computes batch k from k. seqio is run only up to
  `--seqio_max_start` (its time grows linearly; the table says so instead of waiting).
Each (task, pipeline) runs in its own process, so TensorFlow's threads stay out of Grain's
numbers. Writes JSON to `--out`.json and prints a markdown table.

`--verify_cost` measures instead what the Grain reader's checks cost (issue 32), in one
process per task: examples/s of the same training read with each record's header checked
against lengths.npy and without (`get_cached_dataset(verify=False)`), in alternating
rounds (median of `--rounds`), and the time `records.open_split` takes to open the split
with every open-time check (manifest, stale cache, lengths.npy's sha256), of which the
stale-cache check (hashing the vocabulary and the corpus file) alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

#: Feature lengths by the task's model shape; a feature not listed (a shape added later) reads
#: at DEFAULT_LENGTH. Every task of the registry has one (`lengths`).
SHAPE_LENGTHS = {"lm": {"targets": 256}, "encdec": {"inputs": 128, "targets": 128},
                 "classifier": {"inputs": 256}}
DEFAULT_LENGTH = 128
DEFAULT_TASKS = ("offline_lm", "offline_translate_en_de", "offline_classify")
PIPELINES = ("grain", "seqio")


def lengths(task: str) -> dict[str, int]:
  """The feature lengths `task` is read with: each of its task features (the registry's
  `feature_keys`) at its shape's length. DataError naming the known tasks for an unknown one."""
  from synthesizer_jax import data

  info = data.task_info(task)
  return {k: SHAPE_LENGTHS.get(info.shape, {}).get(k, DEFAULT_LENGTH) for k in info.feature_keys}


def _cpu() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def worker(task: str, pipeline: str, data_dir: str, batch_size: int, batches: int,
           starts: list[int]) -> dict:
  """Measures one pipeline on one task in this process."""
  from synthesizer_jax import data

  get = data.get_cached_dataset if pipeline == "grain" else data.get_dataset
  kw = {"feature_lengths": lengths(task), "batch_size": batch_size, "pack": True,
        "shuffle": True, "seed": 0, "data_dir": data_dir, "repeat": True}
  out = {"task": task, "pipeline": pipeline, "resume_s": {}}
  for start in starts:
    t = time.perf_counter()
    next(get(task, "train", start_batch=start, **kw))
    out["resume_s"][str(start)] = time.perf_counter() - t
  it = get(task, "train", **kw)
  next(it)
  t, c = time.perf_counter(), _cpu()
  for _ in range(batches):
    next(it)
  wall, cpu = time.perf_counter() - t, _cpu() - c
  out.update(batches_per_s=batches / wall, cpu_s_per_batch=cpu / batches)
  return out


def _examples(batch: dict) -> int:
  """Examples (packed segments, or rows) in a batch."""
  seg = batch.get("decoder_segment_ids", batch.get("encoder_segment_ids"))
  if seg is not None:
    return int(seg.max(axis=1).sum())
  return len(next(iter(batch.values())))


def verify_cost(task: str, data_dir: str, batch_size: int, batches: int, rounds: int) -> dict:
  """examples/s with and without the per-record check, and the open-time checks' seconds."""
  from synthesizer_jax import data
  from synthesizer_jax.data import records

  kw = {"feature_lengths": lengths(task), "batch_size": batch_size, "pack": True,
        "shuffle": True, "seed": 0, "data_dir": data_dir, "repeat": True}
  rates = {"checked": [], "unchecked": []}
  for i in range(rounds):
    for mode in sorted(rates, reverse=i % 2 == 1):  # alternate which goes first
      it = data.get_cached_dataset(task, "train", verify=mode == "checked", **kw)
      next(it)
      t, n = time.perf_counter(), 0
      for _ in range(batches):
        n += _examples(next(it))
      rates[mode].append(n / (time.perf_counter() - t))
      it.close()
  t = time.perf_counter()
  manifest, _, _ = records.open_split(task, "train", data_dir)
  opened = time.perf_counter() - t
  t = time.perf_counter()
  records.check_fresh(manifest, task, "train", data_dir)
  fresh = time.perf_counter() - t
  med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
  return {"task": task, "examples_per_s": med, "rounds": rates,
          "ratio": med["checked"] / med["unchecked"], "open_split_s": opened,
          "stale_check_s": fresh, "num_examples": manifest["num_examples"]}


def verify_table(rows: list[dict]) -> str:
  lines = ["| task | examples/s, checked | unchecked | ratio | open_split (s) | of it, stale "
           "check (s) |", "|" + " --- |" * 6]
  for r in rows:
    e = r["examples_per_s"]
    lines.append(f"| {r['task']} | {e['checked']:,.0f} | {e['unchecked']:,.0f} | "
                 f"{r['ratio']:.3f} | {r['open_split_s']:.3f} | {r['stale_check_s']:.3f} |")
  return "\n".join(lines)


def _run(args, task: str, pipeline: str) -> dict:
  starts = [s for s in args.starts if pipeline == "grain" or s <= args.seqio_max_start]
  cmd = [sys.executable, "-m", "benchmarks.data_pipeline", "--worker", task, pipeline,
         "--data_dir", args.data_dir, "--batch_size", str(args.batch_size),
         "--batches", str(args.batches), "--starts", ",".join(map(str, starts)),
         "--rounds", str(args.rounds)] + (["--verify_cost"] if args.verify_cost else [])
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
  if res.returncode:
    raise RuntimeError(f"{task} {pipeline} failed:\n{res.stderr[-3000:]}")
  return json.loads(res.stdout.strip().splitlines()[-1])


def table(rows: list[dict], starts: list[int]) -> str:
  head = ("| task | pipeline | batches/s | CPU s per batch | "
          + " | ".join(f"first batch at {s:,} (s)" for s in starts) + " |")
  lines = [head, "|" + " --- |" * (4 + len(starts))]
  for r in rows:
    cells = [f"{r['resume_s'][str(s)]:.2f}" if str(s) in r["resume_s"] else "not run"
             for s in starts]
    lines.append(f"| {r['task']} | {r['pipeline']} | {r['batches_per_s']:.1f} | "
                 f"{r['cpu_s_per_batch']:.3f} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
  """The arguments; `tasks` a list of registry tasks, `lengths` {task: feature lengths}. An
  unknown task is refused here, naming the known ones."""
  from synthesizer_jax import data

  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", default="data")
  p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                 help="comma-separated tasks of synthesizer_jax.data.TASKS (prepared and cached)")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--batches", type=int, default=100)
  p.add_argument("--starts", default="10,1000,100000")
  p.add_argument("--seqio_max_start", type=int, default=1000)
  p.add_argument("--out", default=None, help="write OUT.json")
  p.add_argument("--verify_cost", action="store_true",
                 help="measure the Grain reader's checks instead (see the docstring)")
  p.add_argument("--rounds", type=int, default=5, help="--verify_cost: alternating rounds")
  p.add_argument("--worker", nargs=2, metavar=("TASK", "PIPELINE"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  args.starts = [int(s) for s in args.starts.split(",") if s]
  args.tasks = [t for t in args.tasks.split(",") if t]
  unknown = [t for t in args.tasks + ([args.worker[0]] if args.worker else [])
             if t not in data.TASKS]
  if not args.tasks:
    p.error("--tasks is empty; e.g. --tasks offline_lm_prose")
  if unknown:
    p.error(f"--tasks: unknown task(s) {unknown}; the registry has: {', '.join(data.TASKS)}")
  args.lengths = {t: lengths(t) for t in args.tasks}
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.worker and args.verify_cost:
    print(json.dumps(verify_cost(args.worker[0], args.data_dir, args.batch_size, args.batches,
                                 args.rounds)))
    return 0
  if args.worker:
    print(json.dumps(worker(*args.worker, args.data_dir, args.batch_size, args.batches,
                            args.starts)))
    return 0
  pipes = ("grain",) if args.verify_cost else PIPELINES
  rows = [_run(args, task, pipe) for task in args.tasks for pipe in pipes]
  import jax

  meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
          "cpus": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
          "batch_size": args.batch_size, "batches": args.batches, "lengths": args.lengths}
  print(verify_table(rows) if args.verify_cost else table(rows, args.starts))
  if args.out:
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
      json.dump({"meta": meta, "rows": rows}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
