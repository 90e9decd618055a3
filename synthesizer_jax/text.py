"""Text in, text out: a TensorFlow-free SentencePiece vocabulary and `generate_text`.

Notebooks load a checkpoint with `sj.load_checkpoint`, its vocabulary with
`load_vocabulary(config["vocab_path"])` and call `generate_text`. Token ids follow
the seqio / T5 convention the data layer trains with: 0 pad, 1 EOS, 2 UNK.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthesizer_jax import checks, paths
from synthesizer_jax.decoding import generate
from synthesizer_jax.transformer import EncoderDecoder


class SentencePieceVocab:
  """encode / decode with a SentencePiece model file, without seqio or TensorFlow."""

  def __init__(self, path: paths.PathLike):
    if not path or not paths.as_path(path).exists():
      raise FileNotFoundError(
          f"vocabulary file {path!r} not found: it is built by "
          "`python -m synthesizer_jax.data.prepare --data_dir DIR` (the path is stored in the "
          "checkpoint's config as vocab_path; pass the data dir the run used)")
    import sentencepiece

    # Read as bytes, so a vocabulary in a bucket loads like a local one.
    self._sp = sentencepiece.SentencePieceProcessor(
        model_proto=paths.as_path(path).read_bytes())
    self.path = path
    self.vocab_size = self._sp.get_piece_size()
    self.eos_id = 1
    self.pad_id = 0

  def encode(self, text: str) -> list:
    return list(self._sp.encode(text))

  def decode(self, ids: Sequence[int]) -> str:
    ids = [int(i) for i in ids]
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(
          f"token id {bad[0]} is outside this vocabulary [0, {self.vocab_size}) ({self.path}): "
          "a model whose vocab_size is larger than its vocabulary's produced an id no piece has; "
          "decode with the vocabulary the model was trained with")
    return self._sp.decode([i for i in ids if i > 2])

  def pieces(self, ids: Sequence[int]) -> list:
    """The piece of each id ("▁the", "<pad>"): how the model sees the text, one per token."""
    return [self._sp.id_to_piece(int(i)) for i in ids]


def load_vocabulary(path: str) -> SentencePieceVocab:
  """The SentencePiece vocabulary at `path` (e.g. a checkpoint config's vocab_path)."""
  return SentencePieceVocab(path)


def _pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
  width = max(len(r) for r in rows)
  out = np.full((len(rows), width), pad_id, np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def _check_texts(texts) -> None:
  if not isinstance(texts, Sequence) or not texts:
    raise TypeError(f"texts must be a string or a non-empty list of strings, got {texts!r:.60}")
  bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
  if bad:
    raise TypeError(f"texts[{bad[0]}]={texts[bad[0]]!r:.60} is not a string: generate_text "
                    "takes text (token ids go to sj.generate)")


def _check_vocab(vocab, model_vocab_size: int, model_pad_id: int = 0) -> None:
  size = getattr(vocab, "vocab_size", None)
  if not all(hasattr(vocab, a) for a in ("encode", "decode", "eos_id")) or size is None:
    raise TypeError(f"vocab must be a vocabulary (encode, decode, eos_id, vocab_size), such as "
                    f"sj.load_vocabulary(path), got {type(vocab).__name__}")
  if size > model_vocab_size:
    raise ValueError(
        f"the vocabulary has {size} pieces but the model's vocab_size is {model_vocab_size}: "
        "it encodes ids the model has no embedding for, so it is not the vocabulary the model "
        "was trained with; load the checkpoint's vocabulary (its config's vocab_path)")
  pad = getattr(vocab, "pad_id", model_pad_id)
  if pad != model_pad_id or vocab.eos_id == model_pad_id:
    raise ValueError(
        f"the vocabulary's pad_id is {pad} and eos_id {vocab.eos_id}, but the model pads with "
        f"pad_id={model_pad_id}: prompts would start and end with the wrong ids; use the "
        "vocabulary the model was trained with, or a model config with its pad_id")


def generate_text(model, variables, vocab, texts: Sequence[str], *, max_new_tokens: int = 32,
                  method: str = "greedy", max_input_len: int | None = None,
                  start_token: bool = True, **kwargs) -> list:
  """Continues (DecoderLM) or transforms (EncoderDecoder) each text; returns decoded strings.

  Inputs longer than `max_input_len` (default: the model's max_len, minus max_new_tokens
  for a DecoderLM) are truncated from the left for a DecoderLM and from the right for an
  EncoderDecoder. With `start_token`, a DecoderLM prompt starts with pad_id, as the
  seqio-trained language models' inputs do. Other keyword arguments go to `sj.generate`,
  which checks them. A vocabulary larger than the model's vocab_size is refused (a smaller
  one is fine: models may pad their vocab_size), and so is a max_input_len < 1 (< 2 for an
  EncoderDecoder, whose source ends with EOS).
  """
  if isinstance(texts, str):
    texts = [texts]
  cfg = model.cfg
  _check_texts(texts)
  _check_vocab(vocab, cfg.vocab_size, cfg.pad_id)
  encdec = isinstance(model, EncoderDecoder)
  if max_input_len is not None:
    # An EncoderDecoder's source ends with EOS, so it needs room for one text token more.
    checks.integer(max_input_len, "max_input_len", 1 + encdec,
                   fix="; None truncates to what the model's max_len allows")
  encoded = [vocab.encode(t) for t in texts]
  if any(not e for e in encoded):
    raise ValueError("every text must encode to at least one token (got an empty text)")
  pad = cfg.pad_id
  try:
    if encdec:
      limit = max_input_len or cfg.max_len
      src = _pad_rows([e[:limit - 1] + [vocab.eos_id] for e in encoded], pad)
      out = generate(model, variables, np.full((len(texts), 1), pad, np.int32),
                     encoder_tokens=src, max_new_tokens=max_new_tokens, method=method,
                     eos_id=vocab.eos_id, **kwargs)
    else:
      limit = max_input_len or max(cfg.max_len - max_new_tokens - int(start_token), 1)
      start = [pad] if start_token else []
      out = generate(model, variables, _pad_rows([start + e[-limit:] for e in encoded], pad),
                     max_new_tokens=max_new_tokens, method=method, eos_id=vocab.eos_id,
                     **kwargs)
  except ValueError as e:
    if max_input_len is None or "max_len" not in str(e):
      raise
    raise ValueError(f"{e} (the texts were cut to max_input_len={max_input_len} tokens: pass a "
                     "smaller max_input_len, or None to cut them to what the model's max_len "
                     "allows)") from None
  return [vocab.decode(row) for row in np.asarray(out.tokens)]
