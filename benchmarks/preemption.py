"""Does the multi-process step loop keep the host ahead of the device? `python -m
benchmarks.preemption` (2 CPU processes on localhost, gloo, one device each).

Each process runs the library's jitted train step `--steps` times and asks its
`preemption.Preemption` after every step whether to stop, as `loop.py` does, in one of two
modes: "allgather" (the flags of every process gathered on the devices each step: the host
must wait for the step to finish) and "sync_point" (JAX's coordination service: a host-side
check). Per mode it reports, from process 0: the host's time per step in the loop (dispatch
plus the preemption check), the device's time per step (the loop's wall time once the last
step's result is ready), and how far the host got ahead: the seconds between the host
finishing its loop and the device finishing the work. Writes JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

MODES = ("allgather", "sync_point")


def worker(pid: int, port: int, mode: str, steps: int, size: int) -> dict:
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  import jax

  jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=pid)
  import numpy as np

  import synthesizer_jax as sj
  from synthesizer_jax import optim, preemption
  from synthesizer_jax import sharding as shd
  from synthesizer_jax import steps as step_fns
  from synthesizer_jax.config import MeshConfig, TrainConfig

  cfg = sj.ModelConfig(vocab_size=256, d_model=size, num_heads=4, head_dim=size // 4,
                       mlp_dim=4 * size, num_layers=2, max_len=128, dropout_rate=0.0)
  model = sj.DecoderLM(cfg)
  train = TrainConfig(batch_size=8, targets_length=128, warmup_steps=1, num_train_steps=steps)
  mesh = shd.make_mesh(MeshConfig(data=-1, rules="dp"))
  rules = shd.RULE_SETS["dp"]
  tx = optim.make_optimizer(train)
  state, shardings = step_fns.create_train_state(model, "lm", tx, {"targets": 128}, mesh, rules)
  step = step_fns.jit_train_step(model, "lm", tx, train, mesh, rules, shardings)
  rng = np.random.default_rng(pid)
  tokens = rng.integers(2, 256, (4, 128)).astype(np.int32)
  batch = shd.global_batch({"decoder_input_tokens": tokens, "decoder_target_tokens": tokens,
                            "decoder_loss_weights": np.ones_like(tokens)}, mesh)
  state, metrics = step(state, batch)  # compile
  jax.block_until_ready(metrics)
  preempt = preemption.Preemption(mode)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
    if preempt.agreed():
      break
  host_done = time.perf_counter()
  jax.block_until_ready((state, metrics))
  device_done = time.perf_counter()
  preempt.restore()
  jax.distributed.shutdown()
  return {"mode": preempt.mode, "steps": steps, "d_model": size,
          "host_ms_per_step": 1e3 * (host_done - start) / steps,
          "device_ms_per_step": 1e3 * (device_done - start) / steps,
          "host_ahead_s": device_done - host_done}


def run(mode: str, steps: int, size: int) -> dict:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.preemption", "--worker", str(i),
                             "--port", str(port), "--mode", mode, "--steps", str(steps),
                             "--size", str(size)], env=env, stdout=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=900)[0] for p in procs]
  if any(p.returncode for p in procs):
    raise RuntimeError(f"worker failed: {[p.returncode for p in procs]}")
  return json.loads(outs[0].strip().splitlines()[-1])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--size", type=int, default=256, help="d_model of the 2-layer DecoderLM")
  parser.add_argument("--out", default="benchmarks/results/preemption_cpu.json")
  parser.add_argument("--worker", type=int, default=-1, help=argparse.SUPPRESS)
  parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--mode", choices=MODES, default="sync_point", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker >= 0:
    print(json.dumps(worker(args.worker, args.port, args.mode, args.steps, args.size)))
    return 0
  rows = [run(mode, args.steps, args.size) for mode in MODES]
  print("| agreement | host ms / step | device ms / step | host ahead at the end (s) |")
  print("| --- | ---: | ---: | ---: |")
  for r in rows:
    print(f"| {r['mode']} | {r['host_ms_per_step']:.1f} | {r['device_ms_per_step']:.1f} | "
          f"{r['host_ahead_s']:.2f} |")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump({"date": time.strftime("%Y-%m-%d"), "rows": rows}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
