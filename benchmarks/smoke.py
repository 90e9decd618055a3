"""bf16 throughput of the bare training step, per model shape, on synthetic batches.

    python -m benchmarks.smoke                          # 300 steps per shape (accelerator sizes)
    python -m benchmarks.smoke --size cpu --steps 30    # small model, for a CPU

This is a step benchmark, not a check that a machine works: it skips the data pipeline,
checkpoints, evaluation, decoding and the fused attention implementations, and its losses are
not judged (a run whose loss rises still exits 0). The pre-flight check is
`python -m synthesizer_jax.smoke` (`make smoke`).

For each of DecoderLM, EncoderDecoder and EncoderClassifier it trains a bfloat16 model on a
synthetic task it can learn (LM: counting sequences; seq2seq: copy; classification: parity of
the first token) with the project's own training step (`synthesizer_jax.steps`: TrainState,
AdamW + warmup, clipping, jit with shardings and donation on a one-device mesh), prints the loss
at the start and the end and the throughput (steps/s and tokens/s, compile excluded), and exits
non-zero only if a loss is not finite. Synthetic batches in the seqio feature format stand in for
the data pipeline, so it needs neither TensorFlow nor seqio nor ml_collections.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

import synthesizer_jax as sj
from synthesizer_jax import optim, shapes, sharding
from synthesizer_jax import steps as step_fns
from synthesizer_jax.config import TrainConfig

SIZES = {  # d_model, heads, mlp, layers, vocab, length, batch
    "gpu": dict(d_model=512, num_heads=8, mlp_dim=2048, num_layers=6, vocab_size=32128,
                length=512, batch=32),
    "cpu": dict(d_model=64, num_heads=4, mlp_dim=256, num_layers=2, vocab_size=256,
                length=64, batch=8),
    "tiny": dict(d_model=16, num_heads=2, mlp_dim=32, num_layers=1, vocab_size=32,
                 length=8, batch=2),
}
SHAPES = tuple(shapes.SHAPES)


def synthetic_batch(shape: str, rng: np.random.Generator, batch: int, length: int, vocab: int):
  """One batch with the seqio feature names of `shape` (ids >= 2: 0 is padding, 1 EOS)."""
  start = rng.integers(2, vocab, (batch, 1))
  seq = (2 + (start + np.arange(length + 1)[None]) % (vocab - 2)).astype(np.int32)
  ones = np.ones((batch, length), np.float32)
  if shape == "lm":  # counting: next token = this token + 1
    return {"decoder_input_tokens": seq[:, :-1], "decoder_target_tokens": seq[:, 1:],
            "decoder_loss_weights": ones}
  if shape == "encdec":  # copy the input
    targets = seq[:, 1:]
    inputs = np.concatenate([np.zeros((batch, 1), np.int32), targets[:, :-1]], axis=1)
    return {"encoder_input_tokens": targets, "decoder_input_tokens": inputs,
            "decoder_target_tokens": targets, "decoder_loss_weights": ones}
  return {"encoder_input_tokens": seq[:, :-1], "targets": (seq[:, 0] % 2).astype(np.int32)}


def run_shape(shape: str, kind: str, size: dict, steps: int, seed: int = 0) -> dict:
  """Trains one model shape for `steps` steps; returns first/last loss and throughput."""
  length, batch = size["length"], size["batch"]
  cfg = sj.ModelConfig(vocab_size=size["vocab_size"], d_model=size["d_model"],
                       num_heads=size["num_heads"], head_dim=size["d_model"] // size["num_heads"],
                       mlp_dim=size["mlp_dim"], num_layers=size["num_layers"], max_len=length,
                       dropout_rate=0.0, self_attention=kind, dtype="bfloat16")
  model = shapes.get(shape).build(cfg, num_classes=2)
  train_cfg = TrainConfig(task="smoke", batch_size=batch, inputs_length=length,
                          targets_length=length, num_train_steps=steps,
                          learning_rate=1e-3, warmup_steps=min(10, steps), seed=seed)
  tx = optim.make_optimizer(train_cfg)
  mesh = sharding.make_mesh(sharding.MeshConfig(num_devices=1, rules="dp"))
  rules = sharding.RULE_SETS["dp"]
  state, shardings = step_fns.create_train_state(
      model, shape, tx, shapes.get(shape).feature_lengths(train_cfg), mesh, rules, seed)
  step = step_fns.jit_train_step(model, shape, tx, train_cfg, mesh, rules, shardings)
  rng = np.random.default_rng(seed)
  losses, start = [], 0.0
  for i in range(steps):
    state, metrics = step(state, synthetic_batch(shape, rng, batch, length, cfg.vocab_size))
    if i == 0:
      losses.append(float(metrics["loss"]))  # waits for the compile and the first step
      start = time.perf_counter()
  losses.append(float(metrics["loss"]))
  seconds = time.perf_counter() - start
  timed = max(steps - 1, 1)
  tokens = batch * length * (2 if shape == "encdec" else 1)
  return {"shape": shape, "kind": kind, "first_loss": losses[0], "last_loss": losses[-1],
          "steps_per_s": timed / seconds, "tokens_per_s": timed * tokens / seconds}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", choices=sorted(SIZES),
                      help="model size (default: gpu on an accelerator, cpu otherwise)")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--kind", default="dense", help=f"attention kind: {sj.KINDS} or a mixture")
  parser.add_argument("--shapes", default=",".join(SHAPES))
  args = parser.parse_args(argv)
  size_name = args.size or ("cpu" if jax.default_backend() == "cpu" else "gpu")
  shapes = args.shapes.split(",")
  bad = [s for s in shapes if s not in SHAPES]
  if bad:
    parser.error(f"--shapes: unknown {bad}; choose from {SHAPES}")
  if args.steps < 2:
    parser.error("--steps must be >= 2 (the first step includes the compile)")
  print(f"{jax.devices()[0].device_kind} ({jax.default_backend()}), size={size_name}, bf16, "
        f"{args.steps} steps, attention={args.kind}", flush=True)
  ok, start = True, time.time()
  for shape in shapes:
    r = run_shape(shape, args.kind, SIZES[size_name], args.steps)
    ok &= bool(np.isfinite(r["last_loss"]))
    print(f"{shape:10s} loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}  "
          f"{r['steps_per_s']:8.1f} steps/s  {r['tokens_per_s']:12.0f} tokens/s", flush=True)
  print(f"total {time.time() - start:.1f} s")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
