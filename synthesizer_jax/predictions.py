"""Model outputs as predictions: an encoder-decoder's decoded tokens, an LM's text sample,
a classifier's logits, and token ids back to text.

    tokens = predict_tokens(model, variables, encoder_tokens, max_len=32)  # beam search
    text = sample_lm(model, variables, vocab, "Once upon", length=64)        # greedy
    decode_ids(vocab, tokens[0])                                             # cut at EOS

The model shapes (`shapes.py`) call these to predict and sample, and `evaluation.py`
scores what they return; both sit above this module, which uses only the models and
cached decoding (`decoding.py`).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from synthesizer_jax import attention as registry
from synthesizer_jax.decoding import generate

EOS_ID = 1


def local_rows(x):
  """All rows of a (possibly multi-host) global array, or a tree of them, as NumPy."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    x = multihost_utils.process_allgather(x, tiled=True)
  return jax.tree.map(np.asarray, x)


@functools.partial(jax.jit, static_argnames=("model",))
def classify(model, variables, tokens_bl):
  return model.apply(variables, tokens_bl)


def predict_tokens(model, variables, encoder_tokens_bs: np.ndarray, max_len: int,
                   method: str = "beam", num_beams: int = 4, alpha: float = 0.6) -> np.ndarray:
  """Outputs [b, n] of an EncoderDecoder (beam search or greedy), n = max_len (one less for
  synthetic kinds when max_len == model max_len: the start token takes a position). Pad
  after EOS.

  The one decoding entry point of evaluation: cached decoding (`sj.generate`).
  """
  cfg = model.cfg
  n = max_len
  if registry.uses_positions(cfg.self_attention):
    n = min(n, cfg.max_len - 1)
  start = np.full((encoder_tokens_bs.shape[0], 1), cfg.pad_id, np.int32)
  beam = dict(num_beams=num_beams, alpha=alpha) if method == "beam" else {}
  out = generate(model, variables, start, max_new_tokens=n, method=method,
                 encoder_tokens=np.asarray(encoder_tokens_bs), eos_id=EOS_ID, **beam)
  return np.asarray(out.tokens)


def sample_lm(model, variables, vocab, prompt: str, length: int, top_p: float | None = None,
              seed: int = 0) -> str:
  """Continuation of `prompt` (cached `sj.generate`) up to `length` tokens in all: greedy, or
  with `top_p` nucleus sampling (temperature 1) from `jax.random.key(seed)`."""
  ids = [0] + list(vocab.encode(prompt))[: length - 2]  # seqio LM inputs start with 0
  how = ({"method": "greedy"} if top_p is None else
         {"method": "sample", "top_p": top_p, "rng": jax.random.key(seed)})
  out = generate(model, variables, np.array([ids], np.int32), max_new_tokens=length - len(ids),
                 eos_id=EOS_ID, **how)
  return prompt + decode_ids(vocab, np.asarray(out.tokens)[0])


def decode_ids(vocab, ids) -> str:
  """Token ids -> text, cut at the first EOS, padding dropped."""
  ids = [int(i) for i in ids]
  if EOS_ID in ids:
    ids = ids[:ids.index(EOS_ID)]
  return vocab.decode([i for i in ids if i > EOS_ID])
