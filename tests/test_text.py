"""Text in, text out with a real (tiny) SentencePiece vocabulary."""

import jax
import numpy as np
import pytest
from helpers import small_config

import synthesizer_jax as sj
from synthesizer_jax import text

CORPUS = ("The quick brown fox jumps over the lazy dog. " * 3 +
          "Synthetic attention weights need no keys. Random matrices are shared. ") * 20


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
  import sentencepiece as spm

  d = tmp_path_factory.mktemp("spm")
  (d / "corpus.txt").write_text("\n".join(CORPUS.split(". ")))
  spm.SentencePieceTrainer.train(input=str(d / "corpus.txt"), model_prefix=str(d / "sp"),
                                 vocab_size=40, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                 minloglevel=2)
  return text.load_vocabulary(str(d / "sp.model"))


def test_vocab_round_trip_and_eos(vocab):
  ids = vocab.encode("the lazy dog")
  assert ids and min(ids) > 2
  assert vocab.decode(ids) == "the lazy dog"
  assert vocab.decode(ids + [1, 5, 6]) == "the lazy dog"


@pytest.mark.parametrize("shape", ["lm", "encdec"])
def test_generate_text_matches_token_generation(vocab, shape):
  cfg = small_config(vocab_size=vocab.vocab_size, max_len=24, factor_sizes=(4, 6),
                     self_attention="dense+dot")
  model = sj.DecoderLM(cfg) if shape == "lm" else sj.EncoderDecoder(cfg)
  args = (np.ones((1, 4), np.int32),) * (1 if shape == "lm" else 2)
  variables = model.init(jax.random.key(0), *args)
  texts = ["the quick fox", "random matrices"]
  out = text.generate_text(model, variables, vocab, texts, max_new_tokens=5)
  assert len(out) == 2 and all(isinstance(s, str) for s in out)
  ids = vocab.encode(texts[1])
  if shape == "lm":
    ref = sj.generate(model, variables, np.array([[0] + ids]), max_new_tokens=5, eos_id=1)
  else:
    ref = sj.generate(model, variables, np.zeros((1, 1), np.int32),
                      encoder_tokens=np.array([ids + [1]]), max_new_tokens=5, eos_id=1)
  assert out[1] == vocab.decode(np.asarray(ref.tokens[0]))


def test_missing_vocabulary_says_how_to_build_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="synthesizer_jax.data.prepare"):
    text.load_vocabulary(str(tmp_path / "nope.model"))
