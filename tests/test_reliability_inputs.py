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
from synthesizer_jax import logging_utils, text, viz

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


KEY = jax.random.key(0)
BAD_OPTIONS = [  # (generate keyword arguments, error type, message)
    (dict(method="sample", temperature=0.0), ValueError, r"temperature=0.0 must be finite and > 0"),
    (dict(method="sample", temperature=float("nan")), ValueError, "temperature=nan must be finite"),
    (dict(method="sample", temperature=float("inf")), ValueError, "temperature=inf must be finite"),
    (dict(method="sample", temperature="hot"), TypeError, "temperature='hot' must be a number"),
    (dict(method="sample", top_k=-1), ValueError, r"top_k=-1 must be in \[0, 50\]"),
    (dict(method="sample", top_k=51), ValueError, r"top_k=51 must be in \[0, 50\]"),
    (dict(method="sample", top_k=2.5), TypeError, r"top_k=2.5 must be an int \(float given\)"),
    # top_p <= 0 kept every token and top_p > 1 turned nucleus filtering off, silently.
    (dict(method="sample", top_p=0.0), ValueError, r"top_p=0.0 must be finite and > 0.0 and <= 1"),
    (dict(method="sample", top_p=-0.5), ValueError, r"top_p=-0.5 must be finite and > 0.0"),
    (dict(method="sample", top_p=1.5), ValueError, r"top_p=1.5 must be .*<= 1.0"),
    (dict(method="sample", rng=42), TypeError, r"rng=42 is not a PRNG key.*jax.random.key"),
    (dict(method="beam", num_beams=0), ValueError, "num_beams=0 must be >= 1"),
    (dict(method="beam", num_beams=2.0), TypeError, "num_beams=2.0 must be an int"),
    (dict(method="beam", alpha=-1.0), ValueError, r"alpha=-1.0 must be finite and >= 0"),
    (dict(method="beam", alpha=float("nan")), ValueError, "alpha=nan must be finite"),
    (dict(max_new_tokens=2.5), TypeError, "max_new_tokens=2.5 must be an int"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens=0 must be >= 1"),
    (dict(eos_id=50), ValueError, r"eos_id=50 must be in \[0, 49\] .*vocab_size=50"),
    (dict(eos_id=-1), ValueError, r"eos_id=-1 must be in \[0, 49\].*None never stops early"),
    (dict(pad_id=99), ValueError, r"pad_id=99 must be in \[0, 49\]"),
    (dict(encoder_tokens=SRC), ValueError, "encoder_tokens is for an EncoderDecoder"),
    # An option of another method was silently ignored (greedy decoding "at temperature 0.7").
    (dict(temperature=0.7), ValueError,
     r"temperature \(method='sample'\) do not apply to method='greedy'"),
    (dict(method="beam", top_p=0.9, rng=KEY), ValueError,
     r"top_p \(method='sample'\), rng \(method='sample'\) do not apply to method='beam'"),
    (dict(method="sample", num_beams=2), ValueError,
     r"num_beams \(method='beam'\) do not apply to method='sample'"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_OPTIONS,
                         ids=[",".join(f"{a}={v}" for a, v in k.items() if a != "method")
                              for k, _, _ in BAD_OPTIONS])
def test_generate_refuses_bad_options(lm, kwargs, error, match):
  rng = {"rng": KEY} if kwargs.get("method") == "sample" else {}
  kwargs = {"max_new_tokens": 2, **rng, **kwargs}
  with pytest.raises(error, match=match):
    sj.generate(*lm, PROMPT, **kwargs)


def test_generate_prompt_must_be_2d_int_and_lists_are_converted(lm):
  want = sj.generate(*lm, PROMPT, max_new_tokens=2)
  got = sj.generate(*lm, PROMPT.tolist(), max_new_tokens=2)
  np.testing.assert_array_equal(got.tokens, want.tokens)
  with pytest.raises(ValueError, match=r"prompt has shape \(3,\).*wrap a single sequence as"):
    sj.generate(*lm, [5, 6, 7], max_new_tokens=2)
  with pytest.raises(ValueError, match="prompt: rows of different lengths"):
    sj.generate(*lm, [[5, 6, 7], [8]], max_new_tokens=2)
  with pytest.raises(ValueError, match="prompt has dtype float"):
    sj.generate(*lm, PROMPT.astype(np.float32), max_new_tokens=2)
  with pytest.raises(TypeError, match="prompt='hello' is text"):
    sj.generate(*lm, "hello", max_new_tokens=2)


def test_generate_encoder_tokens_of_an_encoder_decoder(encdec):
  model, variables = encdec
  with pytest.raises(ValueError, match="needs encoder_tokens"):
    sj.generate(model, variables, PROMPT, max_new_tokens=2)
  with pytest.raises(ValueError, match=r"encoder_tokens has shape \(2, 4\) but prompt has shape "
                                       r"\(1, 1\): the batch sizes must match"):
    sj.generate(model, variables, [[0]], encoder_tokens=SRC, max_new_tokens=2)
  with pytest.raises(ValueError, match=r"encoder_tokens rows \[1\] hold only pad_id=0"):
    sj.generate(model, variables, [[0], [0]], encoder_tokens=SRC * [[1], [0]], max_new_tokens=2)
  with pytest.raises(ValueError, match="encoder_tokens has length 13, more than max_len=12"):
    sj.generate(model, variables, [[0]], encoder_tokens=np.ones((1, 13), np.int32),
                max_new_tokens=2)
  with pytest.raises(ValueError, match=r"encoder_tokens has shape \(4,\).*wrap a single"):
    sj.generate(model, variables, [[0]], encoder_tokens=SRC[0], max_new_tokens=2)
  # Only the cross-attention reads positions from tables here: decoder positions count too.
  with pytest.raises(ValueError, match=r"1 \+ max_new_tokens 12 = 13 exceeds max_len=12 of the "
                                       r"'dot/random' attention"):
    sj.generate(model, variables, [[0], [0]], encoder_tokens=SRC, max_new_tokens=12)


class CharVocab:
  """A stand-in vocabulary: one id per character (3 + its code modulo 40)."""

  eos_id, pad_id = 1, 0

  def __init__(self, vocab_size):
    self.vocab_size = vocab_size

  def encode(self, s):
    return [3 + ord(c) % 40 for c in s]

  def decode(self, ids):
    return "".join(chr(i) for i in ids)


def test_generate_text_refuses_a_foreign_vocabulary_and_bad_lengths(lm, encdec):
  assert len(text.generate_text(*lm, CharVocab(50), ["ab"], max_new_tokens=2)) == 1
  with pytest.raises(ValueError, match="vocabulary has 60 pieces but the model's vocab_size is 50"):
    text.generate_text(*lm, CharVocab(60), ["ab"], max_new_tokens=2)
  with pytest.raises(TypeError, match="vocab must be a vocabulary"):
    text.generate_text(*lm, {"a": 3}, ["ab"], max_new_tokens=2)
  other = CharVocab(50)
  other.pad_id, other.eos_id = 3, 2  # another tokenizer's conventions
  with pytest.raises(ValueError, match="vocabulary's pad_id is 3 and eos_id 2, but the model pads "
                                       "with pad_id=0"):
    text.generate_text(*lm, other, ["ab"], max_new_tokens=2)
  # 0 meant "the default" and a negative limit cut the text's start (e[-(-2):]), silently.
  for bad in (0, -2):
    with pytest.raises(ValueError, match=f"max_input_len={bad} must be >= 1"):
      text.generate_text(*lm, CharVocab(50), ["abc"], max_new_tokens=2, max_input_len=bad)
  with pytest.raises(ValueError, match="max_input_len=1 must be >= 2"):  # the source ends with EOS
    text.generate_text(*encdec, CharVocab(50), ["abc"], max_new_tokens=2, max_input_len=1)
  with pytest.raises(TypeError, match="max_input_len=2.5 must be an int"):
    text.generate_text(*lm, CharVocab(50), ["abc"], max_new_tokens=2, max_input_len=2.5)
  # A max_input_len that leaves no room for the new tokens is named with the fix.
  max_len = lm[0].cfg.max_len
  with pytest.raises(ValueError, match=r"(?s)exceeds max_len.*cut to max_input_len="
                                       rf"{max_len}.*smaller max_input_len, or None"):
    text.generate_text(*lm, CharVocab(50), ["a" * 3 * max_len], max_new_tokens=2,
                       max_input_len=max_len)
  assert len(text.generate_text(*lm, CharVocab(50), ["a" * 3 * max_len], max_new_tokens=2)) == 1
  with pytest.raises(TypeError, match=r"texts\[1\]=\[5, 6\] is not a string"):
    text.generate_text(*lm, CharVocab(50), ["abc", [5, 6]], max_new_tokens=2)
  with pytest.raises(TypeError, match="non-empty list of strings"):
    text.generate_text(*lm, CharVocab(50), [], max_new_tokens=2)
  with pytest.raises(ValueError, match="top_p=2.0 must be"):  # options reach sj.generate's checks
    text.generate_text(*lm, CharVocab(50), ["abc"], max_new_tokens=2, method="sample",
                       top_p=2.0, rng=KEY)


def test_sentencepiece_decode_names_ids_past_the_vocabulary():
  class FakeSP:
    def decode(self, ids):
      return " ".join(map(str, ids))

  vocab = text.SentencePieceVocab.__new__(text.SentencePieceVocab)
  vocab._sp, vocab.path, vocab.vocab_size, vocab.eos_id = FakeSP(), "sp.model", 40, 1
  assert vocab.decode([5, 6, 1, 45]) == "5 6"  # after EOS nothing is read
  with pytest.raises(ValueError, match=r"token id 45 is outside this vocabulary \[0, 40\)"):
    vocab.decode([5, 45])


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


W = np.full((2, 3, 3), 1 / 3, np.float32)  # [heads, q, k]


def test_plot_attention_names_the_argument_and_the_expected_shape(tmp_path):
  out, w = str(tmp_path / "x.png"), W
  assert viz.plot_attention({"a": w}, out) == out
  with pytest.raises(ValueError, match=r"maps\['a'\] has shape \(3, 3\) .* expected a non-empty "
                                       r"numeric \[batch, heads, q, k\] or \[heads, q, k\]"):
    viz.plot_attention({"a": w[0]}, out)
  with pytest.raises(TypeError, match=r"maps must be a dict .* got ndarray"):
    viz.plot_attention(w, out)
  with pytest.raises(ValueError, match=r"example=2 must be in \[0, 0\] .*batch=1"):
    viz.plot_attention({"a": w[None]}, out, example=2)
  with pytest.raises(ValueError, match="max_heads=0 must be >= 1"):
    viz.plot_attention({"a": w}, out, max_heads=0)


def test_plot_kinds_names_the_argument_and_the_expected_shape(tmp_path):
  out, w = str(tmp_path / "x.png"), W
  assert viz.plot_kinds({"dense": w, "dot": w[0]}, out) == out
  with pytest.raises(ValueError, match=r"maps_by_kind\['dot'\] has shape \(1, 1, 2, 3, 3\)"):
    viz.plot_kinds({"dot": w[None, None]}, out)
  with pytest.raises(ValueError, match=r"maps_by_kind\['dot'\] has shape \(3,\)"):
    viz.plot_kinds({"dot": w[0, 0]}, out)
  with pytest.raises(ValueError, match=r"maps_by_kind\['dot'\] has shape \(3, 3\) and dtype <U1"):
    viz.plot_kinds({"dot": np.full((3, 3), "a")}, out)
  with pytest.raises(ValueError, match=r"head=-1 must be in \[0, 1\]"):  # was the last head
    viz.plot_kinds({"dense": w}, out, head=-1)
  with pytest.raises(ValueError, match="maps_by_kind is empty"):
    viz.plot_kinds({}, out)
  with pytest.raises(TypeError, match="path=3 must be a file name"):
    viz.plot_kinds({"dense": w}, 3)


def test_curve_plots_refuse_missing_keys_and_non_records(tmp_path):
  out = str(tmp_path / "x.png")
  records = [{"step": s, "loss": 1.0 / s, "note": "x"} for s in (1, 2)]
  assert viz.plot_curves(records, out, keys="loss") == out
  with pytest.raises(ValueError, match=r"keys \['los'\] have no numeric value .* plottable "
                                       r"keys: \['loss'\]"):
    viz.plot_curves(records, out, keys=["los"])
  with pytest.raises(ValueError, match=r"keys \['note'\]"):  # text would plot as categories
    viz.plot_curves(records, out, keys=["note"])
  with pytest.raises(TypeError, match=r"records\[0\] is a list, not a dict"):
    viz.plot_curves([[1, 2]], out)
  with pytest.raises(TypeError, match="records must be a list of dicts"):
    viz.plot_curves("metrics.jsonl", out)
  with pytest.raises(ValueError, match="out_name='sub/x.png': must be a file name"):
    logging_utils.plot_loss_curve(str(tmp_path), "sub/x.png")
  with pytest.raises(TypeError, match="workdir=None must be a directory path"):
    logging_utils.plot_loss_curve(None)
  with pytest.raises(FileNotFoundError, match="workdirs/typo does not exist"):
    logging_utils.plot_loss_curve(str(tmp_path / "workdirs" / "typo"))
  assert logging_utils.plot_loss_curve(str(tmp_path)) is None  # exists, nothing logged yet
