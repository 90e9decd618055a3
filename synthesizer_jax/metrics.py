"""Evaluation metrics, as seqio metric functions: `fn(targets, predictions) -> {name: float}`.

Targets and predictions are lists of the same length, already post-processed
(strings for BLEU / ROUGE, class ids or floats for GLUE-style metrics), so any of
these can be a seqio `Task(metric_fns=[...])` entry and seqio's own metric
functions plug into `evaluation.py` the same way. Scores are on a 0-100 scale
like T5's (correlations and MCC too), except perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Metrics = dict[str, float]


def _check(targets, predictions):
  if len(targets) != len(predictions):
    raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
  if not len(targets):
    raise ValueError("no examples to score")


def perplexity(nll_sum: float, num_tokens: float) -> float:
  """exp(mean negative log-likelihood per token)."""
  if num_tokens <= 0:
    raise ValueError("perplexity of zero tokens")
  return float(math.exp(min(nll_sum / num_tokens, 700.0)))


def lm_metrics(sums: dict[str, float]) -> Metrics:
  """Loss, perplexity and token accuracy from `steps.eval_step` sums (added over batches)."""
  weight = float(sums["weight"])
  return {"loss": float(sums["loss"]) / weight, "nll": float(sums["nll"]) / weight,
          "perplexity": perplexity(float(sums["nll"]), weight),
          "token_accuracy": 100.0 * float(sums["correct"]) / weight, "tokens": weight}


def bleu(targets: Sequence[str], predictions: Sequence[str]) -> Metrics:
  """Corpus sacreBLEU (13a tokenisation, one reference per example)."""
  import sacrebleu

  _check(targets, predictions)
  return {"bleu": float(sacrebleu.corpus_bleu(list(predictions), [list(targets)]).score)}


def rouge(targets: Sequence[str], predictions: Sequence[str]) -> Metrics:
  """Mean ROUGE-1 / 2 / L F-measures (with stemming), x100."""
  from rouge_score import rouge_scorer

  _check(targets, predictions)
  kinds = ("rouge1", "rouge2", "rougeL")
  scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
  totals = dict.fromkeys(kinds, 0.0)
  for target, prediction in zip(targets, predictions, strict=False):
    scores = scorer.score(target, prediction)
    for kind in kinds:
      totals[kind] += scores[kind].fmeasure
  return {kind: 100.0 * total / len(targets) for kind, total in totals.items()}


def sequence_accuracy(targets: Sequence, predictions: Sequence) -> Metrics:
  _check(targets, predictions)
  return {"sequence_accuracy": 100.0 * float(np.mean([t == p for t, p in
                                                      zip(targets, predictions, strict=False)]))}


def accuracy(targets: Sequence, predictions: Sequence) -> Metrics:
  _check(targets, predictions)
  return {"accuracy": 100.0 * float(np.mean(np.asarray(targets) == np.asarray(predictions)))}


def f1(targets: Sequence[int], predictions: Sequence[int]) -> Metrics:
  """F1 of class 1 for binary labels (GLUE's MRPC / QQP); macro F1 over classes otherwise."""
  _check(targets, predictions)
  t, p = np.asarray(targets), np.asarray(predictions)
  classes = np.union1d(t, p)
  positives = [1] if set(classes.tolist()) <= {0, 1} else classes.tolist()
  scores = []
  for c in positives:
    tp = float(np.sum((p == c) & (t == c)))
    fp = float(np.sum((p == c) & (t != c)))
    fn = float(np.sum((p != c) & (t == c)))
    scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
  return {"f1": 100.0 * float(np.mean(scores))}


def matthews_corrcoef(targets: Sequence[int], predictions: Sequence[int]) -> Metrics:
  """Matthews correlation (multi-class form; GLUE's CoLA metric), x100; 0 when undefined."""
  _check(targets, predictions)
  t, p = np.asarray(targets), np.asarray(predictions)
  classes = np.union1d(t, p)
  conf = np.array([[np.sum((t == a) & (p == b)) for b in classes] for a in classes], np.float64)
  n = conf.sum()
  correct = np.trace(conf)
  true_k, pred_k = conf.sum(1), conf.sum(0)
  cov_tp = correct * n - true_k @ pred_k
  denom = math.sqrt((n * n - pred_k @ pred_k) * (n * n - true_k @ true_k))
  return {"matthews_corrcoef": 0.0 if denom == 0 else 100.0 * float(cov_tp / denom)}


def pearson_spearman(targets: Sequence[float], predictions: Sequence[float]) -> Metrics:
  """Pearson and Spearman correlations (GLUE's STS-B), x100."""
  from scipy import stats

  _check(targets, predictions)
  t, p = np.asarray(targets, np.float64), np.asarray(predictions, np.float64)
  return {"pearson": 100.0 * float(stats.pearsonr(t, p)[0]),
          "spearman": 100.0 * float(stats.spearmanr(t, p)[0])}


def glue(targets: Sequence, predictions: Sequence) -> Metrics:
  """Accuracy, F1 and Matthews correlation of class predictions (every GLUE class metric)."""
  return {**accuracy(targets, predictions), **f1(targets, predictions),
          **matthews_corrcoef(targets, predictions)}


# task_info(name).metric -> metric functions applied to decoded predictions.
METRIC_FNS = {
    "bleu": (bleu,),
    "rouge": (rouge,),
    "glue": (glue,),
    "regression": (pearson_spearman,),
}


def compute(metric_fns, targets, predictions) -> Metrics:
  """Runs seqio-style metric functions and merges their dicts."""
  out: Metrics = {}
  for fn in metric_fns:
    out.update({k: float(v) for k, v in fn(targets, predictions).items()})
  return out
