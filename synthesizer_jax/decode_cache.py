"""The decode cache and the model calls that fill it: what `generate` (`decoding.py`) and
beam search (`beam_search.py`) share.

    cache = init_cache(model, batch_size=2, cache_len=32)   # zeros, the model's "cache"
    stepper = Stepper(model)
    logits_bv, cache = stepper.prefill(variables, cache, tokens_bp, positions_bp, None)
    logits_bv, cache = stepper.step(variables, cache, token_b, position_b)

What each layer caches depends on its attention kind: values for every kind, keys only
for kinds that read them (`dot` and mixtures containing it); see docs/decoding.md.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from synthesizer_jax.transformer import EncoderDecoder

NEG = -1e9  # the log-probability of what may not be chosen


class Generation(NamedTuple):
  """Output of `generate`: tokens [batch, max_new_tokens] (pad after EOS), scores [batch]."""

  tokens: jax.Array
  scores: jax.Array


def prefill_encdec(module, encoder_tokens, decoder_tokens):
  encoded = module.encode(encoder_tokens)
  return module.decode(encoded, encoder_tokens, decoder_tokens, mode="prefill")


def init_cache(model: nn.Module, batch_size: int, cache_len: int,
               encoder_len: int | None = None) -> Any:
  """An empty "cache" collection for `batch_size` rows of up to `cache_len` decoder tokens."""
  dec = jnp.zeros((batch_size, cache_len), jnp.int32)
  if isinstance(model, EncoderDecoder):
    if encoder_len is None:
      raise ValueError("init_cache(EncoderDecoder) needs encoder_len")
    enc = jnp.zeros((batch_size, encoder_len), jnp.int32)
    fn = lambda: model.init(jax.random.key(0), enc, dec, method=prefill_encdec)
  else:
    fn = lambda: model.init(jax.random.key(0), dec, mode="prefill")
  shapes = jax.eval_shape(fn)["cache"]
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def cache_bytes(cache: Any) -> int:
  """Total bytes of a cache pytree."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache))


class Stepper:
  """A model's prefill and decode-step calls; variables are passed in (jit arguments)."""

  def __init__(self, model):
    self.model = model

  def prefill(self, variables, cache, prompt_bp, positions_bp, encoder_tokens):
    v = {**variables, "cache": cache}
    if isinstance(self.model, EncoderDecoder):
      logits, mut = self.model.apply(v, encoder_tokens, prompt_bp, method=prefill_encdec,
                                     mutable=["cache"])
    else:
      logits, mut = self.model.apply(v, prompt_bp, positions_bp, mode="prefill", mutable=["cache"])
    return logits[:, -1].astype(jnp.float32), mut["cache"]

  def step(self, variables, cache, token_b, position_b):
    v = {**variables, "cache": cache}
    kw = dict(mode="decode", mutable=["cache"])
    if isinstance(self.model, EncoderDecoder):
      logits, mut = self.model.apply(v, None, None, token_b[:, None], None, position_b[:, None],
                                     method="decode", **kw)
    else:
      logits, mut = self.model.apply(v, token_b[:, None], position_b[:, None], **kw)
    return logits[:, -1].astype(jnp.float32), mut["cache"]
