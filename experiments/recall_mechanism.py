"""Where a trained recall model's two layers look (issue 35: how a pure synthesizer solves it).

    python -m experiments.recall_mechanism --workdir W [--diag_spec '{"recall_replacement": false}']
        [--out DIR]

Runs the checkpoint of a recall run (experiments.sweep, size `learn`) on 512 validation rows
of its DiagSpec and, at every answer position (the decoder position whose input token is a
query q_j and whose target is its answer), sums each layer's and head's attention weight on
  * `key`: the slot of the key equal to q_j; `value`: the slot right after it (its value);
  * `other keys`, `other values`: the slots of the row's other pairs;
  * `asked`: the queries and answers before this one (fillers, if any, are the rest).
`uniform` is what weight spread evenly over the visible positions would put on one slot.
Prints the table, writes it as JSON and plots both layers of one row with its tokens on the
axes (`viz.plot_attention`) under --out.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from experiments import budgets, diagnostics
from synthesizer_jax import loading, paths, viz

ROWS = 512


def slot_weights(maps: dict[str, np.ndarray], targets: np.ndarray, weights: np.ndarray,
                 spec: diagnostics.DiagSpec) -> dict[str, dict[str, list[float]]]:
  """{layer: {part: [mean weight per head]}} over every answer position of the rows.

  `maps` are [rows, heads, q, k] weights over decoder positions; decoder position i reads
  target token i - 1, so the target slot t is key position t + 1.
  """
  context = 2 * spec.recall_pairs + spec.recall_filler
  is_key = (targets[:, :context] >= diagnostics.SYM) & (
      targets[:, :context] < diagnostics.SYM + spec.recall_keys)
  out = {}
  for layer, w in sorted(maps.items()):
    sums = {k: [] for k in ("key", "value", "other keys", "other values", "asked", "uniform")}
    for r, s in zip(*np.nonzero(weights)):
      keys = np.flatnonzero(is_key[r])
      match = keys[targets[r, keys] == targets[r, s - 1]][0]
      a = w[r, :, s, :]  # [heads, k]: the answer position's weights
      others = keys[keys != match]
      sums["key"].append(a[:, match + 1])
      sums["value"].append(a[:, match + 2])
      sums["other keys"].append(a[:, others + 1].sum(-1))
      sums["other values"].append(a[:, others + 2].sum(-1))
      sums["asked"].append(a[:, context + 1:s + 1].sum(-1))
      sums["uniform"].append(np.full(a.shape[0], 1.0 / (s + 1)))
    out[layer] = {k: np.mean(v, axis=0).round(3).tolist() for k, v in sums.items()}
  return out


def query_accuracy(logits, targets: np.ndarray, weights: np.ndarray) -> list[float]:
  """Greedy answer accuracy (%) of the j-th query of every row, j = 1 .. Q."""
  right = np.asarray(logits).argmax(-1) == targets
  answers = [right[r][np.flatnonzero(weights[r])] for r in range(len(targets))]
  return (100 * np.mean(answers, axis=0)).round(1).tolist()


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", required=True, help="a recall run's workdir (its checkpoint)")
  p.add_argument("--diag_spec", default="{}", help="JSON DiagSpec fields the run was given")
  p.add_argument("--out", default="", help="folder for mechanism.json and the maps' PNG")
  args = p.parse_args(argv)
  spec = diagnostics.DiagSpec(**{**budgets.diag_spec("learn"), **json.loads(args.diag_spec)})
  model, variables, config = loading.load_checkpoint(args.workdir)
  length = int(config["train"]["targets_length"])
  batches = diagnostics.DiagnosticData(spec).get_dataset(
      "diag_recall", "validation", feature_lengths={"targets": length}, batch_size=ROWS // 8)
  batches = [next(batches) for _ in range(8)]
  batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  maps = viz.attention_maps(model, variables, batch["decoder_input_tokens"])
  by_query = query_accuracy(model.apply(variables, batch["decoder_input_tokens"]),
                            batch["decoder_target_tokens"], batch["decoder_loss_weights"])
  table = slot_weights(maps, batch["decoder_target_tokens"], batch["decoder_loss_weights"], spec)
  kind = config["model"]["self_attention"]
  print(f"{args.workdir} ({kind}): mean attention weight at the answer positions, per head")
  print("  answer accuracy by query (1st .. last; the first cannot be had by elimination): "
        + ", ".join(f"{a:.1f}%" for a in by_query))
  for layer, parts in table.items():
    print(f"  {layer}")
    for part, heads in parts.items():
      print(f"    {part:13s} " + " ".join(f"{h:5.2f}" for h in heads))
  if args.out:  # local or gs://, as the workdir
    out = paths.as_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{kind.replace('+', '_plus_')}_{paths.as_path(args.workdir).name}"
    (out / f"mechanism_{name}.json").write_text(json.dumps(
        {"workdir": args.workdir, "kind": kind, "diag_spec": json.loads(args.diag_spec),
         "rows": ROWS, "accuracy_by_query": by_query, "weights": table}, indent=1))
    vocab = diagnostics.Vocab(spec.vocab_size)
    viz.plot_attention(maps, os.fspath(out / f"maps_{name}.png"), example=0,
                       tokens=batch["decoder_input_tokens"], vocab=vocab,
                       title=f"recall, {kind}: both layers, row 0")

if __name__ == "__main__":
  main()
