"""Sweep settings: which data task each sweep task trains on, and its budget at each size.

A budget is (model fields, TrainConfig fields); every attention kind of one (task, size)
gets exactly the same budget -- steps, batch, lengths, widths -- so only the attention
differs. Parameter counts still differ between kinds (a dense synthesizer's F, a random
table of max_len^2 per head, ...); the sweep reports them per kind.

Sizes:
  tiny   a smoke test: 20 steps of a one-layer width-16 model (tests/test_experiments.py).
  small  CPU: the whole default sweep in a few hours on 2 cores.
  gpu    about 10x the tokens and 4x the width, for one GPU.
  learn  CPU budgets at which `dot` has learned the task (issue 17), for the tasks that have
         one so far: recall (issue 19's recall spec and loop settings: dot solved it on 20 of
         20 seeds) and lm (configs/offline_lm.py's model, 1,000 steps, the learning rate of
         the search in docs/results.md); translate and classify have the budgets of the
         one-seed dot trials there, at which dot did not reach the issue's bar. A task
         without one names the sizes that have it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import synthesizer_jax as sj

#: The paper's single kinds and the two mixtures every sweep runs.
KINDS = sj.KINDS + ("random+dot", "dense+dot")
SIZES = ("tiny", "small", "gpu", "learn")


def kind_order(kind: str) -> int:
  """Where `kind` goes in tables and plots: KINDS' order, unknown kinds last."""
  return KINDS.index(kind) if kind in KINDS else len(KINDS)


@dataclasses.dataclass(frozen=True)
class SweepTask:
  """One row of the sweep: the data task behind it and what to report.

  Attributes:
    name: sweep name ("lm", "recall", ...).
    data_task: the data module's task name.
    diagnostic: served by `experiments.diagnostics` instead of `synthesizer_jax.data`.
    metric: the headline metric key of a run record.
    higher_is_better: direction of `metric`.
    decode: "beam" runs beam search on held-out examples after training (seq2seq).
  """

  name: str
  data_task: str
  diagnostic: bool
  metric: str
  higher_is_better: bool
  decode: str = ""


TASKS = {
    "reverse": SweepTask("reverse", "diag_reverse", True, "token_accuracy", True),
    "recall": SweepTask("recall", "diag_recall", True, "token_accuracy", True),
    "lookup": SweepTask("lookup", "diag_lookup", True, "token_accuracy", True),
    "lm": SweepTask("lm", "offline_lm", False, "perplexity", False),
    "translate": SweepTask("translate", "offline_translate_en_de", False, "bleu", True, "beam"),
    "classify": SweepTask("classify", "offline_classify", False, "accuracy", True),
    "summarize": SweepTask("summarize", "offline_summarize", False, "rougeL", True, "beam"),
}
GROUPS = {"diagnostics": ("reverse", "lookup", "recall"), "real": ("lm", "translate", "classify"),
          "all": tuple(TASKS)}


def _model(d, heads, mlp, layers, max_len, **kw) -> dict[str, Any]:
  return dict(d_model=d, num_heads=heads, head_dim=d // heads, mlp_dim=mlp, num_layers=layers,
              max_len=max_len, dropout_rate=0.0, attention_dropout_rate=0.0, **kw)


def _train(steps, batch, lr, warmup, *, evals=5, eval_batches=8, **kw) -> dict[str, Any]:
  every = max(1, steps // evals)
  return dict(num_train_steps=steps, batch_size=batch, learning_rate=lr, warmup_steps=warmup,
              decay="cosine", log_every=max(1, min(25, steps // 4)), eval_every=every,
              eval_batches=eval_batches, predict_batches=0, checkpoint_every=steps,
              keep_checkpoints=1, **kw)


# (task, size) -> (model fields, train fields, extra): extra holds decode settings.
_DIAG_LEN = 40  # both diagnostic rows fit (33 and 32 tokens); 40 = 5 x 8 for factorized_dense
_BUDGETS = {
    "tiny": {
        "diag": (_model(16, 2, 32, 1, _DIAG_LEN), _train(20, 8, 3e-3, 2, evals=2, eval_batches=1,
                                                         targets_length=_DIAG_LEN, pack=False),
                 {}),
        "lm": (_model(16, 2, 32, 1, 32), _train(20, 8, 3e-3, 2, evals=2, eval_batches=1,
                                                targets_length=32), {}),
        "seq2seq": (_model(16, 2, 32, 1, 32), _train(20, 8, 3e-3, 2, evals=2, eval_batches=1,
                                                     inputs_length=32, targets_length=32),
                    {"beam_examples": 8, "num_beams": 2}),
        "classify": (_model(16, 2, 32, 1, 32), _train(20, 8, 3e-3, 2, evals=2, eval_batches=1,
                                                      inputs_length=32, pack=False), {}),
    },
    "small": {
        "diag": (_model(64, 4, 128, 2, _DIAG_LEN),
                 _train(1000, 32, 3e-3, 50, eval_batches=4, targets_length=_DIAG_LEN,
                        pack=False), {}),
        # The 8000-piece vocabulary dominates the cost (logits): keep width and length small.
        "lm": (_model(64, 4, 256, 2, 64),
               _train(300, 16, 3e-3, 30, eval_batches=8, targets_length=64), {}),
        "seq2seq": (_model(64, 4, 256, 2, 64),
                    _train(600, 16, 3e-3, 60, eval_batches=8, inputs_length=64,
                           targets_length=64, label_smoothing=0.1),
                    {"beam_examples": 128, "num_beams": 4}),
        "classify": (_model(64, 4, 256, 2, 128),
                     _train(400, 32, 1e-3, 40, eval_batches=12, inputs_length=128, pack=False),
                     {}),
    },
    "gpu": {
        "diag": (_model(128, 8, 512, 2, _DIAG_LEN),
                 _train(4000, 128, 1e-3, 200, eval_batches=8, targets_length=_DIAG_LEN,
                        pack=False), {}),
        "lm": (_model(512, 8, 2048, 6, 256),
               _train(20000, 64, 1e-3, 1000, eval_batches=64, targets_length=256), {}),
        "seq2seq": (_model(512, 8, 2048, 6, 128),
                    _train(20000, 64, 1e-3, 1000, eval_batches=32, inputs_length=128,
                           targets_length=128, label_smoothing=0.1),
                    {"beam_examples": 1000, "num_beams": 4}),
        "classify": (_model(512, 8, 2048, 6, 256),
                     _train(5000, 64, 5e-4, 300, eval_batches=16, inputs_length=256,
                            pack=False), {}),
    },
}
_BUDGETS["learn"] = {
    # Widths of issue 19's baseline check; 4 pairs, 4 queries (the DiagSpec below): 16 tokens.
    "recall": (_model(64, 4, 128, 2, 24),
               _train(3000, 64, 3e-3, 100, evals=30, eval_batches=8, targets_length=24,
                      pack=False), {"diag_spec": dict(recall_pairs=4, recall_queries=4,
                                                      recall_keys=16, recall_values=16,
                                                      eval_batches=8)}),
    # configs/offline_lm.py's model and schedule (d=128, 2 layers, batch 16 x 128 tokens); the
    # learning rate is half the one at which dot diverged in the search (3.2e-2).
    "lm": (_model(128, 4, 512, 2, 128),
           _train(1000, 16, 1.6e-2, 100, evals=2, eval_batches=8, targets_length=128), {}),
    # The two below are the one-seed dot trials of docs/results.md: dot does NOT reach the
    # issue's bar in them (BLEU 4.7, not 10; 78.9%, not 84.7%). They are the most a run of
    # about 15 minutes here buys, and the budget the kinds are compared at on this CPU.
    "translate": ({**_model(128, 4, 512, 2, 64), "dropout_rate": 0.1},
                  _train(1200, 16, 5e-3, 100, evals=4, eval_batches=8, inputs_length=64,
                         targets_length=64, label_smoothing=0.1),
                  {"beam_examples": 496, "num_beams": 4}),
    "classify": ({**_model(128, 4, 512, 2, 128), "dropout_rate": 0.2},
                 _train(800, 32, 1e-3, 100, evals=8, eval_batches=12, inputs_length=128,
                        pack=False, weight_decay=0.1), {}),
}
_FAMILY = {"reverse": "diag", "recall": "diag", "lookup": "diag", "lm": "lm",
           "translate": "seq2seq", "summarize": "seq2seq", "classify": "classify"}


def budget(task: str, size: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model fields, TrainConfig fields, extra) of `task` at `size`; copies, safe to edit."""
  if task not in TASKS:
    raise ValueError(f"unknown sweep task {task!r}; choose from {sorted(TASKS)} or a group "
                     f"{sorted(GROUPS)}")
  if size not in SIZES:
    raise ValueError(f"unknown size {size!r}; choose from {SIZES}")
  by_task = _BUDGETS[size]
  key = task if task in by_task else _FAMILY[task]
  if key not in by_task:
    have = [z for z in SIZES if task in _BUDGETS[z] or _FAMILY[task] in _BUDGETS[z]]
    raise ValueError(f"no budget for task {task!r} at size {size!r} yet; sizes with one: {have}")
  model, train, extra = by_task[key]
  if task == "summarize":
    train = {**train, "targets_length": min(32, train["targets_length"])}
  return dict(model), dict(train), dict(extra)


def has_budget(task: str, size: str) -> bool:
  return task in _BUDGETS[size] or _FAMILY[task] in _BUDGETS[size]


def diag_spec(size: str, task: str = "recall") -> dict[str, Any]:
  """DiagSpec fields a size sets for its diagnostic tasks (the --diag_spec flag adds to them)."""
  if not has_budget(task, size):
    return {}
  return dict(budget(task, size)[2].get("diag_spec", {}))


def expand_tasks(spec: str) -> list[str]:
  """"lm,diagnostics" -> ["lm", "reverse", "recall"] (groups expanded, order kept, no repeats)."""
  out: list[str] = []
  for part in filter(None, (p.strip() for p in spec.split(","))):
    names = GROUPS.get(part, (part,))
    for name in names:
      if name not in TASKS:
        raise ValueError(f"unknown sweep task {name!r}; choose from {sorted(TASKS)} or a "
                         f"group {sorted(GROUPS)}")
      if name not in out:
        out.append(name)
  if not out:
    raise ValueError("--tasks is empty; e.g. --tasks diagnostics,lm")
  return out
