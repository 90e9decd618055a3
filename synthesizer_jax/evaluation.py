"""Evaluation over a task's split: teacher-forced loss / perplexity / token accuracy, and
decoded predictions scored by seqio-style metric functions (BLEU, ROUGE, GLUE metrics).

Predictions follow seqio.Evaluator's conventions: model output ids are cut at EOS,
decoded with the task vocabulary, and the metric functions `fn(targets,
predictions) -> dict` of `metrics.METRIC_FNS[task_info.metric]` are applied to the
decoded strings (class ids for classifiers).

A mixture's run (`Run.members`) is evaluated member by member, each on its own split by its
own metric: the results are named "<member>/<metric>", plus "loss", the unweighted mean of
the members' losses (`merge_members`).

Layers: above the run's set-up (`run.py`), which `evaluate_checkpoint` uses, and below the
training loop (`loop.py`); the predictions themselves come from the model shape
(`shapes.py`) through `predictions.py`, whose helpers are also importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from synthesizer_jax import checkpointing, paths
from synthesizer_jax import metrics as metrics_lib
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import MeshConfig, ModelConfig, RunConfig, TrainConfig
from synthesizer_jax.predictions import (  # noqa: F401 (also read here, as before they moved)
  EOS_ID,
  classify,
  decode_ids,
  local_rows,
  predict_tokens,
  sample_lm,
)
from synthesizer_jax.run import config_differences, setup

RESULTS_FILE = "eval_results.json"


class Stopped(Exception):
  """An evaluation given `stop` found it True (a preemption) and stopped between batches."""


def _check(stop: Callable[[], bool] | None, where: str) -> None:
  """Raises Stopped when `stop()` says so; every process calls it at the same points."""
  if stop is not None and stop():
    raise Stopped(where)


def pad_batch(batch: dict[str, np.ndarray], rows: int) -> tuple[dict[str, np.ndarray], int]:
  """Pads every feature to `rows` rows that carry zero weight; returns (batch, real rows)."""
  n = next(iter(batch.values())).shape[0]
  if n == rows:
    return batch, n
  # Classifier targets pad with -1 (= unlabelled, weight 0); everything else with 0.
  return {k: np.concatenate([v, np.full((rows - n,) + v.shape[1:], -1 if k == "targets" else 0,
                                        v.dtype)]) for k, v in batch.items()}, n


def teacher_forced(run, state, batches: Iterator[dict[str, np.ndarray]],
                   num_batches: int, stop: Callable[[], bool] | None = None) -> dict[str, float]:
  """Loss, perplexity and token (or example) accuracy over up to `num_batches` batches
  (`stop`: asked before each batch; True raises Stopped)."""
  totals: dict[str, float] | None = None
  for i, batch in enumerate(batches):
    if i >= num_batches:
      break
    _check(stop, f"before evaluation batch {i}")
    batch, _ = pad_batch(batch, run.local_batch_size)
    sums = jax.device_get(run.eval_step(state, shd.global_batch(batch, run.mesh)))
    totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
  if totals is None:
    raise ValueError(f"the {run.cfg.task!r} eval split gave no batches")
  return run.shape.eval_metrics(metrics_lib.lm_metrics(totals))


def predictions(run, state, batches: Iterator[dict[str, np.ndarray]], num_batches: int,
                stop: Callable[[], bool] | None = None) -> tuple[list[Any], list[Any], list[Any]]:
  """(inputs, targets, predictions) decoded as the task's metric functions expect."""
  variables = {"params": state.params, **state.constants}
  inputs, targets, preds = [], [], []
  for i, batch in enumerate(batches):
    if i >= num_batches:
      break
    _check(stop, f"before prediction batch {i}")
    batch, n = pad_batch(batch, run.local_batch_size)
    valid = (np.arange(run.local_batch_size) < n) & run.shape.valid_rows(batch)
    # Global arrays; gathered back, every process sees all rows in the same order.
    g = shd.global_batch({"enc": batch["encoder_input_tokens"],
                          "tgt": batch[run.shape.target_feature], "valid": valid}, run.mesh)
    rows = local_rows(g)
    src, keep = rows["enc"], rows["valid"]
    out = run.shape.predict(run.model, variables, src, g["enc"], run)
    tgt, pred = run.shape.format(run.vocab, rows["tgt"][keep], out[keep], run.info.metric)
    inputs += [decode_ids(run.vocab, row) for row in src[keep]]
    targets += tgt
    preds += pred
  return inputs, targets, preds


def evaluate(run, state, split: str = "validation", num_batches: int | None = None,
             predict_batches: int | None = None,
             stop: Callable[[], bool] | None = None) -> dict[str, Any]:
  """All metrics of `run`'s task on `split`: teacher-forced ones, then decoded-prediction ones
  (a mixture: every member's, `merge_members`).

  `stop`, if given, is asked before every batch (the same number of times on every process);
  when it returns True the evaluation raises `Stopped`.
  """
  if run.members:
    return merge_members({m.cfg.task: evaluate(m, state, split, num_batches, predict_batches,
                                               stop) for m in run.members})
  num_batches = run.cfg.eval_batches if num_batches is None else num_batches
  predict_batches = run.cfg.predict_batches if predict_batches is None else predict_batches
  results: dict[str, Any] = {}
  if num_batches > 0:
    results.update(teacher_forced(run, state, run.eval_batches(split), num_batches, stop))
  fns = metrics_lib.METRIC_FNS.get(run.info.metric)
  examples = []
  if fns and predict_batches > 0 and run.shape.predicts:
    inputs, targets, preds = predictions(run, state, run.eval_batches(split), predict_batches,
                                         stop)
    predicted = metrics_lib.compute(fns, targets, preds)
    # A name both passes compute (a classifier's accuracy) keeps the teacher-forced value,
    # which covered `examples` rows; the decoded metrics cover `predicted_examples`.
    results.update({k: v for k, v in predicted.items() if k not in results})
    results["predicted_examples"] = float(len(targets))
    examples = [{"input": i, "target": t, "prediction": p}
                for i, t, p in list(zip(inputs, targets, preds, strict=False))[:5]]
  return {"metrics": results, "examples": examples}


def final_results(run, state, split: str = "validation",
                  stop: Callable[[], bool] | None = None) -> dict[str, Any]:
  """`evaluate`, the shape's reference metrics (an LM's unigram perplexity and bits per
  byte) and its text sample (an LM's greedy continuation of the prompt). `stop`: as in
  `evaluate`, also asked before the reference metrics and before the sample. A mixture:
  every member's, `merge_members`."""
  if run.members:
    return merge_members({m.cfg.task: final_results(m, state, split, stop)
                          for m in run.members})
  results = evaluate(run, state, split, stop=stop)
  _check(stop, "before the reference metrics")
  results["metrics"].update(run.shape.reference_metrics(run, split, results["metrics"]))
  _check(stop, "before the text sample")
  variables = {"params": state.params, **state.constants}
  # every process; e.g. {"sample": greedy text, "sample_top_p": sampled text}
  results.update(run.shape.sample(run.model, variables, run.vocab, run.cfg))
  return results


def merge_members(per_member: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
  """One result of a mixture from its members' `evaluate` / `final_results`: each member's
  metrics (and samples) under "<member>/<name>", "loss" the unweighted mean of the members'
  losses (each member counts once, whatever its rate or split size), examples tagged with
  their member's name."""
  metrics = {f"{t}/{k}": v for t, r in per_member.items() for k, v in r["metrics"].items()}
  losses = [r["metrics"]["loss"] for r in per_member.values() if "loss" in r["metrics"]]
  if len(losses) == len(per_member):
    metrics["loss"] = float(np.mean(losses))
  extra = {f"{t}/{k}": v for t, r in per_member.items() for k, v in r.items()
           if k not in ("metrics", "examples")}
  examples = [{"task": t, **e} for t, r in per_member.items() for e in r["examples"]]
  return {"metrics": metrics, "examples": examples, **extra}


def write_results(workdir: paths.PathLike, step: int, results: dict[str, Any],
                  name: str = RESULTS_FILE):
  if jax.process_index() == 0:
    paths.write_text(paths.as_path(workdir) / name,
                     json.dumps({"step": int(step), **results}, indent=2))


def evaluate_checkpoint(workdir: paths.PathLike, *, step: int | None = None,
                        split: str = "validation",
                        overrides: Mapping[str, Any] | None = None, data=None,
                        mesh_cfg=None) -> dict[str, Any]:
  """Restores a train.py checkpoint onto this machine's devices and evaluates it.

  Args:
    workdir: the run's workdir (a local directory or a gs:// URL).
    step: checkpoint step (default: latest).
    split: dataset split to score.
    overrides: TrainConfig fields to change (data_dir, eval_batches, predict_batches, ...).
    data: the data module (default `synthesizer_jax.data`).
    mesh_cfg: a `MeshConfig` to restore onto (default: all local devices, the run's rule set).

  Returns:
    {"step", "metrics", "examples"}; also written to `<workdir>/eval_<split>_<step>.json`.
  """
  paths.check_bucket(workdir)
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first with train.py")
    saved = ckpt.config(step)
    train = TrainConfig.from_dict({**saved["train"], **dict(overrides or {})})
    mesh_cfg = mesh_cfg or MeshConfig(rules=saved["mesh"]["rules"])
    run = setup(RunConfig(train=train, model=ModelConfig.from_saved(saved["model"]),
                          mesh=mesh_cfg), data)
    changed = [d for d in config_differences(saved, run.run_config())
               if d.startswith("vocabulary")]
    if changed:
      raise ValueError(f"{ckpt.step_path(step)} cannot be evaluated with this vocabulary: "
                       f"{changed[0]}. Point data_dir at the data the run was trained on.")
    state, _ = ckpt.restore(run.abstract_state(), step)
  finally:
    ckpt.close()
  results = final_results(run, state, split)
  write_results(workdir, step, results, name=f"eval_{split}_{step}.json")
  return {"step": step, **results}
