"""Frozen, validated configuration dataclasses.

`AttentionConfig` (what one attention layer needs) lives with the attention code in
`attention/core.py` and is re-exported here. Every field is checked when the dataclass
is built, and a bad value raises a `ValueError` that names the field and says how to fix
it. Model code only ever sees these frozen objects (ml_collections ConfigDicts are
converted at the CLI boundary).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

from synthesizer_jax.attention import fused, registry
from synthesizer_jax.attention.core import AttentionConfig
from synthesizer_jax.domains import (
  FieldError,
  boolean,
  check_fields,
  int_pair,
  integer,
  knob,
  names,
  one_of,
  optional,
  real,
  text,
  unknown_fields,
)

_DTYPES = ("float32", "bfloat16", "float16")
#: ModelConfig fields that choose how a model computes, never what (the parameters and the
#: function stay the same): a checkpoint may be resumed or loaded with other values.
HOW_FIELDS = ("attention_impl", "attention_block_size")
#: The value a field had, in effect, in checkpoints saved before the field existed.
LEGACY_VALUES = {"attention_impl": "auto", "attention_block_size": 512, "norm": "rmsnorm"}
_ACTIVATIONS = ("relu", "gelu", "silu")
_NORMS = ("rmsnorm", "layernorm")


def _fail(field: str, value, why: str) -> None:
  raise ValueError(f"ModelConfig.{field}={value!r}: {why}")


def default_factor_sizes(max_len: int) -> tuple[int, int]:
  """Returns (a, b) with a * b == max_len and a the largest divisor <= sqrt(max_len)."""
  a = max(d for d in range(1, math.isqrt(max_len) + 1) if max_len % d == 0)
  return a, max_len // a


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of every model shape (see DESIGN.md section 3).

  `num_layers` is the depth of `DecoderLM` and `EncoderClassifier`; the
  encoder-decoder uses `num_encoder_layers` / `num_decoder_layers`, which
  default to `num_layers`. `attention_impl` chooses how every attention layer is
  computed ("auto": the fastest exact one; see docs/synthesizers.md), never what.
  """

  vocab_size: int = knob(256, integer(ge=1))
  d_model: int = knob(128, integer(ge=1))
  num_heads: int = knob(4, integer(ge=1))
  head_dim: int = knob(32, integer(ge=1))
  mlp_dim: int = knob(512, integer(ge=1))
  num_layers: int = knob(2, integer(ge=1))
  num_encoder_layers: int | None = knob(None, optional(integer(ge=1)))
  num_decoder_layers: int | None = knob(None, optional(integer(ge=1)))
  max_len: int = knob(128, integer(ge=1))
  dropout_rate: float = knob(0.1, real(ge=0, lt=1))
  attention_dropout_rate: float = knob(0.0, real(ge=0, lt=1))
  self_attention: str = knob("dot", text())
  cross_attention: str = knob("dot", text())
  # Synthesizer-specific sizes; None picks the documented default.
  dense_hidden_dim: int | None = knob(None, optional(integer(ge=1)))  # default: head_dim
  random_rank: int = knob(8, integer(ge=1))
  factor_sizes: tuple[int, int] | None = knob(None, optional(int_pair()))  # None: the default
  random_init_stddev: float | None = knob(None, optional(real(gt=0)))  # default: 1/sqrt(max_len)
  mlp_activation: str = knob("relu", one_of(*_ACTIVATIONS))
  # Or "rmsnorm" (T5; the default before 2026-12-02): docs/results_early.md, "Baseline check".
  norm: str = knob("layernorm", one_of(*_NORMS))
  tie_embeddings: bool = knob(True, boolean())
  pad_id: int = knob(0, integer(ge=0))
  dtype: str = knob("float32", one_of(*_DTYPES))
  attention_impl: str = knob("auto", one_of(*fused.IMPLS))
  attention_block_size: int = knob(512, integer(ge=1))

  def __post_init__(self):
    check_fields(self)
    if self.num_heads * self.head_dim != self.d_model:
      _fail("num_heads", self.num_heads,
            f"num_heads * head_dim = {self.num_heads} * {self.head_dim} = "
            f"{self.num_heads * self.head_dim} must equal d_model={self.d_model}; "
            "change head_dim or d_model")
    if self.random_rank > self.max_len:
      _fail("random_rank", self.random_rank, f"must be <= max_len={self.max_len}")
    sizes = self.factor_sizes
    if sizes is not None and sizes[0] * sizes[1] != self.max_len:
      _fail("factor_sizes", sizes, f"a * b = {sizes[0] * sizes[1]} must equal max_len="
            f"{self.max_len}; e.g. factor_sizes={default_factor_sizes(self.max_len)}")
    if self.pad_id >= self.vocab_size:
      _fail("pad_id", self.pad_id, f"must be a token id in [0, vocab_size={self.vocab_size})")
    for name in ("self_attention", "cross_attention"):
      try:
        registry.parse_kind(getattr(self, name))
      except ValueError as err:
        raise ValueError(f"ModelConfig.{name}: {err}") from None
    for name in ("self_attention", "cross_attention"):
      kind = getattr(self, name)
      try:
        fused.check_static(self.attention_impl, kind, has_dot_form=registry.has_dot_form(kind),
                           dropout_rate=self.attention_dropout_rate, dtype=self.dtype)
      except ValueError as err:
        raise ValueError(f"ModelConfig.attention_impl ({name}={kind!r}): {err}") from None

  @property
  def encoder_layers(self) -> int:
    return self.num_encoder_layers or self.num_layers

  @property
  def decoder_layers(self) -> int:
    return self.num_decoder_layers or self.num_layers

  def attention(self, kind: str) -> AttentionConfig:
    """The `AttentionConfig` of a layer of this model using `kind`."""
    return AttentionConfig(
        kind=kind,
        num_heads=self.num_heads,
        head_dim=self.head_dim,
        max_len=self.max_len,
        dense_hidden_dim=self.dense_hidden_dim or self.head_dim,
        random_rank=self.random_rank,
        factor_sizes=self.factor_sizes or default_factor_sizes(self.max_len),
        random_init_stddev=self.random_init_stddev or self.max_len ** -0.5,
        dropout_rate=self.attention_dropout_rate,
        dtype=self.dtype,
        impl=self.attention_impl,
        block_size=self.attention_block_size,
    )

  @classmethod
  def from_saved(cls, fields: dict) -> ModelConfig:
    """The ModelConfig of a saved run config (JSON lists back to tuples; fields the saving
    version did not have take their LEGACY_VALUES, which is what that version computed)."""
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items()}
    return cls(**{**LEGACY_VALUES, **fields})

  def replace(self, **changes) -> ModelConfig:
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


OPTIMIZERS = ("adamw", "adafactor")
DECAYS = ("rsqrt", "cosine", "linear", "constant")
NONFINITE_ACTIONS = ("stop", "skip")
DECODE_METHODS = ("beam", "greedy")
DATA_PIPELINES = ("auto", "seqio", "grain")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything about a run except the model (`ModelConfig`) and the mesh (`MeshConfig`).

  Lengths: `targets_length` is the decoder length (LM and enc-dec);
  `inputs_length` the encoder length (enc-dec and classifier).
  """

  task: str = knob("offline_lm", text(nonempty=True))  # a name in synthesizer_jax.data.TASKS
  data_dir: str = knob("data", text(nonempty=True))
  batch_size: int = knob(32, integer(ge=1))
  inputs_length: int = knob(128, integer(ge=1))
  targets_length: int = knob(128, integer(ge=1))
  pack: bool = knob(True, boolean())
  # "seqio": tf.data at train time; "grain": the task's ArrayRecord cache (python -m
  # synthesizer_jax.data.cache), no TensorFlow; "auto": grain for a split with a cache.
  data_pipeline: str = knob("auto", one_of(*DATA_PIPELINES))
  # Grain only: worker processes that read and convert batches (0: threads in this process).
  data_workers: int = knob(0, integer(ge=0))
  num_train_steps: int = knob(1000, integer(ge=1))
  optimizer: str = knob("adamw", one_of(*OPTIMIZERS))
  learning_rate: float = knob(1e-3, real(gt=0))
  warmup_steps: int = knob(100, integer(ge=0))
  decay: str = knob("rsqrt", one_of(*DECAYS))
  min_learning_rate_fraction: float = knob(0.1, real(ge=0, le=1))
  weight_decay: float = knob(0.01, real(ge=0))  # 0 turns it off
  b1: float = knob(0.9, real(ge=0, lt=1))
  b2: float = knob(0.98, real(ge=0, lt=1))
  clip_norm: float = knob(1.0, real(ge=0))  # 0 turns it off
  label_smoothing: float = knob(0.0, real(ge=0, lt=1))
  z_loss: float = knob(0.0, real(ge=0))
  # Output logits and loss this many target positions at a time (0: all at once): memory
  # O(batch x loss_chunk x vocab) instead of O(batch x length x vocab), recomputed in the
  # backward pass. Same loss and gradients; for long sequences and large vocabularies.
  loss_chunk: int = knob(0, integer(ge=0))
  grad_accum_steps: int = knob(1, integer(ge=1))
  seed: int = knob(0, integer(ge=0))
  log_every: int = knob(50, integer(ge=1))
  eval_every: int = knob(500, integer(ge=1))
  eval_batches: int = knob(20, integer(ge=0))
  predict_batches: int = knob(2, integer(ge=0))
  max_decode_len: int = knob(0, integer(ge=0))  # 0: targets_length
  # Seq2seq predictions for BLEU / ROUGE: beam search with GNMT length penalty, as the paper.
  decode_method: str = knob("beam", one_of(*DECODE_METHODS))
  num_beams: int = knob(4, integer(ge=1))
  length_penalty: float = knob(0.6, real(ge=0))  # 0: no length normalisation
  checkpoint_every: int = knob(500, integer(ge=1))
  keep_checkpoints: int = knob(3, integer(ge=1))
  async_checkpoints: bool = knob(True, boolean())
  # Workdir or checkpoint step dir to take parameters from (fine-tuning), and the path
  # prefixes to take ("encoder", "embed"); () = every top-level name both models have.
  init_from: str = knob("", text())
  init_params: tuple[str, ...] = knob((), names())
  # Load what init_params finds and leave the rest of a requested prefix at init (logged);
  # False refuses a prefix the source fills only in part (finetune.py).
  init_partial: bool = knob(False, boolean())
  sample_prompt: str = knob("The ", text())
  # A NaN/Inf loss or gradient never reaches the parameters: "stop" raises NonFiniteError
  # naming the step (the last good checkpoint is kept), "skip" drops that update and goes on,
  # stopping after `max_consecutive_skips` bad steps in a row.
  on_nonfinite: str = knob("stop", one_of(*NONFINITE_ACTIONS))
  max_consecutive_skips: int = knob(10, integer(ge=1))
  # Resume from the newest readable checkpoint when the latest one is corrupted (it is moved
  # to <workdir>/corrupt_checkpoints/); False raises CheckpointError naming the step instead.
  restore_fallback: bool = knob(False, boolean())
  # Check every restored array against the checksum saved with it (a flipped bit that still
  # decodes is refused like a truncated file); False skips the check for speed.
  verify_checkpoints: bool = knob(True, boolean())
  # Orbax's OCDBT layout (a step's arrays in a few large files, its default); False writes
  # one zarr array per leaf, for stores whose API omits generation headers (docs/scaling.md).
  checkpoint_ocdbt: bool = knob(True, boolean())

  def __post_init__(self):
    check_fields(self)
    if self.batch_size % self.grad_accum_steps:
      raise ValueError(f"TrainConfig.batch_size={self.batch_size}: must be a multiple of "
                       f"grad_accum_steps={self.grad_accum_steps}")
    if self.warmup_steps > self.num_train_steps:
      warnings.warn(
          f"TrainConfig.warmup_steps={self.warmup_steps} > num_train_steps="
          f"{self.num_train_steps}: the learning rate only warms up, to "
          f"{self.num_train_steps / self.warmup_steps:.0%} of learning_rate at the last step, "
          "and never decays; lower warmup_steps to train at the peak rate", stacklevel=3)

  @property
  def decode_len(self) -> int:
    return self.max_decode_len or self.targets_length

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
    """Builds from a plain mapping (e.g. `ConfigDict.to_dict()`); unknown keys are an error."""
    unknown_fields(cls, values, "TrainConfig")
    return cls(**values)


#: Names of the sharding rule sets of `sharding.RULE_SETS`.
RULE_SET_NAMES = ("dp", "fsdp", "fsdp_tp")


def _mesh_size(value):
  if not isinstance(value, int) or isinstance(value, bool) or (value < 1 and value != -1):
    raise FieldError("must be a positive size or -1 (fill)")
  return value


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh shape: ICI (within a slice / host) and DCN (across slices / hosts) sizes.

  The device mesh has axes (data, fsdp, tensor), each of size ici * dcn. One ICI
  size may be -1: it takes the devices left over in each slice. `rules` names a rule set
  of `sharding.RULE_SETS` (logical axis -> mesh axes).
  """

  data: int = knob(-1, _mesh_size)
  fsdp: int = knob(1, _mesh_size)
  tensor: int = knob(1, _mesh_size)
  dcn_data: int = knob(1, integer(ge=1))
  dcn_fsdp: int = knob(1, integer(ge=1))
  dcn_tensor: int = knob(1, integer(ge=1))
  rules: str = knob("fsdp", one_of(*RULE_SET_NAMES))
  num_devices: int = knob(0, integer(ge=0))  # use the first N devices only (0: all of them)

  def __post_init__(self):
    ici = (self.data, self.fsdp, self.tensor)
    if sum(s == -1 for s in ici) > 1:
      raise ValueError(f"MeshConfig: at most one of data/fsdp/tensor may be -1, got {ici}")
    check_fields(self)


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """A whole run: train, model and mesh configs, each validated when built.

  `model.vocab_size` is a stand-in while `vocab_from_task` is True: the task's vocabulary
  size replaces it (`model_for`) once the vocabulary is read.
  """

  train: TrainConfig
  model: ModelConfig
  mesh: MeshConfig = MeshConfig()
  vocab_from_task: bool = False

  @classmethod
  def build(cls, model: Mapping[str, Any] | ModelConfig, train: TrainConfig | Mapping[str, Any],
            mesh: MeshConfig | Mapping[str, Any] | None = None) -> RunConfig:
    """From ModelConfig fields (vocab_size 0 or absent: the task vocabulary's) or a
    ModelConfig, a TrainConfig (or its fields) and a MeshConfig (or its fields)."""
    if not isinstance(train, TrainConfig):
      train = TrainConfig.from_dict(train)
    if not isinstance(mesh, MeshConfig):
      unknown_fields(MeshConfig, mesh or {}, "mesh config")
      mesh = MeshConfig(**(mesh or {}))
    if isinstance(model, ModelConfig):
      return cls(train=train, model=model, mesh=mesh)
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(model).items()}
    unknown_fields(ModelConfig, fields, "model config")
    from_task = not fields.get("vocab_size")
    if from_task:  # a stand-in that every other field's check accepts
      pad_id = fields.get("pad_id", 0)
      fields["vocab_size"] = pad_id + 1 if isinstance(pad_id, int) and pad_id >= 0 else 1
    return cls(train=train, model=ModelConfig(**fields), mesh=mesh, vocab_from_task=from_task)

  def model_for(self, vocab_size: int) -> ModelConfig:
    """The model config for a task whose vocabulary has `vocab_size` ids."""
    if self.vocab_from_task:
      return self.model.replace(vocab_size=vocab_size)
    if self.model.vocab_size < vocab_size:
      raise ValueError(f"model.vocab_size={self.model.vocab_size} is smaller than the task "
                       f"vocabulary ({vocab_size}); set it to 0 to use the vocabulary's size")
    return self.model


def parse_config(values: Mapping[str, Any]) -> RunConfig:
  """A RunConfig from a nested mapping (a ConfigDict's `to_dict()`): top-level keys are
  TrainConfig fields, plus `model` (ModelConfig fields) and `mesh` (MeshConfig fields).
  Every field is checked here, before any data, vocabulary or device work; an unknown key
  raises ValueError naming it."""
  values = dict(values)
  model, mesh = dict(values.pop("model", {})), dict(values.pop("mesh", {}))
  return RunConfig.build(model, TrainConfig.from_dict(values), mesh)
