"""The comparison sweep: every attention kind x task x seed under one budget per task.

    python -m experiments.sweep --tasks diagnostics,lm --kinds all --seeds 3 --size small \
        --out experiments/results/small

Each run trains with `synthesizer_jax.loop.train_and_evaluate` in its own workdir
(`--workroot/<size>/<task>/<kind>/seed<k>`, checkpoints and logs) and appends one JSON
record to `<out>/runs.jsonl`: task, kind, seed, parameter count, budget (steps, batch,
lengths, tokens), the validation metrics, the validation curve, wall time. Runs already in
`runs.jsonl` are skipped, so an interrupted sweep continues where it stopped. Seq2seq tasks
are also scored by beam search on held-out (test split) examples. After the runs,
`experiments.report` writes the tables and plots (`--no-report` skips it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

import numpy as np

from experiments import budgets, diagnostics


def _kinds(spec: str) -> list[str]:
  from synthesizer_jax import attention

  kinds = list(budgets.KINDS) if spec == "all" else [k.strip() for k in spec.split(",") if k]
  for kind in kinds:
    attention.parse_kind(kind)  # ValueError naming the bad kind
  if not kinds:
    raise ValueError("--kinds is empty; e.g. --kinds all or --kinds dot,dense")
  return kinds


def param_count(run_model_fields: dict[str, Any], shape: str, vocab_size: int,
                num_classes: int | None, lengths: dict[str, int]) -> int:
  """Trainable parameters of the model a run builds (no arrays allocated)."""
  import flax.linen as nn
  import jax

  from synthesizer_jax import shapes
  from synthesizer_jax.config import RunConfig, TrainConfig

  cfg = RunConfig.build(run_model_fields, TrainConfig()).model_for(vocab_size)
  model_shape = shapes.get(shape)
  model = model_shape.build(cfg, num_classes)
  inputs = model_shape.dummy_inputs(lengths)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.meta.unbox(abstract["params"]))))


def curves(workdir: str, metric: str) -> dict[str, list]:
  """Validation `metric` (named under "metric"), training loss and training steps/s per logged
  step, from the run's metrics.jsonl (steps/s is what experiments/equal_time.py compares
  kinds' costs by)."""
  path = os.path.join(workdir, "metrics.jsonl")
  val, train, speed = [], [], []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        if row.get("split") == "eval" and metric in row:
          val.append([row["step"], row[metric]])
        elif row.get("split") == "train" and "loss" in row:
          train.append([row["step"], row["loss"]])
          if "steps_per_sec" in row:
            speed.append([row["step"], round(row["steps_per_sec"], 4)])
  return {"metric": metric, "validation": val, "train_loss": train, "steps_per_sec": speed}


def beam_scores(workdir: str, task: budgets.SweepTask, data, data_dir: str, lengths, *,
                examples: int, num_beams: int, batch_size: int = 16) -> dict[str, float]:
  """sacreBLEU / ROUGE of beam-search outputs on the first `examples` test examples."""
  import synthesizer_jax as sj
  from synthesizer_jax import evaluation, loading, metrics

  model, variables, _ = loading.load_checkpoint(workdir)
  vocab = data.get_vocabulary(task.data_task, data_dir)
  batches = data.get_dataset(task.data_task, "test", feature_lengths=lengths,
                             batch_size=batch_size, pack=False, shuffle=False, seed=0,
                             data_dir=data_dir, repeat=False)
  refs, hyps = [], []
  for batch in batches:
    src = batch["encoder_input_tokens"]
    n = src.shape[0]
    src, _ = evaluation.pad_batch({"x": src}, batch_size)
    out = sj.generate(model, variables, np.zeros((batch_size, 1), np.int32),
                      encoder_tokens=src["x"], max_new_tokens=lengths["targets"] - 1,
                      method="beam", num_beams=num_beams)
    tokens = np.asarray(out.tokens)[:n]
    hyps += [evaluation.decode_ids(vocab, row) for row in tokens]
    refs += [evaluation.decode_ids(vocab, row) for row in batch["decoder_target_tokens"][:n]]
    if len(refs) >= examples:
      break
  refs, hyps = refs[:examples], hyps[:examples]
  fn = metrics.bleu if task.metric == "bleu" else metrics.rouge
  scores = fn(refs, hyps)
  return {**scores, "beam_examples": len(refs), "num_beams": num_beams,
          "beam_sample": {"reference": refs[0], "hypothesis": hyps[0]} if refs else {}}


def run_one(task_name: str, kind: str, seed: int, size: str, *, workroot: str, data_dir: str,
            diag_spec: diagnostics.DiagSpec | None = None, progress: bool = False,
            mesh=None, train_override: dict[str, Any] | None = None,
            model_override: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains and evaluates one (task, kind, seed) and returns its record.

  `train_override` replaces TrainConfig fields of the budget (say a longer run); the record
  keeps it under "train_override", and its "steps", "batch_size", "token_budget" follow it.
  `model_override` replaces model fields (say a longer max_len for longer rows), kept under
  "model_override"; "model" and "params" follow it.
  """
  from synthesizer_jax import loop, shapes
  from synthesizer_jax import sharding as shd
  from synthesizer_jax.config import RunConfig, TrainConfig

  task = budgets.TASKS[task_name]
  model_fields, train_fields, extra = budgets.budget(task_name, size)
  model_fields.update(model_override or {})
  model_fields["self_attention"] = kind
  train_fields.update(train_override or {})
  workdir = os.path.join(workroot, size, task_name, kind.replace("+", "_plus_"), f"seed{seed}")
  if task.diagnostic:
    data = diagnostics.DiagnosticData(diag_spec)
    os.makedirs(workdir, exist_ok=True)
    run_data_dir = workdir  # the trainer checks that data_dir exists; nothing is read there
  else:
    from synthesizer_jax import data as data_module

    data, run_data_dir = data_module, data_dir
  cfg = TrainConfig(task=task.data_task, data_dir=run_data_dir, seed=seed,
                    async_checkpoints=False, **train_fields)
  info = data.task_info(task.data_task, run_data_dir)
  vocab = data.get_vocabulary(task.data_task, run_data_dir)
  lengths = shapes.get(info.shape).feature_lengths(cfg)
  start, load_start = time.time(), os.getloadavg()
  result = loop.train_and_evaluate(RunConfig.build(model_fields, cfg, mesh or shd.MeshConfig()),
                                   workdir, data=data, progress=progress)
  train_s = time.time() - start
  if result.get("stopped"):
    raise RuntimeError(f"run {workdir} stopped early at step {result['step']}")
  metrics = dict(result["metrics"])
  record: dict[str, Any] = {
      "task": task_name, "data_task": task.data_task, "kind": kind, "seed": seed, "size": size,
      "params": param_count(model_fields, info.shape, vocab.vocab_size, info.num_classes,
                            lengths),
      "steps": cfg.num_train_steps, "batch_size": cfg.batch_size, "lengths": lengths,
      "token_budget": cfg.num_train_steps * cfg.batch_size * sum(lengths.values()),
      "model": model_fields, "learning_rate": cfg.learning_rate, "metrics": metrics,
      "curve": curves(workdir, task.metric if task.metric in metrics else "loss"),
      "train_eval_s": round(train_s, 1), "workdir": workdir,
      # 1-minute load average of the machine when the run started and ended (2 cores here):
      # how much the wall times can be trusted.
      "load_average": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
  }
  if task.diagnostic:
    record["diag_spec"] = dataclasses.asdict(data.spec)
  if train_override:
    record["train_override"] = dict(train_override)
  if model_override:
    record["model_override"] = dict(model_override)
  if task.decode == "beam":
    t0 = time.time()
    beam = beam_scores(workdir, task, data, run_data_dir, lengths,
                       examples=extra["beam_examples"], num_beams=extra["num_beams"])
    record["metrics"].update({k: v for k, v in beam.items() if k != "beam_sample"})
    record["beam_sample"] = beam["beam_sample"]
    record["beam_s"] = round(time.time() - t0, 1)
  for key in ("sample", "sample_top_p"):
    if key in result:
      record[key] = result[key]
  return record


def done_runs(path: str) -> set[tuple[str, str, int, str]]:
  if not os.path.exists(path):
    return set()
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {(r["task"], r["kind"], r["seed"], r["size"]) for r in rows}


def sweep(tasks: list[str], kinds: list[str], seeds: list[int], size: str, out: str, *,
          workroot: str, data_dir: str, diag_spec=None, progress: bool = False,
          log=print, mesh=None, train_override: dict[str, Any] | None = None,
          model_override: dict[str, Any] | None = None) -> str:
  """Runs every (task, kind, seed) not yet in `<out>/runs.jsonl`; returns that path."""
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, "runs.jsonl")
  done = done_runs(path)
  todo = [(t, k, s) for t in tasks for s in seeds for k in kinds if (t, k, s, size) not in done]
  log(f"sweep: {len(todo)} runs to do ({len(done)} already in {path})")
  for i, (task, kind, seed) in enumerate(todo, 1):
    t0 = time.time()
    record = run_one(task, kind, seed, size, workroot=workroot, data_dir=data_dir,
                     diag_spec=diag_spec, progress=progress, mesh=mesh,
                     train_override=train_override, model_override=model_override)
    record["wall_s"] = round(time.time() - t0, 1)
    # One write() on an O_APPEND descriptor: sweeps running side by side (say one per task)
    # can share one runs.jsonl without interleaving lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
      os.close(fd)
    metric = budgets.TASKS[task].metric
    log(f"[{i}/{len(todo)}] {task} {kind} seed {seed}: {metric} "
        f"{record['metrics'].get(metric, float('nan')):.4g}, {record['params']:,} params, "
        f"{record['wall_s']:.0f} s")
  return path


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--tasks", default="diagnostics",
                 help=f"comma list of {sorted(budgets.TASKS)} or groups {sorted(budgets.GROUPS)}")
  p.add_argument("--kinds", default="all", help=f"'all' = {','.join(budgets.KINDS)}")
  p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
  p.add_argument("--first_seed", type=int, default=0)
  p.add_argument("--size", default="small", choices=budgets.SIZES)
  p.add_argument("--out", default="", help="results folder (default experiments/results/<size>)")
  p.add_argument("--workroot", default="workdirs/experiments",
                 help="run workdirs (checkpoints, logs); not committed")
  p.add_argument("--data_dir", default="data", help="prepared data (real tasks)")
  p.add_argument("--diag_spec", default="{}",
                 help='JSON of DiagSpec fields for the diagnostic tasks, e.g. '
                      '\'{"lookup_len": 16, "lookup_symbols": 32}\'')
  p.add_argument("--train_override", default="{}",
                 help='JSON of TrainConfig fields replacing the budget\'s, e.g. '
                      '\'{"num_train_steps": 12000}\'; use its own --out and --workroot, since '
                      'runs.jsonl keys runs by task, kind, seed and size only')
  p.add_argument("--model_override", default="{}",
                 help='JSON of ModelConfig fields replacing the budget\'s (not '
                      'self_attention: that is --kinds), e.g. \'{"max_len": 48}\'; own --out '
                      'and --workroot, as for --train_override')
  p.add_argument("--progress", action="store_true", help="progress bar per run")
  p.add_argument("--no-report", dest="report", action="store_false")
  args = p.parse_args(argv)
  tasks = budgets.expand_tasks(args.tasks)
  kinds = _kinds(args.kinds)
  if args.seeds < 1:
    p.error("--seeds must be >= 1")
  out = args.out or os.path.join("experiments", "results", args.size)
  seeds = list(range(args.first_seed, args.first_seed + args.seeds))
  diag_spec = diagnostics.DiagSpec(**{**budgets.diag_spec(args.size),
                                      **json.loads(args.diag_spec)})
  train_override = json.loads(args.train_override)
  model_override = json.loads(args.model_override)
  from synthesizer_jax.config import ModelConfig, TrainConfig

  unknown = sorted(set(train_override) - {f.name for f in dataclasses.fields(TrainConfig)})
  if unknown:
    p.error(f"--train_override: {unknown} are not TrainConfig fields")
  model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"self_attention"}
  unknown = sorted(set(model_override) - model_fields)
  if unknown:
    p.error(f"--model_override: {unknown} are not ModelConfig fields (the kind is --kinds)")
  path = sweep(tasks, kinds, seeds, args.size, out, workroot=args.workroot,
               data_dir=args.data_dir, diag_spec=diag_spec, progress=args.progress,
               train_override=train_override, model_override=model_override,
               log=lambda *a: print(*a, flush=True))
  if args.report:
    from experiments import report

    report.write_report(out, workroot=args.workroot, size=args.size)
  print(f"runs: {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
