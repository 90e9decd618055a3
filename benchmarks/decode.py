"""Decode speed and cache size per attention kind: `python -m benchmarks.decode`.

For each kind, times `sj.generate` (greedy, prefill + one token per step in a jitted
`lax.while_loop`, no early EOS) at batch 1 and 32, after a warm-up call that compiles,
and reports new tokens per second (median of `--repeats` runs) and the decode cache's
bytes per token of context (keys + values of every layer, plus the per-slot position
and validity flags). Writes JSON to `--out` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np

import synthesizer_jax as sj
from synthesizer_jax import decoding

KINDS = sj.KINDS + ("random+dot", "dense+dot")
PRESETS = {
    "tiny": dict(d_model=32, num_heads=2, head_dim=16, mlp_dim=64, num_layers=1, max_len=32),
    "cpu": dict(d_model=256, num_heads=4, head_dim=64, mlp_dim=1024, num_layers=4, max_len=256),
    "gpu": dict(d_model=512, num_heads=8, head_dim=64, mlp_dim=2048, num_layers=6, max_len=1024),
}


def kv_bytes_per_token(model, cache_len: int) -> dict:
  """Cache bytes per token slot for one row: keys+values, and everything (flags, index)."""
  cache = decoding.init_cache(model, 1, cache_len)
  leaves = [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(cache)]
  kv = sum(x.nbytes for name, x in leaves if "cached_value" in name or "cached_keys" in name)
  return {"kv_bytes_per_token": kv / cache_len,
          "cache_bytes_per_token": decoding.cache_bytes(cache) / cache_len}


def time_generate(model, variables, batch: int, prompt_len: int, new_tokens: int,
                  repeats: int) -> float:
  """Median seconds of one greedy generate call (compiled beforehand)."""
  rng = np.random.default_rng(0)
  prompt = rng.integers(3, model.cfg.vocab_size, (batch, prompt_len)).astype(np.int32)
  run = lambda: jax.block_until_ready(
      sj.generate(model, variables, prompt, max_new_tokens=new_tokens, eos_id=None).tokens)
  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def run(preset: str, kinds, batches, prompt_len: int, new_tokens: int, repeats: int) -> list:
  rows = []
  for kind in kinds:
    cfg = sj.ModelConfig(vocab_size=8000, dropout_rate=0.0, self_attention=kind,
                         **PRESETS[preset])
    if prompt_len + new_tokens > cfg.max_len:
      raise ValueError(f"prompt_len + new_tokens = {prompt_len + new_tokens} exceeds the "
                       f"preset's max_len={cfg.max_len}")
    model = sj.DecoderLM(cfg)
    variables = model.init(jax.random.key(0), np.ones((1, prompt_len), np.int32))
    row = {"kind": kind, "preset": preset, **kv_bytes_per_token(model, cfg.max_len)}
    for b in batches:
      secs = time_generate(model, variables, b, prompt_len, new_tokens, repeats)
      row[f"tokens_per_s_b{b}"] = b * new_tokens / secs
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


def markdown(rows, batches) -> str:
  head = ["kind", "KV bytes/token", "cache bytes/token"] + [f"tokens/s @ batch {b}"
                                                           for b in batches]
  lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
  for r in rows:
    cells = [r["kind"], f"{r['kv_bytes_per_token']:,.0f}", f"{r['cache_bytes_per_token']:,.0f}"]
    cells += [f"{r[f'tokens_per_s_b{b}']:,.0f}" for b in batches]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  parser.add_argument("--kinds", default=",".join(KINDS))
  parser.add_argument("--batches", default="1,32")
  parser.add_argument("--prompt_len", type=int, default=16)
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="benchmarks/results/decode_cpu.json")
  args = parser.parse_args(argv)
  batches = [int(b) for b in args.batches.split(",")]
  kinds = args.kinds.split(",")
  for kind in kinds:
    sj.parse_kind(kind)  # a clear error for an unknown kind before any timing
  rows = run(args.preset, kinds, batches, args.prompt_len, args.new_tokens, args.repeats)
  meta = {"date": time.strftime("%Y-%m-%d"), "device": str(jax.devices()[0]),
          "jax": jax.__version__, "args": vars(args)}
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump({"meta": meta, "rows": rows}, f, indent=1)
  print(markdown(rows, batches))
  return rows


if __name__ == "__main__":
  main()
