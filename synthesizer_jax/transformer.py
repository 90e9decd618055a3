"""Transformer layers and the three model shapes of the paper.

`DecoderLM` (language modelling), `EncoderDecoder` (translation,
summarisation, dialogue) and `EncoderClassifier` (GLUE-style classification),
all pre-norm Transformers whose self-attention is any kind of the registry.
Token id `cfg.pad_id` marks padding when `segment_ids` is not given; packed
inputs pass seqio-style `segment_ids` (0 = padding) and, optionally,
segment-relative `positions` (derived from `segment_ids` when omitted).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthesizer_jax import attention as registry
from synthesizer_jax import checks
from synthesizer_jax.attention import Attention
from synthesizer_jax.attention.core import Mask
from synthesizer_jax.attention.layer import check_mode
from synthesizer_jax.attention.positions import Positions
from synthesizer_jax.config import ModelConfig
from synthesizer_jax.layers import MLP, NORMS, Embed, Projection, constrain, sinusoidal_positions

ACT = ("batch", "length", "embed")


def segment_positions(segment_ids_bl: jax.Array) -> jax.Array:
  """Position of each token within its segment: 0 at every change of segment id."""
  idx_bl = jnp.broadcast_to(jnp.arange(segment_ids_bl.shape[1]), segment_ids_bl.shape)
  starts_bl = jnp.concatenate(
      [jnp.ones_like(segment_ids_bl[:, :1], bool), segment_ids_bl[:, 1:] != segment_ids_bl[:, :-1]],
      axis=1)
  start_idx_bl = jax.lax.cummax(jnp.where(starts_bl, idx_bl, 0), axis=1)
  return idx_bl - start_idx_bl


class _Inputs:
  """Validity, segments and positions of one token sequence (encoder or decoder side)."""

  def __init__(self, tokens_bl, positions_bl, segment_ids_bl, cfg: ModelConfig, kinds):
    if tokens_bl.ndim != 2:
      raise ValueError(f"tokens must have shape [batch, length], got {tokens_bl.shape}")
    length = tokens_bl.shape[1]
    self.segments = segment_ids_bl
    if segment_ids_bl is None:
      self.valid = tokens_bl != cfg.pad_id
    else:
      self.valid = segment_ids_bl != 0
    # `attend` is what attention layers get; `positions` feeds the sinusoidal embedding.
    if positions_bl is None and segment_ids_bl is None:
      self.attend = Positions.contiguous(length)  # sliced, shared by every row
      if any(registry.uses_positions(k) for k in kinds):
        self.attend.check(cfg.max_len)
    else:
      if positions_bl is None:
        positions_bl = segment_positions(segment_ids_bl)
      self.attend = Positions.of(positions_bl)
    self.positions = self.attend.dense()


def _checked(cfg: ModelConfig, tokens, positions, segment_ids, prefix: str, kinds,
             mode: str = "train"):
  """(tokens, positions, segment_ids) checked against the model (see `checks.model_inputs`)."""
  return checks.model_inputs(tokens, positions, segment_ids, prefix, max_len=cfg.max_len,
                             uses_positions=any(registry.uses_positions(k) for k in kinds),
                             mode=mode)


def _same_batch(encoder_tokens, decoder_tokens) -> None:
  if encoder_tokens.shape[0] != decoder_tokens.shape[0]:
    raise ValueError(
        f"encoder_tokens has shape {tuple(encoder_tokens.shape)} but decoder_tokens has shape "
        f"{tuple(decoder_tokens.shape)}: the batch sizes must match (one source row per "
        "target row)")


def _cached_inputs(tokens_bl, positions_bl, segment_ids_bl, mode: str) -> jax.Array:
  """Positions of the new tokens in prefill / decode mode (negative: left padding)."""
  check_mode(mode)
  if segment_ids_bl is not None:
    raise ValueError(f"mode={mode!r} decodes unpacked sequences: pass segment_ids=None")
  if positions_bl is None:
    if mode == "decode":
      raise ValueError("mode='decode' needs the positions of the new tokens "
                       "(sj.decoding passes them)")
    positions_bl = jnp.arange(tokens_bl.shape[1])[None, :]
  return positions_bl


def _causal_mask(inp: _Inputs) -> Mask:
  """Causal (+ same-segment) mask.

  Decoders need no key padding mask: right padding is in the future of every real token.
  """
  return Mask(q_segments_bq=inp.segments, k_segments_bk=inp.segments, causal=True)


def _padding_mask(inp: _Inputs) -> Mask:
  """Bidirectional mask of an encoder: valid tokens of the same segment."""
  return Mask(inp.valid, inp.valid, inp.segments, inp.segments)


class _Model(nn.Module):
  """Shared input embedding (+ sinusoidal positions) and tied or separate output logits."""

  cfg: ModelConfig

  def setup_io(self):
    cfg = self.cfg
    self.embed = Embed(cfg.vocab_size, cfg.d_model, cfg.dtype)
    self.input_dropout = nn.Dropout(cfg.dropout_rate)
    if not cfg.tie_embeddings:
      self.logits_dense = Projection((cfg.vocab_size,), ("embed",), ("vocab",), dtype=cfg.dtype)

  def embed_tokens(self, tokens_bl, positions_bl, deterministic):
    cfg = self.cfg
    signal = sinusoidal_positions(jnp.maximum(positions_bl, 0), cfg.d_model)  # < 0: padding slot
    x_ble = self.embed(tokens_bl) + signal.astype(cfg.dtype)
    return constrain(self.input_dropout(x_ble, deterministic=deterministic), ACT)

  def output_logits(self, x_ble):
    if self.cfg.tie_embeddings:
      logits_blv = self.embed.attend(x_ble)
    else:
      logits_blv = self.logits_dense(x_ble)
    return constrain(logits_blv.astype(jnp.float32), ("batch", "length", "vocab"))


class Block(nn.Module):
  """Pre-norm Transformer block: self-attention, optional cross-attention, MLP, each residual.

  The encoder's and the decoder's blocks differ only in their masks (bidirectional with
  padding vs causal) and in `cross`.
  """

  cfg: ModelConfig
  cross: bool = False

  @nn.compact
  def __call__(self, x_bqe, self_mask, pos_bq, deterministic: bool, encoded_bke=None,
               cross_mask=None, enc_pos_bk=None, mode: str = "train"):
    cfg = self.cfg
    drop = nn.Dropout(cfg.dropout_rate)

    def residual(x, h):
      return constrain(x + drop(h, deterministic=deterministic), ACT)

    h_bqe = NORMS[cfg.norm](dtype=cfg.dtype, name="pre_self_attention_norm")(x_bqe)
    h_bqe = Attention(cfg.attention(cfg.self_attention), name="self_attention")(
        h_bqe, h_bqe, self_mask, pos_bq, pos_bq, deterministic=deterministic, mode=mode)
    x_bqe = residual(x_bqe, h_bqe)
    if self.cross:
      h_bqe = NORMS[cfg.norm](dtype=cfg.dtype, name="pre_cross_attention_norm")(x_bqe)
      h_bqe = Attention(cfg.attention(cfg.cross_attention), cross=True, name="cross_attention")(
          h_bqe, encoded_bke, cross_mask, Positions.of(pos_bq, x_bqe.shape[1]).clipped(),
          enc_pos_bk,
          deterministic=deterministic, mode=mode)
      x_bqe = residual(x_bqe, h_bqe)
    h_bqe = NORMS[cfg.norm](dtype=cfg.dtype, name="pre_mlp_norm")(x_bqe)
    h_bqe = MLP(cfg.d_model, cfg.mlp_dim, cfg.mlp_activation, cfg.dropout_rate, cfg.dtype,
                name="mlp")(h_bqe, deterministic)
    return residual(x_bqe, h_bqe)


class Stack(nn.Module):
  """`num_layers` Blocks over embedded inputs, then a final norm: the encoder
  (`cross=False`, bidirectional mask) or the decoder (causal mask, `cross` in enc-dec)."""

  cfg: ModelConfig
  num_layers: int
  cross: bool = False

  @nn.compact
  def __call__(self, x_bqe, mask, pos_bq, deterministic: bool, encoded_bke=None,
               cross_mask=None, enc_pos_bk=None, mode: str = "train"):
    for i in range(self.num_layers):
      x_bqe = Block(self.cfg, self.cross, name=f"layers_{i}")(
          x_bqe, mask, pos_bq, deterministic, encoded_bke, cross_mask, enc_pos_bk, mode)
    return NORMS[self.cfg.norm](dtype=self.cfg.dtype, name="final_norm")(x_bqe)


class DecoderLM(_Model):
  """Decoder-only language model: tokens [b, l] -> next-token logits [b, l, vocab] (float32).

  `tokens` are the model's inputs (targets shifted right by the caller).
  """

  def setup(self):
    self.setup_io()
    self.decoder = Stack(self.cfg, self.cfg.decoder_layers)

  def __call__(self, tokens, positions=None, segment_ids=None, *, deterministic: bool = True,
               mode: str = "train", return_hidden: bool = False):
    """Logits [b, l, vocab]. mode "prefill"/"decode" read and extend the "cache" collection
    (see `synthesizer_jax.decoding`); positions < 0 then mark left padding. `return_hidden`:
    the final-norm outputs [b, l, embed] instead, for `output_logits` in chunks."""
    check_mode(mode)
    tokens, positions, segment_ids = _checked(self.cfg, tokens, positions, segment_ids, "",
                                              [self.cfg.self_attention], mode)
    if mode == "train":
      inp = _Inputs(tokens, positions, segment_ids, self.cfg, [self.cfg.self_attention])
      x = self.embed_tokens(tokens, inp.positions, deterministic)
      x = self.decoder(x, _causal_mask(inp), inp.attend, deterministic)
    else:
      positions = _cached_inputs(tokens, positions, segment_ids, mode)
      x = self.embed_tokens(tokens, positions, deterministic)
      x = self.decoder(x, None, positions, deterministic, mode=mode)
    return x if return_hidden else self.output_logits(x)


class EncoderDecoder(_Model):
  """Encoder-decoder: (encoder_tokens [b, s], decoder_tokens [b, t]) -> logits [b, t, vocab].

  `decoder_tokens` are the decoder's inputs (targets shifted right, starting
  with `pad_id` as T5 does). Self-attention kind: `cfg.self_attention` in both
  stacks; cross-attention kind: `cfg.cross_attention` (`dot` by default).
  """

  def setup(self):
    cfg = self.cfg
    self.setup_io()
    self.encoder = Stack(cfg, cfg.encoder_layers)
    self.decoder = Stack(cfg, cfg.decoder_layers, cross=True)

  def encode(self, encoder_tokens, encoder_positions=None, encoder_segment_ids=None, *,
             deterministic: bool = True):
    """Encoder outputs [b, s, embed]."""
    enc = _checked(self.cfg, encoder_tokens, encoder_positions, encoder_segment_ids, "encoder_",
                   [self.cfg.self_attention])
    return self._encode(*enc, deterministic=deterministic)

  def _encode(self, encoder_tokens, encoder_positions, encoder_segment_ids, *, deterministic):
    cfg = self.cfg
    inp = _Inputs(encoder_tokens, encoder_positions, encoder_segment_ids, cfg, [cfg.self_attention])
    x = self.embed_tokens(encoder_tokens, inp.positions, deterministic)
    return self.encoder(x, _padding_mask(inp), inp.attend, deterministic)

  def decode(self, encoded, encoder_tokens, decoder_tokens, encoder_positions=None,
             decoder_positions=None, encoder_segment_ids=None, decoder_segment_ids=None, *,
             deterministic: bool = True, mode: str = "train"):
    """Decoder logits [b, t, vocab] given `encoded` = `encode(encoder_tokens, ...)`.

    mode "prefill" caches the encoder's keys/values and the decoder prompt; "decode" extends
    the cache by the new decoder tokens and needs no encoder inputs (pass None).
    """
    cfg = self.cfg
    check_mode(mode)
    kinds = [cfg.self_attention, cfg.cross_attention]
    decoder_tokens, decoder_positions, decoder_segment_ids = _checked(
        cfg, decoder_tokens, decoder_positions, decoder_segment_ids, "decoder_", kinds, mode)
    if mode != "decode":  # the encoder's side is read in train and prefill modes only
      encoder_tokens, encoder_positions, encoder_segment_ids = _checked(
          cfg, encoder_tokens, encoder_positions, encoder_segment_ids, "encoder_",
          [cfg.cross_attention])
      _same_batch(encoder_tokens, decoder_tokens)
      if encoded is None or tuple(encoded.shape[:2]) != tuple(encoder_tokens.shape):
        raise ValueError(
            f"encoded has shape {None if encoded is None else tuple(encoded.shape)}, "
            f"encoder_tokens {tuple(encoder_tokens.shape)}: pass encoded = "
            "model.encode(encoder_tokens, ...) of these encoder_tokens ([batch, length, embed])")
    return self._decode(encoded, encoder_tokens, decoder_tokens, encoder_positions,
                        decoder_positions, encoder_segment_ids, decoder_segment_ids,
                        deterministic=deterministic, mode=mode)

  def _decode(self, encoded, encoder_tokens, decoder_tokens, encoder_positions,
              decoder_positions, encoder_segment_ids, decoder_segment_ids, *, deterministic,
              mode, return_hidden: bool = False):
    cfg = self.cfg
    if mode != "train":
      positions = _cached_inputs(decoder_tokens, decoder_positions, decoder_segment_ids, mode)
      enc_pos = cross_mask = None
      if mode == "prefill":
        enc = _Inputs(encoder_tokens, encoder_positions, encoder_segment_ids, cfg,
                      [cfg.cross_attention])
        if enc.segments is not None:
          raise ValueError("mode='prefill' decodes unpacked sequences: pass segment_ids=None")
        enc_pos = enc.positions
        cross_mask = Mask(k_valid_bk=enc.valid)
      x = self.embed_tokens(decoder_tokens, positions, deterministic)
      x = self.decoder(x, None, positions, deterministic, encoded, cross_mask, enc_pos, mode=mode)
      return self.output_logits(x)
    enc = _Inputs(encoder_tokens, encoder_positions, encoder_segment_ids, cfg,
                  [cfg.cross_attention])
    dec = _Inputs(decoder_tokens, decoder_positions, decoder_segment_ids, cfg,
                  [cfg.self_attention, cfg.cross_attention])
    if (dec.segments is None) != (enc.segments is None):
      raise ValueError("pass segment_ids for both encoder and decoder (packed) or for neither")
    self_mask = _causal_mask(dec)
    cross_mask = Mask(None, enc.valid, dec.segments, enc.segments)
    x = self.embed_tokens(decoder_tokens, dec.positions, deterministic)
    x = self.decoder(x, self_mask, dec.attend, deterministic, encoded, cross_mask, enc.attend)
    return x if return_hidden else self.output_logits(x)

  def __call__(self, encoder_tokens, decoder_tokens, encoder_positions=None,
               decoder_positions=None, encoder_segment_ids=None, decoder_segment_ids=None, *,
               deterministic: bool = True, return_hidden: bool = False):
    """Logits [b, t, vocab]; `return_hidden`: the decoder's final-norm outputs [b, t, embed]."""
    kinds = [self.cfg.self_attention, self.cfg.cross_attention]
    enc = _checked(self.cfg, encoder_tokens, encoder_positions, encoder_segment_ids, "encoder_",
                   kinds)
    dec = _checked(self.cfg, decoder_tokens, decoder_positions, decoder_segment_ids, "decoder_",
                   kinds)
    _same_batch(enc[0], dec[0])
    encoded = self._encode(*enc, deterministic=deterministic)
    return self._decode(encoded, enc[0], dec[0], enc[1], dec[1], enc[2], dec[2],
                        deterministic=deterministic, mode="train", return_hidden=return_hidden)


class EncoderClassifier(_Model):
  """Encoder-only classifier: tokens [b, l] -> class logits [b, num_classes] (float32).

  Pools the encoder outputs by their mean over valid (non-padding) tokens. One
  example per row: rows are not packed.
  """

  num_classes: int = 2

  def setup(self):
    if not isinstance(self.num_classes, int) or self.num_classes < 1:
      raise ValueError(f"num_classes={self.num_classes!r} must be a positive integer")
    self.setup_io()
    self.encoder = Stack(self.cfg, self.cfg.encoder_layers)
    self.head = Projection((self.num_classes,), ("embed",), (None,), use_bias=True,
                           dtype=self.cfg.dtype)

  def __call__(self, tokens, positions=None, segment_ids=None, *, deterministic: bool = True):
    cfg = self.cfg
    tokens, positions, segment_ids = _checked(cfg, tokens, positions, segment_ids, "",
                                              [cfg.self_attention])
    inp = _Inputs(tokens, positions, segment_ids, cfg, [cfg.self_attention])
    x = self.embed_tokens(tokens, inp.positions, deterministic)
    x = self.encoder(x, _padding_mask(inp), inp.attend, deterministic)
    weight_bl1 = inp.valid[..., None].astype(jnp.float32)
    pooled_be = (x.astype(jnp.float32) * weight_bl1).sum(1) / jnp.maximum(weight_bl1.sum(1), 1.0)
    return self.head(pooled_be.astype(cfg.dtype)).astype(jnp.float32)
