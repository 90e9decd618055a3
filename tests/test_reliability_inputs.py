"""Bad input to the public entry points fails with a message naming the argument and the rule.

`sj.generate` / `sj.generate_text` options, the models' token / position / segment arrays and
the plots (docs/reliability.md, "Bad input"). Each case here passed silently, or failed with an
unrelated error deep inside, before its check existed.
"""

import jax
import numpy as np
import pytest
from helpers import small_config

import synthesizer_jax as sj

PROMPT = np.array([[5, 6, 7], [8, 9, 0]], np.int32)
SRC = np.array([[3, 4, 5, 1], [6, 7, 1, 0]], np.int32)


@pytest.fixture(scope="module")
def lm():
  model = sj.DecoderLM(small_config(num_layers=1, self_attention="random"))
  return model, model.init(jax.random.key(0), PROMPT)


@pytest.fixture(scope="module")
def encdec():
  model = sj.EncoderDecoder(small_config(num_layers=1, cross_attention="random"))
  return model, model.init(jax.random.key(0), SRC, PROMPT)


def test_model_tokens_must_be_2d_integers_and_lists_are_converted(lm):
  model, variables = lm
  np.testing.assert_array_equal(model.apply(variables, PROMPT.tolist()),
                                model.apply(variables, PROMPT))
  with pytest.raises(ValueError, match=r"tokens has shape \(3,\): expected \[batch, length\].*"
                                       r"wrap a single sequence"):
    model.apply(variables, PROMPT[0])
  with pytest.raises(ValueError, match="tokens has dtype float32: token ids must be integers"):
    model.apply(variables, PROMPT.astype(np.float32))
  with pytest.raises(TypeError, match="tokens is None"):
    model.apply(variables, None)
  clf = sj.EncoderClassifier(small_config(num_layers=1), num_classes=3)
  with pytest.raises(ValueError, match=r"tokens has shape \(1, 2, 3\)"):
    clf.init(jax.random.key(0), PROMPT[None])


def test_model_positions_and_segment_ids_match_their_tokens(lm):
  model, variables = lm
  pos = np.broadcast_to(np.arange(3, dtype=np.int32), (2, 3))
  with pytest.raises(ValueError, match=r"positions has shape \(2, 2\) but tokens has shape "
                                       r"\(2, 3\): they must match"):
    model.apply(variables, PROMPT, pos[:, :2])
  with pytest.raises(ValueError, match=r"positions has shape \(1, 3\) but tokens has shape"):
    model.apply(variables, PROMPT, pos[:1])
  with pytest.raises(ValueError, match="positions has dtype float32: positions must be integers"):
    model.apply(variables, PROMPT, pos.astype(np.float32))
  # Negative positions were clamped to 0 in the sinusoid and gathered as NaN by `random`.
  with pytest.raises(ValueError, match="positions holds -1: positions must be >= 0"):
    model.apply(variables, PROMPT, pos - 1)
  with pytest.raises(ValueError, match=r"positions holds 12, outside \[0, max_len=12\)"):
    model.apply(variables, PROMPT, pos + 10)
  with pytest.raises(ValueError, match=r"segment_ids has shape \(2, 4\) but tokens has shape"):
    model.apply(variables, PROMPT, None, np.ones((2, 4), np.int32))
  with pytest.raises(ValueError, match="segment_ids holds -1: segment ids must be >= 0"):
    model.apply(variables, PROMPT, None, -np.ones((2, 3), np.int32))
  with pytest.raises(ValueError, match="segment_ids has dtype bool"):
    model.apply(variables, PROMPT, None, PROMPT > 0)
  # Under jit shapes and dtypes are still checked; values are not (no device sync).
  jitted = jax.jit(model.apply)
  with pytest.raises(ValueError, match=r"positions has shape \(2, 2\) but tokens"):
    jitted(variables, PROMPT, pos[:, :2])
  assert jitted(variables, PROMPT, pos - 1).shape == (2, 3, 50)


def test_encoder_decoder_inputs_name_their_side(encdec):
  model, variables = encdec
  np.testing.assert_array_equal(model.apply(variables, SRC.tolist(), PROMPT.tolist()),
                                model.apply(variables, SRC, PROMPT))
  with pytest.raises(ValueError, match=r"encoder_tokens has shape \(2, 4\) but decoder_tokens has "
                                       r"shape \(1, 3\): the batch sizes must match"):
    model.apply(variables, SRC, PROMPT[:1])
  with pytest.raises(ValueError, match=r"decoder_positions has shape \(2, 2\) but decoder_tokens"):
    model.apply(variables, SRC, PROMPT, decoder_positions=np.zeros((2, 2), np.int32))
  with pytest.raises(ValueError, match=r"encoder_segment_ids has shape \(2, 3\) but "
                                       r"encoder_tokens has shape \(2, 4\)"):
    model.apply(variables, SRC, PROMPT, encoder_segment_ids=np.ones((2, 3), np.int32),
                decoder_segment_ids=np.ones((2, 3), np.int32))
  with pytest.raises(ValueError, match=r"encoder_positions holds 12, outside \[0, max_len=12\)"):
    model.apply(variables, SRC, PROMPT, encoder_positions=np.full((2, 4), 12, np.int32))
  encoded = model.apply(variables, SRC, method="encode")
  with pytest.raises(ValueError, match=r"encoded has shape \(1, 4, 16\), encoder_tokens \(2, 4\)"):
    model.apply(variables, encoded[:1], SRC, PROMPT, method="decode")
  with pytest.raises(TypeError, match="encoder_tokens is None"):
    model.apply(variables, encoded, None, PROMPT, method="decode")
