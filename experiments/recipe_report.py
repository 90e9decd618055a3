"""Tables of issue 29's experiment (experiments/recipe.py): pre-training losses against the
paper's C4 table, fine-tuning from the pre-trained checkpoints against the same fine-tuning
from scratch (paired by seed), and the gaps between the synthesizers and dot.

    python -m experiments.recipe_report bar --out experiments/results/recipe29
    python -m experiments.recipe report --out experiments/results/recipe29

`bar` measures the context-free predictor of the pre-training targets (unigram frequencies
of the training targets, add-one smoothed, scored on the validation targets) and writes
`<out>/bar.json`: the level "dot has learned the objective" is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from experiments import report

# Span-corruption log-perplexity on C4 after pre-training, the paper's table as a third-party
# transcription gives it (issue 29): Transformer (dot) 1.865, Syn (Random) 1.965,
# Syn (Random + Vanilla) 1.849. Their ratios to dot are what a CPU-scale run can compare.
PAPER = {"dot": 1.865, "random": 1.965, "random+dot": 1.849}
KINDS = ("dot", "random+dot", "dense+dot", "dense", "random")
MEMBERS = ("offline_classify_t5", "offline_translate_en_de_t5", "offline_summarize_t5")
# Each member's own metric, from decoded predictions (experiments/recipe.FINETUNE's rows).
MEMBER_METRICS = {"offline_classify_t5": "accuracy", "offline_translate_en_de_t5": "bleu",
                  "offline_summarize_t5": "rouge1"}
LENGTHS = {"inputs": 128, "targets": 32}


def _batches(data_dir: str, split: str, **kw):
  from synthesizer_jax import data

  return data.get_cached_dataset("offline_prose_span_corruption", split, data_dir=data_dir,
                                 feature_lengths=LENGTHS, batch_size=16, **kw)


def _structure(targets: np.ndarray, vocab) -> np.ndarray:
  """Where `targets` hold the structure: the sentinels (the vocabulary's extra ids, which end
  it) and EOS."""
  return (targets >= vocab.vocab_size - vocab.extra_ids) | (targets == vocab.eos_id)


def unigram_bar(data_dir: str, train_batches: int = 400) -> dict:
  """The context-free predictor of the validation targets: unigram frequencies of the
  training targets (add-one smoothed), its loss (nats) on every target and on the masked
  pieces ("content", not sentinels or EOS), and the accuracy on the masked pieces of always
  guessing the most frequent piece."""
  from synthesizer_jax import data

  vocabulary = data.get_vocabulary("offline_prose_span_corruption", data_dir)
  vocab = vocabulary.vocab_size
  counts = np.zeros(vocab, np.int64)
  for i, b in enumerate(_batches(data_dir, "train", seed=0)):
    if i == train_batches:
      break
    np.add.at(counts, b["decoder_target_tokens"][b["decoder_loss_weights"] > 0], 1)
  logp = np.log((counts + 1) / (counts.sum() + vocab))
  content_counts = np.where(_structure(np.arange(vocab), vocabulary), 0, counts)
  top = int(content_counts.argmax())
  nll, n, content_nll, hits, content = 0.0, 0, 0.0, 0, 0
  for b in _batches(data_dir, "validation", shuffle=False, repeat=False):
    t = b["decoder_target_tokens"][b["decoder_loss_weights"] > 0]
    nll -= float(logp[t].sum())
    n += t.size
    c = t[~_structure(t, vocabulary)]
    content_nll -= float(logp[c].sum())
    hits, content = hits + int((c == top).sum()), content + c.size
  return {"unigram_loss": nll / n, "unigram_content_loss": content_nll / content,
          "unigram_content_accuracy": 100 * hits / content, "tokens": n,
          "content_tokens": content, "train_batches": train_batches}


def span_accuracy(workdir: str, data_dir: str, step: int | None = None) -> dict:
  """Loss (nats) and accuracy (%) of a pre-trained checkpoint on the validation targets,
  split into the masked pieces themselves ("content") and the structure (sentinels and
  EOS): the overall loss mixes the two, and the structure is learned first and mostly
  without the context."""
  import jax

  from synthesizer_jax import data, shapes
  from synthesizer_jax.loading import load_checkpoint

  model, variables, config = load_checkpoint(workdir, step)
  vocabulary = data.get_vocabulary("offline_prose_span_corruption", data_dir)
  shape = shapes.get(config["shape"])

  @jax.jit
  def scores(v, b):
    logits = shape.forward(model, v, b, deterministic=True)[0].astype("float32")
    logp = jax.nn.log_softmax(logits)
    nll = -jax.numpy.take_along_axis(logp, b["decoder_target_tokens"][..., None], -1)[..., 0]
    return nll, logits.argmax(-1)

  sums = {k: np.zeros(3) for k in ("content", "structure")}  # nll, right, count
  for batch in _batches(data_dir, "validation", shuffle=False, repeat=False):
    nll, pred = (np.asarray(x) for x in scores(variables, batch))
    tgt, w = batch["decoder_target_tokens"], batch["decoder_loss_weights"] > 0
    structure = _structure(tgt, vocabulary)
    for name, mask in (("content", w & ~structure), ("structure", w & structure)):
      sums[name] += [nll[mask].sum(), (pred == tgt)[mask].sum(), mask.sum()]
  out = {}
  for name, (nll, right, n) in sums.items():
    out |= {f"{name}_loss": float(nll / n), f"{name}_accuracy": float(100 * right / n),
            f"{name}_tokens": int(n)}
  return out


def load(out: str) -> list[dict]:
  """The records of `<out>/runs.jsonl` (none yet: [])."""
  return report.load_runs(out) if os.path.exists(os.path.join(out, "runs.jsonl")) else []


def _mean_sd(xs) -> str:
  xs = np.asarray(xs, float)
  return f"{xs.mean():.3f} ± {xs.std(ddof=1) if len(xs) > 1 else 0:.3f}"


def _by(runs, stage):
  return {(r["kind"], r["seed"]): r for r in runs if r["stage"] == stage}


def _delta(diffs) -> str:
  d = report.paired_delta(diffs)
  p = "" if d["p"] is None else f"p = {d['p']:.2f}, "
  return f"{d['mean']:+.3f} ± {d['std']:.3f} ({p}n = {d['n']})"


def _cell(rows, get) -> str:
  values = [get(r) for r in rows]
  return _mean_sd(values) if all(v is not None for v in values) else "not measured"


def pretrain_table(runs, bar: dict | None) -> str:
  pre = _by(runs, "pretrain")
  dot = {s: r["final"]["loss"] for (k, s), r in pre.items() if k == "dot"}
  lines = ["| kind | validation loss (nats) | masked pieces: loss | masked pieces right % | "
           "sentinels and EOS right % | loss minus dot (paired) | loss ratio to dot | "
           "paper's ratio (C4) |", "|---|---|---|---|---|---|---|---|"]
  for kind in KINDS:
    rows = [r for (k, _), r in sorted(pre.items()) if k == kind]
    if not rows:
      continue
    paired = [r["final"]["loss"] - dot[r["seed"]] for r in rows if r["seed"] in dot]
    ratio = np.mean([r["final"]["loss"] / dot[r["seed"]] for r in rows if r["seed"] in dot])
    paper = f"{PAPER[kind] / PAPER['dot']:.3f}" if kind in PAPER else "not in the table"
    lines.append(
        f"| {kind} | {_cell(rows, lambda r: r['final']['loss'])} | "
        f"{_cell(rows, lambda r: r.get('span', {}).get('content_loss'))} | "
        f"{_cell(rows, lambda r: r.get('span', {}).get('content_accuracy'))} | "
        f"{_cell(rows, lambda r: r.get('span', {}).get('structure_accuracy'))} | "
        f"{_delta(paired) if kind != 'dot' and paired else ''} | {ratio:.3f} | {paper} |")
  if bar:
    lines.append(f"| unigram (no context; the most frequent piece) | {bar['unigram_loss']:.3f} | "
                 f"{bar['unigram_content_loss']:.3f} | {bar['unigram_content_accuracy']:.1f} | "
                 "| | | |")
  return "\n".join(lines)


def curve_table(runs) -> str:
  pre = _by(runs, "pretrain")
  steps = sorted({c["step"] for r in pre.values() for c in r["curve"]})
  lines = ["| kind | " + " | ".join(f"step {s}" for s in steps) + " |",
           "|---|" + "---|" * len(steps)]
  for kind in KINDS:
    rows = [r for (k, _), r in pre.items() if k == kind]
    if rows:
      cells = [np.mean([c["loss"] for r in rows for c in r["curve"] if c["step"] == s])
               for s in steps]
      lines.append(f"| {kind} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
  return "\n".join(lines)


def member_nll(final: dict) -> float:
  """A fine-tuned model's validation NLL, the mean over the mixture's members (each counts
  once). eval/loss is label-smoothed (a KL to the smoothed targets), not the data's likelihood."""
  return float(np.mean([final[f"{m}/nll"] for m in MEMBERS]))


def finetune_table(runs) -> str:
  ft, sc = _by(runs, "finetune"), _by(runs, "scratch")
  metrics = {"mean member nll": member_nll}
  metrics |= {f"{m}/nll": (lambda f, m=m: f[f"{m}/nll"]) for m in MEMBERS}
  metrics |= {f"{m}/{v}": (lambda f, k=f"{m}/{v}": f[k]) for m, v in MEMBER_METRICS.items()}
  lines = ["| kind | metric | pre-trained | from scratch | pre-trained minus scratch |",
           "|---|---|---|---|---|"]
  for kind in KINDS:
    seeds = sorted(s for (k, s) in ft if k == kind and (k, s) in sc)
    for name, get in metrics.items() if seeds else []:
      a = [get(ft[(kind, s)]["final"]) for s in seeds]
      b = [get(sc[(kind, s)]["final"]) for s in seeds]
      lines.append(f"| {kind} | {name} | {_mean_sd(a)} | {_mean_sd(b)} | "
                   f"{_delta(np.subtract(a, b))} |")
  return "\n".join(lines)


def gap_table(runs) -> str:
  """Each kind's fine-tuned mean member NLL minus dot's, with and without pre-training."""
  ft, sc = _by(runs, "finetune"), _by(runs, "scratch")
  lines = ["| kind | minus dot, pre-trained | minus dot, from scratch | gap narrowed by |",
           "|---|---|---|---|"]
  for kind in KINDS[1:]:
    seeds = [s for (k, s) in ft if k == kind and ("dot", s) in ft and (kind, s) in sc
             and ("dot", s) in sc]
    if not seeds:
      continue
    g_ft = [member_nll(ft[(kind, s)]["final"]) - member_nll(ft[("dot", s)]["final"])
            for s in seeds]
    g_sc = [member_nll(sc[(kind, s)]["final"]) - member_nll(sc[("dot", s)]["final"])
            for s in seeds]
    lines.append(f"| {kind} | {_delta(g_ft)} | {_delta(g_sc)} | "
                 f"{_delta(np.subtract(g_sc, g_ft))} |")
  return "\n".join(lines)


def pilot_table(runs, bar: dict | None) -> str:
  """One row a pilot run (stage "pilot"): its settings, loss by step, masked pieces at the end."""
  steps = sorted({c["step"] for r in runs for c in r["curve"]})
  lines = ["| learning rate, decay | dropout | " + " | ".join(f"step {s}" for s in steps)
           + " | masked pieces: loss (right %) at step |", "|---|---|" + "---|" * (len(steps) + 1)]
  for r in sorted(runs, key=lambda r: (r["settings"]["dropout_rate"] == 0,
                                        r["settings"]["learning_rate"])):
    cfg, by_step = r["settings"], {c["step"]: c["loss"] for c in r["curve"]}
    cells = [f"{by_step[s]:.3f}" if s in by_step else "" for s in steps]
    span = r["span"]
    lines.append(f"| {cfg['learning_rate']:g}, {cfg['decay']} | {cfg['dropout_rate']:g} | "
                 + " | ".join(cells) + f" | {span['content_loss']:.3f} "
                 f"({span['content_accuracy']:.1f}) at {r['span_step']} |")
  if bar:
    lines.append("| context-free predictor | | " + " | ".join(
        f"{bar['unigram_loss']:.3f}" for _ in steps) + f" | {bar['unigram_content_loss']:.3f} "
        f"({bar['unigram_content_accuracy']:.1f}) |")
  return "\n".join(lines)


def finetune_pilot_table(runs) -> str:
  """One row a fine-tuning pilot (stage "finetune_pilot"): where it started, the mean member NLL
  by step, then each member's NLL and own metric at the end."""
  steps = sorted({c["step"] for r in runs for c in r["curve"]} | {r["steps"] for r in runs})
  head = ["started from", *(f"step {s}" for s in steps),
          *(f"{m.removeprefix('offline_').removesuffix('_t5')}: nll, {v}"
            for m, v in MEMBER_METRICS.items())]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for r in sorted(runs, key=lambda r: r["settings"]["init_from"] == ""):
    by_step = {c["step"]: member_nll(c) for c in r["curve"]}
    by_step[r["steps"]] = member_nll(r["final"])
    cells = [f"{by_step[s]:.3f}" if s in by_step else "" for s in steps]
    cells += [f"{r['final'][f'{m}/nll']:.3f}, {r['final'][f'{m}/{v}']:.1f}"
              for m, v in MEMBER_METRICS.items()]
    source = r["settings"]["init_from"] or "scratch"
    lines.append(f"| {r['kind']} from {source} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def markdown(runs, bar: dict | None = None, pretrain_steps: int | None = None) -> str:
  """The tables at one pre-training budget (default: the largest recorded)."""
  pilots = [r for r in runs if r["stage"] == "pilot"]
  if pilots:
    return pilot_table(pilots, bar)
  finetune_pilots = [r for r in runs if r["stage"] == "finetune_pilot"]
  if finetune_pilots:
    return finetune_pilot_table(finetune_pilots)
  budgets = [r["pretrain_steps"] for r in runs if r["stage"] == "pretrain"]
  pretrain_steps = pretrain_steps or max(budgets, default=0)
  runs = [r for r in runs if r["pretrain_steps"] in (0, pretrain_steps)]
  return "\n\n".join([f"Pre-training budget: {pretrain_steps} steps.",
      "Pre-training (span corruption, validation targets):", pretrain_table(runs, bar),
      "Pre-training validation loss by step (mean over seeds):", curve_table(runs),
      "Fine-tuning on offline_t5_finetune (validation NLL, the mean of the members'):",
      finetune_table(runs), "Gap to dot after fine-tuning (mean member NLL):", gap_table(runs)])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("action", choices=["bar", "report"])
  p.add_argument("--out", default="experiments/results/recipe29")
  p.add_argument("--data_dir", default="data")
  p.add_argument("--pretrain_steps", type=int, default=None,
                 help="the pre-training budget to report (default: the largest recorded)")
  args = p.parse_args(argv)
  path = os.path.join(args.out, "bar.json")
  if args.action == "bar":
    bar = unigram_bar(args.data_dir)
    with open(path, "w") as f:
      json.dump(bar, f, indent=1)
    print(bar)
    return 0
  bar = json.load(open(path)) if os.path.exists(path) else None
  print(markdown(load(args.out), bar, args.pretrain_steps))
  return 0


if __name__ == "__main__":
  sys.exit(main())
