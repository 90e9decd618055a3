"""Speed and memory of every attention kind, side by side: one layer and a whole training step.

Run from the repository root (results in benchmarks/results/<preset>.{json,csv} and plots):

    python -m benchmarks.attention --preset cpu      # small model, lengths 256..2048, float32
    python -m benchmarks.attention --preset gpu      # base-size model, lengths 256..8192, bf16
    python -m benchmarks.attention --preset tiny     # seconds; what tests/test_benchmarks.py runs

Three sweeps, each over the variants of benchmarks/variants.py:

- `layer`: one causal self-attention layer, forward and forward+backward (grads of params and x).
- `step`: a whole DecoderLM training step (forward, backward, AdamW update) on random tokens.
- `batch`: compiled memory of the layer's forward+backward and of the step at one length for
  growing batch sizes: the attention memory of `dot` (and of the random family forced onto the
  per-batch path) grows with the batch, the batch-free random family's does not.

Every record has the median time of `--repeats` runs after warm-up, tokens/s, XLA's FLOP count
against the analytic one (synthesizer_jax.attention.costs), the compiled memory plan and, on
accelerators, the allocator's peak. Overrides: --variants, --lengths, --batch-sizes, --repeats.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import synthesizer_jax as sj
from benchmarks import measure, variants
from benchmarks.presets import PRESETS, Preset
from benchmarks.result_files import log_line, merge, write_results
from synthesizer_jax import shapes, steps
from synthesizer_jax.attention import costs, needs_keys


def _causal_inputs(v: variants.Variant, batch: int, length: int):
  """Causal mask and positions of an unpacked decoder; [b, n] positions when per-batch.

  The library's layer gets the mask as a rule (sj.attention.Mask), the benchmark-only
  modules as a boolean [1, 1, n, n] array.
  """
  rows = batch if v.per_batch else 1
  pos_rn = np.broadcast_to(np.arange(length, dtype=np.int32)[None], (rows, length))
  if not v.replaces_layer:
    return sj.attention.Mask(causal=True), jnp.asarray(pos_rn)
  mask_11nn = np.tril(np.ones((length, length), bool))[None, None]
  return jnp.asarray(mask_11nn), jnp.asarray(pos_rn)


def _abstract(tree):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def _layer_fns(v: variants.Variant, acfg, batch: int, length: int, d_model: int,
               abstract: bool = False):
  """(forward, forward+backward, args) of one attention layer of variant `v`.

  `abstract` gives shapes only (for compile-only memory sweeps: nothing is initialised).
  """
  layer = variants.layer_for(v, acfg)
  mask, pos = _causal_inputs(v, batch, length)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((batch, length, d_model), np.float32)).astype(acfg.dtype)
  init = lambda key: layer.init(key, x, x, mask, pos, pos)
  # One compiled init instead of one eager dispatch (and compile) per parameter.
  variables = (jax.eval_shape(init, jax.random.key(0)) if abstract
               else jax.jit(init)(jax.random.key(0)))
  params = variables["params"]
  consts = {k: val for k, val in variables.items() if k != "params"}
  if v.cached:
    # The precomputed weights are an argument (not a closed-over constant baked into the program).
    consts = {"weights_hqk": variants.cached_fixed_random_weights(variables, acfg, mask)}
    fwd = lambda p, x, c: variants.apply_with_cached_weights(p, c["weights_hqk"], x, acfg)
  else:
    fwd = lambda p, x, c: layer.apply({"params": p, **c}, x, x, mask, pos, pos)

  def fwd_bwd(p, x, c):
    loss_fn = lambda p, x: jnp.sum(fwd(p, x, c).astype(jnp.float32) ** 2)
    return jax.grad(loss_fn, argnums=(0, 1))(p, x)

  args = (params, x, consts)
  return fwd, fwd_bwd, (_abstract(args) if abstract else args)


def _model_flops(cfg: sj.ModelConfig, length: int) -> float:
  """Analytic forward matmul FLOPs of one DecoderLM sequence: attention + MLP + tied logits."""
  per_layer = (costs.forward_flops(cfg.attention(cfg.self_attention), cfg.d_model, length)
               + 2 * 2 * length * cfg.d_model * cfg.mlp_dim)
  return cfg.decoder_layers * per_layer + 2 * length * cfg.d_model * cfg.vocab_size


def _train_step(v: variants.Variant, cfg: sj.ModelConfig, batch: int, length: int,
                abstract: bool = False, loss_chunk: int = 0):
  """(step, args) of a DecoderLM AdamW training step; step(state, inputs, targets) -> (state, loss).

  The state is (params, opt_state, constants); `abstract` gives shapes only. `loss_chunk`
  > 0 computes the logits and loss that many positions at a time (`steps.chunked_loss_sums`,
  TrainConfig.loss_chunk), so the [batch, length, vocab] logits never exist.
  """
  model = sj.DecoderLM(cfg)
  rng = np.random.default_rng(2)
  tokens = rng.integers(1, cfg.vocab_size, (batch, length + 1), dtype=np.int32)
  inputs, targets = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
  positions = None
  if v.per_batch:
    positions = jnp.asarray(np.broadcast_to(np.arange(length, dtype=np.int32), (batch, length)))
  tx = optax.adamw(1e-4, weight_decay=0.01)

  def init(key):
    variables = model.init(key, inputs)
    consts = {k: val for k, val in variables.items() if k != "params"}
    return variables["params"], tx.init(variables["params"]), consts

  def loss_fn(params, consts, inputs, targets):
    variables = {"params": params, **consts}
    if loss_chunk:
      hidden = model.apply(variables, inputs, positions, return_hidden=True)
      sums = steps.chunked_loss_sums(
          lambda h: shapes.get("lm").project(model, variables, h), hidden, targets,
          jnp.ones(targets.shape, jnp.float32), loss_chunk)
      return sums["loss"] / sums["weight"]
    logits = model.apply(variables, inputs, positions)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  def step(state, inputs, targets):
    params, opt_state, consts = state
    loss, grads = jax.value_and_grad(loss_fn)(params, consts, inputs, targets)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, consts), loss

  with variants.model_attention(v):
    state = (jax.eval_shape(init, jax.random.key(0)) if abstract
             else jax.jit(init)(jax.random.key(0)))
  args = (state, inputs, targets)
  return step, (_abstract(args) if abstract else args)


def _record(bench: str, mode: str, v: variants.Variant, length: int, batch: int,
            result: dict[str, Any], analytic: float | None, peak: float | None,
            **extra) -> dict[str, Any]:
  rec = {"bench": bench, "mode": mode, "variant": v.name, "kind": v.kind, "length": length,
         "batch": batch, **extra, **result}
  rec["analytic_flops"] = analytic
  if analytic and rec.get("xla_flops"):
    rec["flops_ratio"] = analytic / rec["xla_flops"]
  if rec.get("time_ms"):
    rec["tokens_per_s"] = batch * length / (rec["time_ms"] / 1e3)
    if analytic and peak:
      rec["mfu"] = analytic / (rec["time_ms"] / 1e3) / peak
  return rec


def _skip_reason(v: variants.Variant) -> str | None:
  if v.impl == "cudnn" and jax.default_backend() != "gpu":
    return "cuDNN flash attention needs a GPU"
  return None


def run_layer(p: Preset, vs, lengths, repeats, peak, log) -> None:
  """One attention layer, forward and forward+backward, per variant and length; records to `log`."""
  for n in lengths:
    batch = max(1, p.tokens_per_batch // n)
    for v in vs:
      if _skip_reason(v):
        continue
      acfg = p.model_config(v.kind, n, v.attention_impl).attention(v.kind)
      flops = costs.forward_flops(acfg, p.d_model, n) * batch
      try:
        fwd, fwd_bwd, args = _layer_fns(v, acfg, batch, n, p.d_model)
      except Exception as err:  # noqa: BLE001
        rec = _record("layer", "fwd", v, n, batch, {"error": repr(err)[:300]}, flops, peak)
        log(rec)
        continue
      for mode, fn, analytic in (("fwd", fwd, flops), ("fwd_bwd", fwd_bwd, 3 * flops)):
        rec = _record("layer", mode, v, n, batch, measure.measure(fn, args, repeats=repeats),
                      analytic, peak)
        log(rec)


def _model_cases(p: Preset, vs, lengths):
  """(n, batch, variant, ModelConfig) of every whole-model measurement, lengths outermost."""
  for n in lengths:
    batch = max(1, p.tokens_per_batch // n)
    for v in vs:
      if not (_skip_reason(v) or v.cached):
        yield n, batch, v, p.model_config(v.kind, n, v.attention_impl)


def run_step(p: Preset, vs, lengths, repeats, peak, log) -> None:
  """A whole DecoderLM training step per variant and length; records to `log`."""
  for n, batch, v, cfg in _model_cases(p, vs, lengths):
    analytic = 3 * _model_flops(cfg, n) * batch  # forward + backward = 3 x forward
    try:
      step, args = _train_step(v, cfg, batch, n, loss_chunk=p.loss_chunk)
      with variants.model_attention(v):
        result = measure.measure(step, args, repeats=repeats, carry=True, donate=(0,))
    except Exception as err:  # noqa: BLE001
      result = {"error": repr(err)[:300]}
    log(_record("step", "train_step", v, n, batch, result, analytic, peak))


def run_batch(p: Preset, vs, length, batch_sizes, log) -> None:
  """Compiled memory (no timing) of the layer fwd+bwd and the train step at growing batch."""
  wanted = [v for v in vs if not v.cached and not _skip_reason(v)
            and (v.kind in variants.RANDOM_FAMILY or v.name == "dot")]
  for v in wanted:
    cfg = p.model_config(v.kind, length, v.attention_impl)
    for batch in batch_sizes:
      try:
        _, fwd_bwd, args = _layer_fns(v, cfg.attention(v.kind), batch, length, p.d_model,
                                      abstract=True)
        layer = measure.measure(fwd_bwd, args, run=False)
        step, sargs = _train_step(v, cfg, batch, length, abstract=True, loss_chunk=p.loss_chunk)
        with variants.model_attention(v):
          train = measure.measure(step, sargs, donate=(0,), run=False)
      except Exception as err:  # noqa: BLE001
        layer, train = {"error": repr(err)[:300]}, {}
      rec = {"bench": "batch", "mode": "memory", "variant": v.name, "kind": v.kind,
             "length": length, "batch": batch,
             "layer_fwd_bwd_temp_bytes": layer.get("mem_temp_bytes"),
             "layer_fwd_bwd_footprint_bytes": layer.get("mem_footprint_bytes"),
             "step_temp_bytes": train.get("mem_temp_bytes"),
             "step_footprint_bytes": train.get("mem_footprint_bytes"),
             "error": layer.get("error") or train.get("error")}
      log(rec)


def run_memory(p: Preset, vs, lengths, log) -> None:
  """Compiled memory (no run) of one layer's forward+backward and of the training step."""
  for n, batch, v, cfg in _model_cases(p, vs, lengths):
    for mode in ("layer_fwd_bwd", "train_step"):
      try:
        if mode == "train_step":
          fn, args = _train_step(v, cfg, batch, n, abstract=True, loss_chunk=p.loss_chunk)
        else:
          _, fn, args = _layer_fns(v, cfg.attention(v.kind), batch, n, p.d_model, abstract=True)
        with variants.model_attention(v):
          result = measure.measure(fn, args, donate=(0,) if mode == "train_step" else (),
                                   run=False)
      except Exception as err:  # noqa: BLE001
        result = {"error": repr(err)[:300]}
      log(_record("memory", mode, v, n, batch, result, None, None))


def decode_cache_bytes(p: Preset, kinds, length: int, batch: int) -> dict[str, int]:
  """Analytic decode cache of a DecoderLM: values always, keys only for kinds that read keys."""
  itemsize = jnp.dtype(p.dtype).itemsize
  per_tensor = p.num_layers * batch * length * p.d_model * itemsize
  return {k: per_tensor * (2 if needs_keys(k) else 1) for k in kinds}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  parser.add_argument("--variants", help="comma-separated: dot,dot_jax,random,random/per_batch")
  parser.add_argument("--lengths", help="comma-separated sequence lengths")
  parser.add_argument("--batch-sizes", help="comma-separated batch sizes of the batch sweep")
  parser.add_argument("--repeats", type=int)
  parser.add_argument("--benches", default="layer,step,batch",
                      help="subset of layer,step,batch,memory (memory: compiled train step only)")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"))
  parser.add_argument("--loss_chunk", type=int,
                      help="training steps: logits and loss this many positions at a time")
  parser.add_argument("--out", help="output prefix (default benchmarks/results/<preset>)")
  parser.add_argument("--append", action="store_true",
                      help="add to the results already at --out (same measurements are replaced)")
  args = parser.parse_args(argv)

  p = PRESETS[args.preset]
  if args.dtype:
    p = dataclasses.replace(p, dtype=args.dtype)
  if args.loss_chunk is not None:
    if args.loss_chunk < 0:
      parser.error(f"--loss_chunk {args.loss_chunk}: must be >= 0 (0: the whole sequence)")
    p = dataclasses.replace(p, loss_chunk=args.loss_chunk)
  names = args.variants.split(",") if args.variants else list(p.variants)
  try:
    vs = [variants.make_variant(name.strip()) for name in names]
    lengths = [int(n) for n in args.lengths.split(",")] if args.lengths else list(p.lengths)
    batch_sizes = ([int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes
                   else list(p.batch_sizes))
  except ValueError as err:
    parser.error(str(err))
  benches = set(args.benches.split(","))
  if not benches <= {"layer", "step", "batch", "memory"}:
    parser.error(f"--benches {args.benches!r}: choose from layer, step, batch, memory")
  repeats = args.repeats or p.repeats
  out = args.out or os.path.join("benchmarks", "results", args.preset)

  meta = measure.machine()
  meta["load_average_at_start"] = [round(x, 1) for x in os.getloadavg()]
  meta.update(command="python -m benchmarks.attention " + " ".join(sys.argv[1:] if argv is None
                                                                   else argv),
              preset=args.preset, config=dataclasses.asdict(p), repeats=repeats)
  print(f"{meta['device_kind']} ({meta['backend']}), {meta['cpu']}, jax {meta['jax']}", flush=True)
  peak = meta["peak_flops"]
  start = time.time()
  records: list[dict[str, Any]] = []
  partial = out + ".partial.json"
  os.makedirs(os.path.dirname(partial) or ".", exist_ok=True)

  def log(rec):  # print, and keep what is measured so far should the run be cut short
    log_line(rec)
    with open(partial, "w") as f:
      json.dump({"meta": meta, "records": records + [rec]}, f, default=float)
    records.append(rec)

  if "layer" in benches:
    run_layer(p, vs, lengths, repeats, peak, log)
  if "step" in benches:
    run_step(p, vs, lengths, repeats, peak, log)
  if "memory" in benches:
    run_memory(p, vs, lengths, log)
  if "batch" in benches:
    run_batch(p, vs, p.batch_length if not args.lengths else lengths[-1], batch_sizes, log)
  meta["wall_s"] = round(time.time() - start, 1)
  meta["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
  meta["decode_cache_bytes"] = {  # analytic, so every kind (not only the benchmarked ones)
      "length": max(lengths), "batch": 1,
      "bytes": decode_cache_bytes(p, sj.KINDS, max(lengths), 1)}
  payload = {"meta": meta, "records": records}
  if args.append and os.path.exists(out + ".json"):
    payload = merge(out + ".json", payload)
  paths = write_results(payload, out)
  os.remove(partial)
  print(f"done in {meta['wall_s']} s; wrote " + ", ".join(paths))
  return 0


if __name__ == "__main__":
  sys.exit(main())
