"""Model shapes: what a decoder LM, an encoder-decoder and a classifier each need from the
training, evaluation, checkpoint and data code, owned in one place per shape.

    shape = shapes.get("lm")                   # or a task's TaskInfo.shape
    model = shape.build(model_cfg)
    logits, targets, weights = shape.forward(model, variables, batch, deterministic=True)

No other module compares shape names. A new shape (a prefix LM, say) is one subclass of
`ModelShape` plus `register(...)`; tests/test_shapes.py defines one to prove it.

A shape owns its model, loss, predictions and samples. What its tasks' examples and
batches look like (task and batch features, packing, the feature converter) is its
`layout`, in the data layer (`data/layouts.py`), which prepares and reads tasks by name
without this module; the shape's `task_features`, `batch_features` and `packable` read it.
Layers: this module sits above the models (`transformer`, `predictions`) and the data
layouts, below `steps`, `loading`, `run` and `evaluation` (docs/training.md, "Layers").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from synthesizer_jax import attention as kinds_registry
from synthesizer_jax import predictions
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import ModelConfig, TrainConfig
from synthesizer_jax.data import layouts
from synthesizer_jax.references import lm_references
from synthesizer_jax.transformer import DecoderLM, EncoderClassifier, EncoderDecoder


class ModelShape:
  """One model shape. Subclasses set the class attributes and override what differs.

  Attributes:
    name: the registry key, stored in run configs and TaskInfo.shape.
    model_class: the Flax module class `build` returns.
    layout: its tasks' examples and batches (`data.layouts.Layout`); the properties
      `task_features` (seqio task features -> whether each ends with EOS), `batch_features`
      (what every batch holds) and `packable` (several examples may share a row) read it.
    target_feature: the batch feature holding what the model predicts.
    predicts: evaluation decodes predictions and scores them with the task's metric.
    vocab_outputs: the model ends in vocabulary logits, so `forward(return_hidden=True)`
      and `project` can compute them a chunk of positions at a time (TrainConfig.loss_chunk).
  """

  name: str = ""
  model_class: type[nn.Module] = nn.Module
  layout: layouts.Layout = layouts.Layout("")
  target_feature: str = "decoder_target_tokens"
  predicts: bool = True
  vocab_outputs: bool = False

  def __repr__(self) -> str:
    return f"<model shape {self.name!r}>"

  @property
  def task_features(self) -> Mapping[str, bool]:
    return self.layout.task_features

  @property
  def batch_features(self) -> tuple[str, ...]:
    return self.layout.batch_features

  @property
  def packable(self) -> bool:
    return self.layout.packable

  def build(self, cfg: ModelConfig, num_classes: int | None = None) -> nn.Module:
    return self.model_class(cfg)

  def check_model(self, model: nn.Module) -> None:
    """TypeError when `model` is not this shape's model (e.g. an EncoderDecoder for "lm")."""
    if not isinstance(model, self.model_class):
      raise TypeError(f"the {self.name!r} shape's model must be a {self.model_class.__name__}, got "
                      f"{type(model).__name__}; build it with shapes.get({self.name!r}).build")

  def attention_kinds(self, cfg: ModelConfig) -> list[str]:
    return [cfg.self_attention]

  def feature_lengths(self, cfg: TrainConfig) -> dict[str, int]:
    """seqio task feature lengths (`TrainConfig.inputs_length` / `targets_length`)."""
    lengths = {"inputs": cfg.inputs_length, "targets": cfg.targets_length}
    return {k: lengths[k] for k in self.task_features}

  def dummy_inputs(self, lengths: Mapping[str, int], batch: int = 1) -> tuple[jnp.ndarray, ...]:
    """Model inputs of the right shapes for `init`."""
    return tuple(jnp.ones((batch, lengths[k]), jnp.int32) for k in self.task_features)

  def forward(self, model, variables, batch, *, deterministic: bool, rngs=None,
              return_hidden: bool = False):
    """(logits, targets, weights): [b, l, V], [b, l], [b, l] (or [b, C], [b], [b]).
    `return_hidden` (shapes with `vocab_outputs`): [b, l, embed] outputs instead of logits."""
    raise NotImplementedError

  def project(self, model, variables, hidden):
    """Vocabulary logits of `forward(return_hidden=True)` outputs (any [..., embed])."""
    return model.apply(variables, hidden, method="output_logits")

  def batch_tokens(self, batch: Mapping[str, Any], pad_id: int = 0) -> int:
    """Tokens a training step learns from: the scored target tokens."""
    return int(np.sum(np.asarray(batch["decoder_loss_weights"]) > 0))

  def eval_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
    """Names the teacher-forced metrics of `metrics.lm_metrics` for this shape."""
    return metrics

  def valid_rows(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """[b] bool: rows whose prediction is scored."""
    return np.ones(len(batch[self.target_feature]), bool)

  def predict(self, model, variables, src_bs: np.ndarray, enc_global, run) -> np.ndarray:
    """Model outputs for the rows of one batch (`src_bs` on the host, `enc_global` sharded)."""
    raise NotImplementedError

  def format(self, vocab, targets: np.ndarray, outputs: np.ndarray, metric: str):
    """(targets, predictions) as the task's metric functions take them."""
    return ([predictions.decode_ids(vocab, row) for row in targets],
            [predictions.decode_ids(vocab, row) for row in outputs])

  def sample(self, model, variables, vocab, cfg: TrainConfig) -> dict[str, str]:
    """Text samples shown after training, by result key ({}: this shape shows none)."""
    return {}

  def reference_metrics(self, run, split: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Baselines reported next to the final metrics (the teacher-forced `metrics`)."""
    return {}


class LanguageModel(ModelShape):
  name = "lm"
  model_class = DecoderLM
  layout = layouts.LM
  predicts = False
  vocab_outputs = True

  def forward(self, model, variables, batch, *, deterministic: bool, rngs=None,
              return_hidden: bool = False):
    logits = model.apply(variables, batch["decoder_input_tokens"],
                         batch.get("decoder_positions"), batch.get("decoder_segment_ids"),
                         deterministic=deterministic, rngs=rngs, return_hidden=return_hidden)
    return logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"]

  def sample(self, model, variables, vocab, cfg: TrainConfig) -> dict[str, str]:
    """The greedy continuation of `cfg.sample_prompt` ("sample") and a nucleus-sampled one
    ("sample_top_p": top_p 0.9, seed 0); greedy text from a small model tends to loop."""
    if not cfg.sample_prompt:
      return {}
    args = (model, variables, vocab, cfg.sample_prompt, cfg.targets_length)
    return {"sample": predictions.sample_lm(*args),
            "sample_top_p": predictions.sample_lm(*args, top_p=0.9)}

  def reference_metrics(self, run, split: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The unigram baseline and bits per byte (`references.py`)."""
    return lm_references(run, split, metrics) if "nll" in metrics else {}


class EncoderDecoderShape(ModelShape):
  name = "encdec"
  model_class = EncoderDecoder
  layout = layouts.ENCDEC
  vocab_outputs = True

  def attention_kinds(self, cfg: ModelConfig) -> list[str]:
    return [cfg.self_attention, cfg.cross_attention]

  def forward(self, model, variables, batch, *, deterministic: bool, rngs=None,
              return_hidden: bool = False):
    logits = model.apply(variables, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                         batch.get("encoder_positions"), batch.get("decoder_positions"),
                         batch.get("encoder_segment_ids"), batch.get("decoder_segment_ids"),
                         deterministic=deterministic, rngs=rngs, return_hidden=return_hidden)
    return logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"]

  def predict(self, model, variables, src_bs, enc_global, run) -> np.ndarray:
    c = run.cfg  # every process decodes all rows (host arrays in, host arrays out)
    return predictions.predict_tokens(model, variables, src_bs, c.decode_len, c.decode_method,
                                      c.num_beams, c.length_penalty)


class Classifier(ModelShape):
  name = "classifier"
  model_class = EncoderClassifier
  layout = layouts.CLASSIFIER
  target_feature = "targets"

  def build(self, cfg: ModelConfig, num_classes: int | None = None) -> nn.Module:
    return EncoderClassifier(cfg, num_classes=num_classes)

  def forward(self, model, variables, batch, *, deterministic: bool, rngs=None,
              return_hidden: bool = False):
    if return_hidden:
      raise ValueError("the classifier ends in class logits, not vocabulary logits: "
                       "it has no hidden outputs to project in chunks")
    logits = model.apply(variables, batch["encoder_input_tokens"], deterministic=deterministic,
                         rngs=rngs)
    targets = batch["targets"]
    # -1 marks an unlabelled example (a test split); padded eval rows carry weight 0 too.
    weights = (targets >= 0).astype(jnp.float32)
    if "example_weights" in batch:
      weights = weights * batch["example_weights"]
    return logits, jnp.maximum(targets, 0), weights

  def batch_tokens(self, batch: Mapping[str, Any], pad_id: int = 0) -> int:
    """The non-padding input tokens (the targets are class labels, 0 included)."""
    return int(np.sum(np.asarray(batch["encoder_input_tokens"]) != pad_id))

  def eval_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
    return {"loss": metrics["loss"], "accuracy": metrics["token_accuracy"],
            "examples": metrics["tokens"]}

  def valid_rows(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(batch["targets"]) >= 0  # -1: unlabelled (test splits)

  def predict(self, model, variables, src_bs, enc_global, run) -> np.ndarray:
    with shd.mesh_context(run.mesh, run.rules):
      return predictions.local_rows(predictions.classify(model, variables, enc_global))

  def format(self, vocab, targets: np.ndarray, outputs: np.ndarray, metric: str):
    preds = outputs[:, 0] if metric == "regression" else outputs.argmax(-1)
    return targets.tolist(), preds.tolist()


SHAPES: dict[str, ModelShape] = {}


def register(shape: ModelShape) -> ModelShape:
  """Adds `shape` to the registry under `shape.name` (a name may be registered once)."""
  if not shape.name or shape.name in SHAPES:
    raise ValueError(f"model shape name {shape.name!r} is empty or already registered")
  SHAPES[shape.name] = shape
  return shape


def get(shape: str | ModelShape) -> ModelShape:
  """The registered shape called `shape` (a ModelShape is returned as is)."""
  if isinstance(shape, ModelShape):
    return shape
  try:
    return SHAPES[shape]
  except (KeyError, TypeError):
    raise ValueError(f"unknown model shape {shape!r}; expected one of {tuple(SHAPES)}") from None


def uses_positions(shape: ModelShape, cfg: ModelConfig) -> bool:
  """Whether any attention kind of the model is built for positions < cfg.max_len."""
  return any(kinds_registry.uses_positions(k) for k in shape.attention_kinds(cfg))


for _shape in (LanguageModel(), EncoderDecoderShape(), Classifier()):
  register(_shape)
