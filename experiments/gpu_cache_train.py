"""Real tasks on an accelerator host without TensorFlow: `base`-size models trained from the
task cache (Grain), each for a wall-clock budget, then evaluated.

    # here (TensorFlow and seqio installed): build the caches the device will read
    python -m synthesizer_jax.data.prepare --data_dir data \
        --tasks offline_lm offline_translate_en_de --cache
    # on the device (carry data/records/<task>, data/vocab and the grain wheels, see
    # experiments/gpu_cache_train.sh):
    python -m experiments.gpu_cache_train --data_dir data --out $OUT --seconds 150

Per (task, kind) it trains with `data_pipeline="grain"` until `--seconds` have passed (then
a thread sends the process SIGTERM, once the loop's handler is in place, and the loop treats
it as a preemption: it saves the step and returns), evaluates the checkpoint on the
validation split and appends one JSON line to `OUT/cache_train.jsonl`: task, kind, steps,
tokens/s (compilation included), metrics, whether TensorFlow or seqio were imported (they
must not be). Needs no ml_collections (no train.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

SIZES = {"base": dict(d_model=512, num_heads=8, head_dim=64, mlp_dim=2048, num_layers=6,
                      dropout_rate=0.1),
         "tiny": dict(d_model=32, num_heads=2, head_dim=16, mlp_dim=64, num_layers=1,
                      dropout_rate=0.0)}  # tiny: a seconds-long check of this script
#: What `--size tiny` also shrinks, so that the check is seconds long end to end: the batch,
#: the lengths and the evaluation (at the task's own lengths, its 20 evaluation batches of
#: 64 x 256 tokens, twice, outweigh a 3-second training budget).
TINY_RUN = dict(model=dict(max_len=32), train=dict(batch_size=8, targets_length=32,
                                                  inputs_length=32, eval_batches=2))
TASKS = {
    "offline_lm": dict(model=dict(max_len=256), train=dict(batch_size=64, targets_length=256,
                                                           learning_rate=1e-3)),
    "offline_translate_en_de": dict(
        model=dict(max_len=128), train=dict(batch_size=64, inputs_length=128, targets_length=128,
                                            learning_rate=1e-3, label_smoothing=0.1,
                                            predict_batches=4)),
}


#: Any other task of the registry: these lengths and rates (its shape's features are read).
DEFAULT_TASK = dict(model=dict(max_len=128), train=dict(batch_size=64, inputs_length=128,
                                                        targets_length=128, learning_rate=1e-3))


def task_spec(task: str) -> dict:
  """The model and train settings of `task` (TASKS, else DEFAULT_TASK); ValueError naming the
  registry's tasks for an unknown one."""
  from synthesizer_jax.data import registry

  if task not in registry.TASKS:
    raise ValueError(f"unknown task {task!r}; the registry has: {', '.join(registry.TASKS)}")
  return TASKS.get(task, DEFAULT_TASK)


def _stop_after(seconds: float, done: threading.Event, stepping: threading.Event) -> None:
  """SIGTERM to this process after `seconds`, once the first step is under way (a SIGTERM
  during set-up stops the run before it trains, with nothing to evaluate; on a loaded
  machine set-up alone can outlast a short budget)."""
  if done.wait(seconds):
    return
  while not stepping.is_set():
    if done.wait(0.1):
      return
  os.kill(os.getpid(), signal.SIGTERM)


class _Stepping:
  """The data module, setting `stepping` when the second train batch is asked for (the first
  step has been launched by then)."""

  def __init__(self, module, stepping: threading.Event):
    self._module, self._stepping = module, stepping

  def __getattr__(self, name):
    return getattr(self._module, name)

  def get_cached_dataset(self, name, split, **kw):
    for i, batch in enumerate(self._module.get_cached_dataset(name, split, **kw)):
      if split == "train" and i == 1:
        self._stepping.set()
      yield batch


def train_one(task: str, kind: str, data_dir: str, workroot: str, seconds: float,
              dtype: str, size: str = "base") -> dict:
  from synthesizer_jax import data, evaluation, loop
  from synthesizer_jax.config import MeshConfig, RunConfig, TrainConfig
  from synthesizer_jax.data import registry

  spec = task_spec(task)
  tiny = TINY_RUN if size == "tiny" else {"model": {}, "train": {}}
  vocab_size = registry.spec(task).vocab_size
  model = {**SIZES[size], **spec["model"], **tiny["model"], "self_attention": kind,
           "vocab_size": vocab_size, "dtype": dtype}
  train = TrainConfig(task=task, data_dir=data_dir, data_pipeline="grain", num_train_steps=10**6,
                      warmup_steps=500, decay="rsqrt", checkpoint_every=10**6, eval_every=10**6,
                      log_every=100, sample_prompt="The ",
                      **{"predict_batches": 0, "eval_batches": 20, **spec["train"],
                         **tiny["train"]})
  workdir = os.path.join(workroot, task, kind.replace("+", "_plus_"))
  done, stepping = threading.Event(), threading.Event()
  timer = threading.Thread(target=_stop_after, args=(seconds, done, stepping), daemon=True)
  start = time.time()
  timer.start()
  try:
    out = loop.train_and_evaluate(RunConfig.build(model, train, MeshConfig()), workdir,
                                  data=_Stepping(data, stepping), progress=False)
  finally:
    done.set()
  wall = time.time() - start
  results = evaluation.evaluate_checkpoint(workdir)
  loaded = sorted(m for m, v in sys.modules.items() if v is not None
                  and m.split(".")[0] in ("tensorflow", "seqio", "tensorflow_datasets"))
  return {"task": task, "kind": kind, "steps": out["step"], "wall_s": wall,
          "tokens_per_step": train.batch_size * train.targets_length,
          "tokens_per_s": out["step"] * train.batch_size * train.targets_length / wall,
          "metrics": results["metrics"], "sample": results.get("sample"),
          "sample_top_p": results.get("sample_top_p"), "tf_or_seqio_imported": loaded}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", default="data")
  p.add_argument("--out", required=True)
  p.add_argument("--workroot", default="/tmp/gpu_cache_train")
  p.add_argument("--tasks", default=",".join(TASKS),
                 help="comma-separated tasks of synthesizer_jax.data.TASKS, prepared and cached")
  p.add_argument("--kinds", default="dot,dense,random,random+dot")
  p.add_argument("--seconds", type=float, default=150.0, help="training budget per run")
  p.add_argument("--dtype", default="bfloat16")
  p.add_argument("--size", default="base", choices=list(SIZES),
                 help="tiny: a seconds-long check of this script (small model, batch, lengths "
                 "and evaluation)")
  args = p.parse_args(argv)
  for task in args.tasks.split(","):
    try:
      task_spec(task)
    except ValueError as err:
      p.error(f"--tasks: {err}")
  os.makedirs(args.out, exist_ok=True)
  for task in args.tasks.split(","):
    for kind in args.kinds.split(","):
      record = train_one(task, kind, args.data_dir, args.workroot, args.seconds, args.dtype,
                         args.size)
      print(json.dumps(record), flush=True)
      with open(os.path.join(args.out, "cache_train.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
