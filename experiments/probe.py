"""Checks on a trained diagnostic model: is a synthesizer's success on a content task real?

    python -m experiments.probe --workdir workdirs/experiments/small/lookup/dense/seed0

Two questions, answered from the checkpoint:
  leak       does any logit at position t change when tokens after t change? (must be 0:
             a decoder that sees the future would "solve" lookup without looking anything up)
  by slot    answer accuracy split by the context slot the query points at. Content lookup
             is slot-blind (flat); a model that reads a few *fixed* slots per head and
             compares in its MLP ("brute force") is right on the slots its heads cover and
             near guessing elsewhere.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from experiments import diagnostics


def future_leak(model, variables, tokens_bl: np.ndarray, rng: np.random.Generator) -> float:
  """Largest change of logits[:, :t] when tokens from t on are replaced, over every t."""
  apply = jax.jit(model.apply)
  base = np.asarray(apply(variables, tokens_bl))
  worst = 0.0
  vocab = model.cfg.vocab_size
  for t in range(1, tokens_bl.shape[1]):
    changed = tokens_bl.copy()
    changed[:, t:] = rng.integers(diagnostics.SYM, vocab, changed[:, t:].shape)
    out = np.asarray(apply(variables, changed))
    worst = max(worst, float(np.abs(out[:, :t] - base[:, :t]).max()))
  return worst


def lookup_accuracy_by_slot(model, variables, spec: diagnostics.DiagSpec, rows: int = 512,
                            seed: int = 123) -> list[float]:
  """Answer accuracy (%) of diag_lookup per context slot the query refers to."""
  targets, weights = diagnostics.lookup_rows(np.random.default_rng(seed), rows, spec)
  batch = diagnostics.lm_batch(targets, weights, model.cfg.max_len)
  logits = np.asarray(jax.jit(model.apply)(variables, batch["decoder_input_tokens"]))
  pred = logits.argmax(-1)
  first_slot = diagnostics.SYM + spec.lookup_symbols
  hits = [[] for _ in range(spec.lookup_len)]
  for b, t in zip(*np.nonzero(batch["decoder_loss_weights"])):
    slot = int(batch["decoder_target_tokens"][b, t]) - first_slot
    hits[slot].append(pred[b, t] == batch["decoder_target_tokens"][b, t])
  return [round(100.0 * float(np.mean(h)), 1) if h else float("nan") for h in hits]


def probe(workdir: str, spec: diagnostics.DiagSpec | None = None) -> dict:
  """Leak and per-slot accuracy of the checkpoint in `workdir` (a diag_lookup run)."""
  from synthesizer_jax import loading

  spec = spec or diagnostics.DiagSpec()
  model, variables, config = loading.load_checkpoint(workdir)
  rng = np.random.default_rng(0)
  targets, weights = diagnostics.lookup_rows(rng, 8, spec)
  tokens = diagnostics.lm_batch(targets, weights, model.cfg.max_len)["decoder_input_tokens"]
  out = {"workdir": workdir, "kind": config["model"]["self_attention"],
         "future_leak": future_leak(model, variables, tokens, rng)}
  if config["task"] == "diag_lookup":
    out["accuracy_by_slot"] = lookup_accuracy_by_slot(model, variables, spec)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", action="append", required=True, help="run workdir(s)")
  args = p.parse_args(argv)
  for w in args.workdir:
    print(json.dumps(probe(w)))


if __name__ == "__main__":
  main()
