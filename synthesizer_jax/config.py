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

from synthesizer_jax.attention import fused, registry
from synthesizer_jax.attention.core import AttentionConfig

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

  vocab_size: int = 256
  d_model: int = 128
  num_heads: int = 4
  head_dim: int = 32
  mlp_dim: int = 512
  num_layers: int = 2
  num_encoder_layers: int | None = None
  num_decoder_layers: int | None = None
  max_len: int = 128
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  self_attention: str = "dot"
  cross_attention: str = "dot"
  # Synthesizer-specific sizes; None picks the documented default.
  dense_hidden_dim: int | None = None  # default: head_dim
  random_rank: int = 8
  factor_sizes: tuple[int, int] | None = None  # default: default_factor_sizes
  random_init_stddev: float | None = None  # default: 1 / sqrt(max_len)
  mlp_activation: str = "relu"
  norm: str = "layernorm"  # or "rmsnorm" (T5; the default before 2026-12-02): docs/results.md
  tie_embeddings: bool = True
  pad_id: int = 0
  dtype: str = "float32"
  attention_impl: str = "auto"
  attention_block_size: int = 512

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "num_heads", "head_dim", "mlp_dim",
                 "num_layers", "max_len", "random_rank", "attention_block_size"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _fail(name, value, "must be a positive integer")
    for name in ("num_encoder_layers", "num_decoder_layers", "dense_hidden_dim"):
      value = getattr(self, name)
      if value is not None and (not isinstance(value, int) or value < 1):
        _fail(name, value, "must be a positive integer or None")
    for name in ("dropout_rate", "attention_dropout_rate"):
      value = getattr(self, name)
      if not 0.0 <= value < 1.0:
        _fail(name, value, "must be in [0, 1)")
    if self.random_init_stddev is not None and self.random_init_stddev <= 0:
      _fail("random_init_stddev", self.random_init_stddev, "must be > 0")
    if self.num_heads * self.head_dim != self.d_model:
      _fail("num_heads", self.num_heads,
            f"num_heads * head_dim = {self.num_heads} * {self.head_dim} = "
            f"{self.num_heads * self.head_dim} must equal d_model={self.d_model}; "
            "change head_dim or d_model")
    if self.random_rank > self.max_len:
      _fail("random_rank", self.random_rank, f"must be <= max_len={self.max_len}")
    if self.factor_sizes is not None:
      sizes = tuple(self.factor_sizes)
      if len(sizes) != 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
        _fail("factor_sizes", self.factor_sizes, "must be two positive integers (a, b)")
      if sizes[0] * sizes[1] != self.max_len:
        _fail("factor_sizes", self.factor_sizes,
              f"a * b = {sizes[0] * sizes[1]} must equal max_len={self.max_len}; "
              f"e.g. factor_sizes={default_factor_sizes(self.max_len)}")
      object.__setattr__(self, "factor_sizes", sizes)
    if self.dtype not in _DTYPES:
      _fail("dtype", self.dtype, f"must be one of {_DTYPES}")
    if self.mlp_activation not in _ACTIVATIONS:
      _fail("mlp_activation", self.mlp_activation, f"must be one of {_ACTIVATIONS}")
    if self.norm not in _NORMS:
      _fail("norm", self.norm, f"must be one of {_NORMS}")
    if not 0 <= self.pad_id < self.vocab_size:
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
                           dropout_rate=self.attention_dropout_rate, dtype=self.dtype,
                           has_bias=registry.has_bias(kind))
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
