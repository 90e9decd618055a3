"""What a bucket workdir costs: checkpoint save and restore of a base-size EncoderDecoder
(d_model 512, 8 heads, MLP 2048, 6 + 6 layers, vocabulary 32128: about 60M parameters, the
whole TrainState with its Adam moments) to a GCS API against local disk, and the training
step's time while an async save to the bucket is in flight against none.

    python -m benchmarks.bucket_io --out benchmarks/results/bucket_io_cpu

The GCS API is `gcp-storage-emulator` on loopback (a Python server writing to local disk,
started here, as in the tests), so its figures are an upper bound on the client's own
overhead, not a GCS latency: real GCS is farther away and much faster per byte. Local and
bucket runs alternate, `--rounds` times each; each row gives the median and the ratio.
Checkpoints use `checkpoint_ocdbt=False` on both sides (the emulator cannot serve OCDBT).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _state_and_step(batch: int, length: int):
  import numpy as np

  import synthesizer_jax as sj
  from benchmarks.smoke import synthetic_batch
  from synthesizer_jax import optim, shapes, sharding
  from synthesizer_jax import steps as step_fns
  from synthesizer_jax.config import TrainConfig

  cfg = sj.ModelConfig(vocab_size=32128, d_model=512, num_heads=8, head_dim=64, mlp_dim=2048,
                       num_layers=6, max_len=length, dropout_rate=0.0, self_attention="dense")
  model = shapes.get("encdec").build(cfg)
  train_cfg = TrainConfig(task="bucket_io", batch_size=batch, inputs_length=length,
                          targets_length=length, num_train_steps=100, learning_rate=1e-3,
                          warmup_steps=10)
  tx = optim.make_optimizer(train_cfg)
  mesh = sharding.make_mesh(sharding.MeshConfig(num_devices=1, rules="dp"))
  rules = sharding.RULE_SETS["dp"]
  lengths = shapes.get("encdec").feature_lengths(train_cfg)
  state, shardings = step_fns.create_train_state(model, "encdec", tx, lengths, mesh, rules, 0)
  step = step_fns.jit_train_step(model, "encdec", tx, train_cfg, mesh, rules, shardings)
  rng = np.random.default_rng(0)
  batches = [synthetic_batch("encdec", rng, batch, length, cfg.vocab_size) for _ in range(4)]
  return state, step, batches


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=4, help="timed steps per step-time figure")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--out", default=None, help="folder for bucket_io.json")
  args = parser.parse_args(argv)
  sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
  from gcs_emulator import Emulator

  root = tempfile.mkdtemp(prefix="sj_bucket_io_")
  server = Emulator(os.path.join(root, "gcs"))
  os.makedirs(server.root)
  server.start()
  os.environ.update(server.env)
  try:
    return _run(args, server, root)
  finally:
    server.stop()


def _run(args, server, root) -> int:
  import jax

  from synthesizer_jax import checkpointing

  state, step, batches = _state_and_step(args.batch, args.length)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  n_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
  state, _ = step(state, batches[0])  # compile
  jax.block_until_ready(state)
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)
  times = {k: [] for k in ("save_local", "save_bucket", "restore_local", "restore_bucket",
                           "step_idle", "step_saving")}

  def steps_time(s):
    start = time.perf_counter()
    for i in range(args.steps):
      s, metrics = step(s, batches[i % len(batches)])
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / args.steps, s

  for r in range(args.rounds):
    for where in ("local", "bucket"):
      work = os.path.join(root, f"local{r}") if where == "local" else server.new_path(f"b{r}")
      ckpt = checkpointing.Checkpointer(work, async_save=True, ocdbt=False)
      times[f"save_{where}"].append(
          _timed(lambda c=ckpt, s=state: (c.save(1, s, {}, {}), c.wait())))
      times[f"restore_{where}"].append(_timed(lambda c=ckpt: c.restore(target, 1)))
      if where == "bucket":
        idle, state = steps_time(state)
        ckpt.save(2, state, {}, {})  # async: the steps below run while it uploads
        saving, state = steps_time(state)
        ckpt.wait()
        times["step_idle"].append(idle)
        times["step_saving"].append(saving)
      ckpt.close()
  med = {k: statistics.median(v) for k, v in times.items()}
  result = {"parameters": int(n_params), "state_bytes": int(n_bytes), "rounds": args.rounds,
            "seconds": times, "median": med,
            "save_ratio_bucket_over_local": med["save_bucket"] / med["save_local"],
            "restore_ratio_bucket_over_local": med["restore_bucket"] / med["restore_local"],
            "step_ratio_saving_over_idle": med["step_saving"] / med["step_idle"],
            "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPUs"}
  print(json.dumps({k: v for k, v in result.items() if k != "seconds"}, indent=1))
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bucket_io.json"), "w") as f:
      json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
