"""Issue 29's experiment: the paper's section 4.4 recipe (T5's) at CPU scale.

For each attention kind and seed, three runs of train.py in their own workdirs
(`--workroot/<stage>/<kind>/seed<k>`):
  pretrain  configs/offline_prose_span_corruption.py (span corruption on the offline prose)
  finetune  configs/offline_t5_finetune.py from that checkpoint (the offline text-to-text mixture)
  scratch   the same fine-tuning from a random initialisation, same seed, same data order

    python -m synthesizer_jax.data.prepare --data_dir data \
        --tasks offline_prose_span_corruption offline_t5_finetune --cache
    python -m experiments.recipe run --kinds dot,random+dot,dense+dot,dense,random --seeds 3 \
        --out experiments/results/recipe29 --workroot workdirs/recipe29 --workers 2
    python -m experiments.recipe report --out experiments/results/recipe29

`run` pins each worker to one core (taskset) of the cores it may use, so two `run`s under
`taskset -c 0` and `taskset -c 1` (say pre-training and scratch fine-tuning) share none;
each claims a run before it starts (`<workdir>.claim`, its pid), so both can work through
one list without running a run twice. It appends one record a run to `<out>/runs.jsonl`
(stage, kind, seed, steps, the pre-training steps a fine-tuning started from, the final
validation metrics, the validation curve, the training loss curve, wall time); runs already
there are skipped, so an interrupted run continues. Every pre-training runs before any
fine-tuning (`--stages pretrain` runs only those). `--pretrain_steps` past a recorded budget
extends the same workdirs: the rsqrt schedule does not depend on the total and the data
resumes at the next batch, so 1,000 then 2,000 steps equal 2,000 at once. `report`
(experiments/recipe_report.py) prints the tables of docs/results.md. `record --workdir W`
adds a pre-training run launched by hand (the pilot's learning rates) as a record of stage
"pilot".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time

from experiments import recipe_report, sweep
from experiments.recipe_report import load
from synthesizer_jax import workdir_lock

KINDS = ("dot", "random+dot", "dense+dot", "dense", "random")
# The pre-training's learning rate (6e-3, rsqrt after 100 warmup steps) and dropout (0) are
# configs/offline_prose_span_corruption.py's: the best of the pilot in docs/results.md.
PRETRAIN = {"num_train_steps": 2000, "warmup_steps": 100, "eval_every": 500,
            "checkpoint_every": 1000}
# 1,000 steps: where the fine-tuning pilot from scratch had begun to learn every member (its
# mean member NLL falling about 0.08 per 250 steps, 0.12-0.15 behind the pre-trained run's
# from there to 2,000); the members' metrics from 64 decoded rows each, at the end only
# (docs/results.md).
FINETUNE = {"num_train_steps": 1000, "warmup_steps": 50, "eval_every": 1000,
            "checkpoint_every": 1000, "predict_batches": 4}
CONFIGS = {"pretrain": "configs/offline_prose_span_corruption.py",
           "finetune": "configs/offline_t5_finetune.py",
           "scratch": "configs/offline_t5_finetune.py"}


def workdir(workroot: str, stage: str, kind: str, seed: int, pretrain_steps: int = 0) -> str:
  """A run's workdir; a fine-tuning's names the pre-training budget it started from."""
  suffix = f"_from{pretrain_steps}" if stage == "finetune" else ""
  return os.path.join(workroot, stage, kind.replace("+", "_"), f"seed{seed}{suffix}")


def command(stage: str, kind: str, seed: int, workroot: str, data_dir: str,
            pretrain_steps: int) -> list[str]:
  """train.py's argv for one run (python and train.py included)."""
  budget = dict(PRETRAIN, num_train_steps=pretrain_steps) if stage == "pretrain" else FINETUNE
  fields = dict(budget, seed=seed, data_dir=data_dir)
  argv = [sys.executable, "train.py", "--config", CONFIGS[stage],
          "--workdir", workdir(workroot, stage, kind, seed, pretrain_steps),
          f"--config.model.self_attention={kind}"]
  argv += [f"--config.{k}={v}" for k, v in fields.items()]
  if stage == "finetune":
    source = os.path.join(workdir(workroot, "pretrain", kind, seed), "checkpoints",
                          str(pretrain_steps))
    argv.append(f"--config.init_from={source}")
  elif stage == "scratch":
    argv.append("--config.init_from=")
  return argv


def record(stage: str, kind: str, seed: int, wdir: str, wall_s: float,
           pretrain_steps: int) -> dict:
  """The run's record from its workdir (eval_results.json, metrics.jsonl); a run stopped
  before its end (a pilot) has no eval_results.json, and its last evaluation stands in."""
  curve, train = [], []
  with open(os.path.join(wdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if row.get("split") == "eval":
        curve.append({k: v for k, v in row.items() if k not in ("split", "time")})
      elif row.get("split") == "train":
        train.append([row["step"], row["loss"]])
  results = os.path.join(wdir, "eval_results.json")
  if os.path.exists(results):
    with open(results) as f:
      final = json.load(f)
  else:
    final = {"step": curve[-1]["step"], "metrics": curve[-1]}
  return {"stage": stage, "kind": kind, "seed": seed, "steps": final["step"],
          "pretrain_steps": pretrain_steps,
          "final": final["metrics"], "curve": curve, "train_loss": train,
          "wall_s": round(wall_s, 1)}


def key(r: dict) -> tuple:
  """What makes runs the same: stage, kind, seed and the pre-training budget (0: none)."""
  return r["stage"], r["kind"], r["seed"], r["pretrain_steps"]


def fill_spans(out: str, workroot: str, data_dir: str) -> None:
  """Adds `span` (recipe_report.span_accuracy) to every pre-training record without one,
  from the checkpoint of its step (kept in its workdir: keep_checkpoints=3)."""
  runs = load(out)
  for r in runs:
    if r["stage"] == "pretrain" and "span" not in r:
      wdir = workdir(workroot, "pretrain", r["kind"], r["seed"])
      r["span"] = recipe_report.span_accuracy(wdir, data_dir, r["steps"])
      print(r["kind"], r["seed"], r["steps"], r["span"], flush=True)
  with open(os.path.join(out, "runs.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in runs)


def record_pilot(wdir: str, out: str, data_dir: str) -> dict:
  """A run launched by hand (train.py) as a record of `<out>/runs.jsonl`: its settings from
  config.json and its curve; a pre-training's (stage "pilot") also span_accuracy at its last
  checkpoint, a fine-tuning's (stage "finetune_pilot") the checkpoint it started from."""
  with open(os.path.join(wdir, "config.json")) as f:
    cfg = json.load(f)
  stage = "pilot" if cfg["task"] == "offline_prose_span_corruption" else "finetune_pilot"
  rec = record(stage, cfg["model"]["self_attention"], cfg["train"]["seed"], wdir, 0.0, 0)
  rec["settings"] = {k: cfg["train"][k] for k in ("learning_rate", "warmup_steps", "decay",
                                                   "batch_size", "num_train_steps",
                                                   "init_from")}
  rec["settings"]["dropout_rate"] = cfg["model"]["dropout_rate"]
  rec["workdir"] = wdir
  if stage == "pilot":
    saved = [int(d) for d in os.listdir(os.path.join(wdir, "checkpoints")) if d.isdigit()]
    rec["span_step"] = max(d for d in saved if d <= rec["steps"])
    rec["span"] = recipe_report.span_accuracy(wdir, data_dir, rec["span_step"])
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "runs.jsonl"), "a") as f:
    f.write(json.dumps(rec) + "\n")
  return rec


def claim(wdir: str) -> str | None:
  """Claims a run for this driver (`<wdir>.claim` holds its pid), so that two drivers, one a
  core, can share one list of runs; None when a live driver holds it. A claim left by a
  driver that has died is taken over."""
  path = wdir + ".claim"
  os.makedirs(os.path.dirname(path), exist_ok=True)
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      try:
        with open(path) as f:
          pid = int(f.read() or 0)
      except (FileNotFoundError, ValueError):
        pid = 0
      if pid and workdir_lock._alive(pid):
        return None
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)  # its driver is gone
      continue
    with os.fdopen(fd, "w") as f:
      f.write(str(os.getpid()))
    return path
  return None


class Runner:
  """Runs (stage, kind, seed) jobs, one core each."""

  def __init__(self, out: str, workroot: str, data_dir: str, workers: int,
               pretrain_steps: int):
    self.out, self.workroot, self.data_dir = out, workroot, data_dir
    self.pretrain_steps = pretrain_steps
    self.done = {key(r) for r in load(out)}
    self.cores: queue.Queue[int] = queue.Queue()
    allowed = sorted(os.sched_getaffinity(0))  # `taskset -c 1 python -m ...` keeps to core 1
    for i in range(workers):
      self.cores.put(allowed[i % len(allowed)])
    self.lock = threading.Lock()
    os.makedirs(out, exist_ok=True)

  def budget(self, stage: str) -> int:
    return 0 if stage == "scratch" else self.pretrain_steps

  def _is_done(self, stage: str, kind: str, seed: int) -> bool:
    with self.lock:  # another driver may have recorded it since
      self.done |= {key(r) for r in load(self.out)}
      return (stage, kind, seed, self.budget(stage)) in self.done

  def stage(self, stage: str, kind: str, seed: int) -> None:
    if self._is_done(stage, kind, seed):
      return
    if stage != "pretrain" and ("pretrain", kind, seed, self.pretrain_steps) not in self.done:
      raise RuntimeError(f"{stage} {kind} seed {seed}: no pre-training of "
                         f"{self.pretrain_steps} steps recorded; run --stages pretrain first")
    core = self.cores.get()
    try:
      held = claim(workdir(self.workroot, stage, kind, seed, self.pretrain_steps))
      if held is None:
        print(f"{stage:9s} {kind:11s} seed {seed}: another driver is running it", flush=True)
        return
      try:
        if not self._is_done(stage, kind, seed):  # recorded between the check and the claim
          self._run(stage, kind, seed, core)
      finally:
        os.remove(held)
    finally:
      self.cores.put(core)

  def _run(self, stage: str, kind: str, seed: int, core: int) -> None:
    wdir = workdir(self.workroot, stage, kind, seed, self.pretrain_steps)
    log = wdir + ".log"
    os.makedirs(os.path.dirname(log), exist_ok=True)
    start = time.time()
    argv = ["taskset", "-c", str(core)] + command(stage, kind, seed, self.workroot,
                                                   self.data_dir, self.pretrain_steps)
    with open(log, "a") as f:
      rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
      raise RuntimeError(f"{stage} {kind} seed {seed} failed (rc {rc}); see {log}")
    rec = record(stage, kind, seed, wdir, time.time() - start, self.budget(stage))
    if stage == "pretrain":
      rec["span"] = recipe_report.span_accuracy(wdir, self.data_dir, rec["steps"])
    with self.lock, open(os.path.join(self.out, "runs.jsonl"), "a") as f:
      f.write(json.dumps(rec) + "\n")
    self.done.add(key(rec))
    print(f"{stage:9s} {kind:11s} seed {seed} ({rec['steps']} steps): loss "
          f"{rec['final']['loss']:.4f} ({rec['wall_s']:.0f} s)", flush=True)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("action", choices=["run", "spans", "report", "record"])
  p.add_argument("--workdir", help="record: a pre-training workdir run by hand (a pilot)")
  p.add_argument("--kinds", default=",".join(KINDS))
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--out", default="experiments/results/recipe29")
  p.add_argument("--workroot", default="workdirs/recipe29")
  p.add_argument("--data_dir", default="data")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--stages", default="pretrain,finetune,scratch")
  p.add_argument("--pretrain_steps", type=int, default=None,
                 help=f"run: default {PRETRAIN['num_train_steps']}; report: the largest recorded")
  args = p.parse_args(argv)
  for name in ("seeds", "workers", "pretrain_steps"):
    value = getattr(args, name)
    if value is not None and value < 1:
      p.error(f"--{name} must be at least 1, not {value}")
  stages = args.stages.split(",")
  if not stages or set(stages) - set(CONFIGS):
    p.error(f"--stages {args.stages!r}: a comma list of {', '.join(CONFIGS)}")
  kinds = sweep._kinds(args.kinds)  # ValueError naming an unknown kind
  if args.action == "report":
    budget = [] if args.pretrain_steps is None else ["--pretrain_steps", str(args.pretrain_steps)]
    return recipe_report.main(["report", "--out", args.out, *budget])
  if args.action == "spans":
    fill_spans(args.out, args.workroot, args.data_dir)
    return 0
  if args.action == "record":
    rec = record_pilot(args.workdir, args.out, args.data_dir)
    print(rec.get("span", rec["final"]))
    return 0
  runner = Runner(args.out, args.workroot, args.data_dir, args.workers,
                  args.pretrain_steps or PRETRAIN["num_train_steps"])
  units = [(k, s) for s in range(args.seeds) for k in kinds]
  for phase in [["pretrain"], [s for s in stages if s != "pretrain"]]:
    jobs = [(st, k, s) for k, s in units for st in phase if st in stages]
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
      for fut in [pool.submit(runner.stage, *job) for job in jobs]:
        fut.result()
  return 0


if __name__ == "__main__":
  sys.exit(main())
