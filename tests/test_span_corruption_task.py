"""The span-corruption task `offline_prose_span_corruption` on fake prose, through both input
paths: seqio (corrupted in the task's preprocessors) and the cache (the documents' cache,
corrupted when Grain reads it). Its examples give the documents back exactly, its sentinels
are ids the vocabulary reserves above every real piece, a full piece fills the inputs
length, and a cached batch is fixed by (seed, index) whenever it is read (resume)."""

import json
import os

import numpy as np
import pytest
from fixtures.data import fake_debian
from test_cli import REPO, load_config

from synthesizer_jax import data, logging_utils, loop
from synthesizer_jax.config import parse_config
from synthesizer_jax.data import registry, span_corruption, tasks
from synthesizer_jax.data.vocab import SentencePieceVocabulary

pytest.importorskip("seqio")
pytest.importorskip("grain")

TASK = "offline_prose_span_corruption"
INPUTS = 32
LENGTHS = {"inputs": INPUTS, "targets": span_corruption.lengths_for(INPUTS)[1]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("span"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, [TASK], progress=False, cache=True)
  return path


def reconstruct(inputs, targets, first_sentinel):
  """The piece back from one example (EOS stripped): each sentinel (an id >=
  `first_sentinel`) of the inputs replaced by what follows it in the targets."""
  spans, current = {}, None
  for t in targets:
    if t >= first_sentinel:
      current = spans.setdefault(t, [])
    else:
      current.append(t)
  out = [x for t in inputs for x in (spans.pop(t) if t in spans else [t])]
  assert not spans, "a target span has no sentinel in the inputs"
  return out


def documents(data_dir, split):
  with open(tasks.split_file(TASK, split, data_dir), encoding="utf-8") as f:
    return f.read().splitlines()


def reference_pieces(vocab, lines):
  """Per document, its tokens cut to lengths_for(INPUTS) pieces, those of 2+ kept."""
  raw = span_corruption.lengths_for(INPUTS)[0]
  out = []
  for line in lines:
    ids = list(vocab.encode(line))
    out.append([ids[i:i + raw] for i in range(0, len(ids), raw) if len(ids[i:i + raw]) >= 2])
  return out


def until_eos(row):
  row = list(np.asarray(row).tolist())
  assert 1 in row, row
  return row[:row.index(1)]


def seqio_examples(data_dir, split, seed=0):
  ds = tasks.seqio_task(TASK, data_dir).get_dataset(
      sequence_length=LENGTHS, split=split, shuffle=False, seed=seed, num_epochs=1)
  return [(until_eos(ex["inputs"]), until_eos(ex["targets"])) for ex in ds.as_numpy_iterator()]


def cached_examples(data_dir, split, seed=0):
  batches = data.get_cached_dataset(TASK, split, feature_lengths=LENGTHS, batch_size=16,
                                    pack=False, shuffle=False, seed=seed, repeat=False,
                                    data_dir=data_dir)
  return [(until_eos(i), until_eos(t)) for b in batches
          for i, t in zip(b["encoder_input_tokens"], b["decoder_target_tokens"], strict=True)]


@pytest.mark.parametrize("path", ["seqio", "cache"])
def test_examples_give_the_documents_back_exactly(data_dir, path):
  vocab = data.get_vocabulary(TASK, data_dir)
  first_sentinel = vocab.vocab_size - registry.extra_ids(TASK)
  lines = documents(data_dir, "validation")
  want = reference_pieces(vocab, lines)
  read = seqio_examples if path == "seqio" else cached_examples
  got = [reconstruct(i, t, first_sentinel) for i, t in read(data_dir, "validation")]
  assert got == [p for pieces in want for p in pieces]
  # The text itself: each document whose pieces are all kept (and that has no piece
  # outside the vocabulary, UNK = 2) decodes to its line.
  at, whole = 0, 0
  for line, pieces in zip(lines, want, strict=True):
    ids = list(vocab.encode(line))
    if sum(map(len, pieces)) == len(ids) and 2 not in ids:
      assert vocab.decode([t for p in got[at:at + len(pieces)] for t in p]) == line
      whole += 1
    at += len(pieces)
  assert whole > len(lines) // 2


def test_sentinels_are_reserved_ids_above_every_real_piece(data_dir):
  vocab = data.get_vocabulary(TASK, data_dir)
  info = data.task_info(TASK, data_dir)
  pieces = vocab.vocab_size - info.extra_ids
  assert info.extra_ids == 100 and vocab.vocab_size == (
      SentencePieceVocabulary(info.vocab_path).vocab_size + 100)
  text = " ".join(documents(data_dir, "train"))
  assert max(vocab.encode(text)) < pieces  # no real piece is a sentinel
  for path in ("seqio", "cache"):
    read = seqio_examples if path == "seqio" else cached_examples
    for inputs, targets in read(data_dir, "validation"):
      sentinels = [t for t in targets if t >= pieces]
      # <S0> = the last id, then down; the inputs name the same sentinels, in order.
      assert sentinels == list(range(vocab.vocab_size - 1, vocab.vocab_size - 1 - len(
          sentinels), -1)) and [t for t in inputs if t >= pieces] == sentinels, path
  # The ids are seqio's extra ids, the same in the TensorFlow-free vocabulary.
  plain = SentencePieceVocabulary(info.vocab_path, info.extra_ids)
  sample = "the river <extra_id_0> stone <extra_id_7>"
  assert plain.vocab_size == vocab.vocab_size
  assert list(plain.encode(sample)) == list(vocab.encode(sample))
  assert vocab.vocab_size - 1 in plain.encode(sample)
  assert plain.decode([vocab.vocab_size - 8]) == vocab.decode([vocab.vocab_size - 8])


@pytest.mark.parametrize("path", ["seqio", "cache"])
def test_a_full_piece_fills_the_inputs_length(data_dir, path):
  first_sentinel = data.get_vocabulary(TASK, data_dir).vocab_size - registry.extra_ids(TASK)
  read = seqio_examples if path == "seqio" else cached_examples
  examples = read(data_dir, "train")
  full = [i for i, t in examples if len(reconstruct(i, t, first_sentinel))
          == span_corruption.lengths_for(INPUTS)[0]]
  assert len(full) > len(examples) // 3
  assert {len(i) + 1 for i in full} == {INPUTS}  # + EOS
  assert max(len(i) + 1 for i, _ in examples) == INPUTS


def test_cached_batches_are_fixed_by_seed_and_index(data_dir):
  def read(seed, start=0, n=3):
    it = data.get_cached_dataset(TASK, "train", feature_lengths=LENGTHS, batch_size=4,
                                 seed=seed, data_dir=data_dir, start_batch=start)
    return [next(it) for _ in range(n)]

  whole, resumed, other = read(0), read(0, start=2, n=1), read(1)
  for key, value in resumed[0].items():
    np.testing.assert_array_equal(value, whole[2][key], err_msg=key)
  assert any(b["encoder_segment_ids"].max() > 1 for b in whole)  # packed rows
  assert not np.array_equal(whole[0]["encoder_input_tokens"], other[0]["encoder_input_tokens"])
  # The corruption itself depends on the seed: same pieces, other spans.
  a, b = cached_examples(data_dir, "validation", 0), cached_examples(data_dir, "validation", 5)
  assert len(a) == len(b) and a != b


@pytest.mark.parametrize("pipeline", ["grain", "seqio"])
def test_the_config_trains_an_encoder_decoder(data_dir, tmp_path, pipeline):
  config = load_config(os.path.join(REPO, "configs", f"{TASK}.py"))
  config.update(dict(data_dir=data_dir, data_pipeline=pipeline, batch_size=8, inputs_length=16,
                     targets_length=8, num_train_steps=12, warmup_steps=1, learning_rate=1e-2,
                     log_every=1, eval_every=12, checkpoint_every=12, eval_batches=2,
                     async_checkpoints=False))
  config.model.update(dict(d_model=32, num_heads=2, head_dim=16, mlp_dim=64, num_layers=1,
                           max_len=16))
  run_cfg = parse_config({**config.to_dict(), "mesh": {"num_devices": 1}})
  out = loop.train_and_evaluate(run_cfg, str(tmp_path / "run"), progress=False)
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  losses = [r["loss"] for r in logging_utils.read_metrics(str(tmp_path / "run")) if "loss" in r]
  assert saved["shape"] == "encdec" and saved["model"]["vocab_size"] == (
      data.get_vocabulary(TASK, data_dir).vocab_size)
  assert out["step"] == 12 and np.isfinite(out["metrics"]["perplexity"])
  assert np.mean(losses[-3:]) < losses[0] - 0.5, losses
