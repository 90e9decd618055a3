"""Pre-flight smoke check: the real training loop, small, on the machine you are about to trust.

    python -m synthesizer_jax.smoke                 # or: make smoke
    python -m synthesizer_jax.smoke --size cpu --workdir gs://BUCKET/smoke --data_dir data

For every model shape (a cached real task each: offline_lm_prose, offline_translate_en_de,
offline_classify, read by Grain without TensorFlow) and each attention kind of `--kinds`, it
runs `loop.train_and_evaluate` and asserts:
- loss falls: by the size's stated margin at its step count (`SIZES`; the classifier: its
  validation loss below the entropy of the label prior by the margin, which no model that
  ignores its input can reach);
- eval finite: the final evaluation's metrics are finite;
- agree IMPL: each attention implementation the platform offers (auto, blockwise; cudnn and
  pallas on a GPU, pallas on a TPU) gives the materialized outputs on the trained parameters,
  on a packed batch (smoke_checks.AGREE_TOL: 1e-4 in float32, 5e-2 in bfloat16);
and once per shape (the first kind): resume (stopped halfway with a checkpoint, restored,
resumed == uninterrupted: the final parameters within smoke_checks.RESUME_TOL) and generate
(greedy generation with the decode cache == the full forward pass's argmax). Accelerators
train in bfloat16, a CPU in float32. It prints one table (check x shape x kind: pass / FAIL /
n/a and the figure) and exits 1 on any failure, 2 when it cannot start (no data).

Sizes (`--size`, default from jax.default_backend()): "gpu" (under 2 minutes on one GPU),
"cpu" (a few minutes on 2 cores), "tiny" (seconds per run, for the tests; margins to match).
Runs go under `--workdir` (a directory or gs:// URL; default a temporary directory, removed
after) in a fresh `smoke_<time>` folder, so a rerun never resumes an old run. A missing
cache is built when TensorFlow and seqio are installed (`data.prepare` + `data.cache_task`),
else the error names the command that builds it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time

import jax

from synthesizer_jax import paths, shapes
from synthesizer_jax import smoke_checks as checks
from synthesizer_jax.attention import parse_kind
from synthesizer_jax.config import MeshConfig, RunConfig
from synthesizer_jax.smoke_checks import Result, Size

SIZES = {  # margins calibrated on offline tasks (README table): see Size and `loss_falls`
    "tiny": Size(model=dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1),
                 length=16, learning_rate=1e-2, batch={"lm": 8, "encdec": 8, "classifier": 32},
                 steps={"lm": 16, "encdec": 16, "classifier": 40},
                 margins={"lm": 0.3, "encdec": 0.3, "classifier": 0.05}),
    "cpu": Size(model=dict(d_model=32, num_heads=2, head_dim=16, mlp_dim=64, num_layers=2),
                length=64, learning_rate=1e-2, batch={"lm": 8, "encdec": 8, "classifier": 64},
                steps={"lm": 40, "encdec": 40, "classifier": 120},
                margins={"lm": 1.0, "encdec": 1.0, "classifier": 0.04}),
    # Not yet timed or calibrated on a GPU: the CPU size's margins, at more tokens per step.
    "gpu": Size(model=dict(d_model=128, num_heads=4, head_dim=32, mlp_dim=512, num_layers=2),
                length=128, learning_rate=3e-3, batch={"lm": 32, "encdec": 32, "classifier": 64},
                steps={"lm": 100, "encdec": 100, "classifier": 120},
                margins={"lm": 1.0, "encdec": 1.0, "classifier": 0.04}),
}
KINDS = ("dot", "dense", "random", "random+dot")
#: Fused implementations per platform (jax.default_backend()); "materialized" is the reference.
IMPLS = {"cpu": ("auto", "blockwise"), "gpu": ("auto", "blockwise", "cudnn", "pallas"),
         "tpu": ("auto", "blockwise", "pallas")}
GENERATE = dict(new_tokens=6, prompt_len=4)


def run_shape(shape: str, kinds, size: Size, steps: int | None, lr: float, dtype: str,
              data_dir: str, root: str, platform: str, say, ocdbt: bool = True) -> list[Result]:
  """Every check of one model shape; `say(result)` is called as each row is known."""
  task = checks.TASKS[shape]
  cfg = checks.train_config(size, task, data_dir, size.batch[shape], steps or size.steps[shape],
                            lr, ocdbt)
  lengths = shapes.get(shape).feature_lengths(cfg)
  prior = None
  try:
    if "targets" in shapes.get(shape).batch_features:  # class labels: judged by their prior
      prior = checks.label_entropy(task, data_dir, size.length, cfg.batch_size, cfg.eval_batches)
    batch = checks.batch_for(task, data_dir, lengths, min(cfg.batch_size, 16))
    eval_batch = checks.batch_for(task, data_dir, lengths, 2, split="validation", pack=False)
  except Exception as err:  # noqa: BLE001 - the cache cannot be read: one failed row
    failed = Result("read data", shape, "all", False, f"{type(err).__name__}: {str(err)[:300]}")
    say(failed)
    return [failed]
  out: list[Result] = []

  def add(rows):
    for r in rows:
      out.append(r)
      say(r)

  for i, kind in enumerate(kinds):
    run_cfg = RunConfig.build(checks.model_fields(size, kind, dtype), cfg,
                              MeshConfig(num_devices=1))
    where = f"{root}/{shape}/{kind.replace('+', '_plus_')}"
    results = {}

    def whole(run_cfg=run_cfg, where=where, results=results, kind=kind):
      results.update(checks.train(run_cfg, where))
      losses = checks.train_losses(where)
      eval_loss = results["metrics"].get("loss", float("nan"))
      return [checks.loss_falls(shape, kind, losses, eval_loss, size.margins[shape], prior),
              checks.evaluation(shape, kind, results)]

    add(checks.guarded("loss falls", shape, kind, whole))
    if not results:
      continue  # the run itself failed: nothing trained to check further
    loaded = []  # the trained run, restored once for the agreement and generation checks

    def restore(where=where, loaded=loaded):
      loaded.append(checks.load_checkpoint(where))
      return []  # no row of its own unless it fails

    add(checks.guarded("restore", shape, kind, restore))
    if not loaded:
      continue
    add(checks.guarded("agree", shape, kind, lambda k=kind, run=loaded[0]: checks.agreement(
        run, shape, k, batch, IMPLS.get(platform, ("auto", "blockwise")), platform)))
    if i == 0:
      add(checks.guarded("resume", shape, kind, lambda w=where, r=run_cfg, k=kind: checks.resume(
          shape, k, w, f"{w}_resumed", r, platform)))
      add(checks.guarded("generate", shape, kind, lambda k=kind, b=eval_batch, run=loaded[0]:
                         checks.generation(run, shape, k, b, **GENERATE)))
  return out


def table(results: list[Result]) -> str:
  """One markdown table: check x shape x kind, pass / FAIL / n/a, the figure."""
  lines = ["| check | shape | kind | result | figure |", "| --- | --- | --- | --- | --- |"]
  for r in results:
    verdict = "n/a" if r.ok is None else ("pass" if r.ok else "FAIL")
    lines.append(f"| {r.check} | {r.shape} | {r.kind} | {verdict} | {r.figure} |")
  return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--size", choices=sorted(SIZES),
                 help="default: gpu on an accelerator, cpu on a CPU (jax.default_backend())")
  p.add_argument("--steps", type=int, help="training steps per run (default: the size's)")
  p.add_argument("--learning_rate", type=float, help="default: the size's")
  p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated attention kinds")
  p.add_argument("--shapes", default=",".join(checks.TASKS), help="comma-separated model shapes")
  p.add_argument("--dtype", choices=("float32", "bfloat16"),
                 help="default: bfloat16 on an accelerator, float32 on a CPU")
  p.add_argument("--data_dir", default="data", help="holds the tasks' caches (or gs://...)")
  p.add_argument("--workdir", default=None,
                 help="runs go to WORKDIR/smoke_<time> (a directory or gs:// URL, kept); "
                      "default: a temporary directory, removed at the end")
  p.add_argument("--no_ocdbt", action="store_true",
                 help="save checkpoints one zarr array per leaf (TrainConfig.checkpoint_ocdbt="
                      "False): for a store whose API omits generation headers (docs/scaling.md)")
  args = p.parse_args(argv)
  args.shapes = args.shapes.split(",")
  bad = [s for s in args.shapes if s not in checks.TASKS]
  if bad:
    p.error(f"--shapes: unknown {bad}; choose from {list(checks.TASKS)}")
  args.kinds = args.kinds.split(",")
  for kind in args.kinds:
    try:
      parse_kind(kind)
    except ValueError as err:
      p.error(f"--kinds: {err}")
  if args.steps is not None and args.steps < 2:
    p.error("--steps must be >= 2 (the resume check stops halfway)")
  if args.learning_rate is not None and not args.learning_rate > 0:  # NaN included
    p.error(f"--learning_rate must be > 0, got {args.learning_rate}")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  platform = jax.default_backend()
  size_name = args.size or ("cpu" if platform == "cpu" else "gpu")
  size = SIZES[size_name]
  steps = args.steps
  lr = size.learning_rate if args.learning_rate is None else args.learning_rate
  dtype = args.dtype or ("float32" if platform == "cpu" else "bfloat16")
  try:
    for shape in args.shapes:
      checks.ensure_cache(checks.TASKS[shape], args.data_dir)
  except checks.SmokeError as err:
    print(f"smoke: cannot start: {err}", file=sys.stderr)
    return 2
  temp = None if args.workdir else tempfile.mkdtemp(prefix="sj_smoke_")
  root = f"{args.workdir or temp}".rstrip("/") + f"/smoke_{time.strftime('%Y%m%d_%H%M%S')}"
  print(f"smoke: {jax.devices()[0].device_kind} ({platform}), size {size_name}, {dtype}, "
        "steps " + ", ".join(f"{s} {steps or size.steps[s]}" for s in args.shapes)
        + f", kinds {','.join(args.kinds)}, runs in {root}", flush=True)
  start, results = time.time(), []

  def say(r: Result):
    verdict = "n/a " if r.ok is None else ("pass" if r.ok else "FAIL")
    print(f"  {verdict} {r.check:<16} {r.shape:<10} {r.kind:<11} {r.figure}"
          f"  [{time.time() - start:.0f} s]", flush=True)

  try:
    try:
      paths.prepare_dir(root)
    except OSError as err:  # a file in the way, a bucket that does not exist
      print(f"smoke: cannot start: {err}", file=sys.stderr)
      return 2
    for shape in args.shapes:
      results += run_shape(shape, args.kinds, size, steps, lr, dtype, args.data_dir, root,
                           platform, say, ocdbt=not args.no_ocdbt)
  finally:
    if temp:
      shutil.rmtree(temp, ignore_errors=True)
  failed = [r for r in results if r.ok is False]
  print("\n" + table(results))
  print(f"\nsmoke: {len(results) - len(failed)} of {len(results)} checks pass or n/a, "
        f"{len(failed)} FAIL, in {time.time() - start:.0f} s ({size_name} size on {platform})")
  return 1 if failed or not results else 0


if __name__ == "__main__":
  sys.exit(main())
