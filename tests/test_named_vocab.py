"""A family's SentencePiece model named by a path (T5's public model for c4_t5) instead of
trained: read from a bucket (the GCS emulator), installed as the family's vocabulary without
training one, used by every task of the family with its sentinels; what cannot serve is
refused with the problem and the fix."""

import os

import pytest
from fixtures.data.fake_tfds import documents, mock_c4

from synthesizer_jax import data, paths
from synthesizer_jax.data import build, named_vocab, registry, tasks
from synthesizer_jax.data.vocab import SentencePieceVocabulary, train_vocab

pytest.importorskip("seqio")
pytest.importorskip("tensorflow_datasets")

TASK = "c4_span_corruption"
DOCS = {"train": documents(200, 2), "validation": documents(10, 3)}


def _train(path, **ids):
  """A small SentencePiece model of generated prose, with seqio's ids unless `ids` differ."""
  import sentencepiece as spm

  if not ids:
    return train_vocab(DOCS["train"], path, 300)
  corpus = path + ".txt"
  with open(corpus, "w") as f:
    f.write("\n".join(DOCS["train"]))
  spm.SentencePieceTrainer.train(input=corpus, model_prefix=path[:-len(".model")],
                                 vocab_size=300, hard_vocab_limit=False, minloglevel=2, **ids)
  return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  return _train(str(tmp_path_factory.mktemp("t5vocab") / "sentencepiece.model"))


def _prepare(root, vocab_models):
  os.makedirs(tasks.tfds_version_dir(TASK, root), exist_ok=True)
  with mock_c4(DOCS):
    return data.prepare(root, [TASK], progress=False, vocab_models=vocab_models)


def test_a_model_in_a_bucket_becomes_the_family_vocabulary_untrained(model, gcs, tmp_path,
                                                                     monkeypatch, capsys):
  source = gcs.new_path("vocabs") + "/sentencepiece.model"
  paths.as_path(source).parent.mkdir(parents=True, exist_ok=True)
  with open(model, "rb") as f:
    paths.as_path(source).write_bytes(f.read())

  def no_training(*args, **kwargs):
    raise AssertionError("a named vocabulary must not be trained")

  monkeypatch.setattr(build, "train_vocab", no_training)
  root = str(tmp_path / "data")
  _prepare(root, {"c4_t5": source})
  installed = registry.family_vocab_path("c4_t5", root)
  with open(model, "rb") as f, open(installed, "rb") as g:
    assert f.read() == g.read()
  pieces = SentencePieceVocabulary(model).vocab_size
  for name in (TASK, "glue_cola_t5", "super_glue_record_t5"):
    vocab = data.get_vocabulary(name, root)
    assert vocab.vocab_size == pieces + 100, name
    assert vocab.encode("<extra_id_0>")[-1] == vocab.vocab_size - 1  # the first sentinel
  _prepare(root, {"c4_t5": source})  # the same model again: kept
  # The command line takes FAMILY=PATH.
  with mock_c4(DOCS):
    assert build.main(["--data_dir", str(tmp_path / "cli"), "--tasks", TASK,
                       "--vocab_model", f"c4_t5={source}"]) == 0
  with open(registry.family_vocab_path("c4_t5", str(tmp_path / "cli")), "rb") as g, \
       open(model, "rb") as f:
    assert f.read() == g.read()
  assert "c4_span_corruption: vocabulary only" in capsys.readouterr().out


def test_what_cannot_serve_is_refused_with_the_fix(model, tmp_path):
  root = str(tmp_path / "data")
  other_ids = _train(str(tmp_path / "spm_defaults.model"), unk_id=0, bos_id=1, eos_id=2)
  with_sentinels = _train(str(tmp_path / "sentinels.model"), pad_id=0, eos_id=1, unk_id=2,
                          bos_id=-1, user_defined_symbols="<extra_id_0>")
  cases = [
      ({"c5_t5": model}, "family", r"Unknown vocabulary family 'c5_t5'.*c4, c4_t5"),
      ({"c4_t5": str(tmp_path / "none.model")}, "none", r"No SentencePiece model at .*none\.model"),
      ({"c4_t5": model[:-len(".model")] + ".vocab"}, "vocab",
       r"not a SentencePiece model.*name the \.model file"),
      ({"c4_t5": other_ids}, "ids", r"numbers its special pieces \{'pad': -1, 'eos': 2, 'unk': "
       r"0\}.*seqio's \{'pad': 0, 'eos': 1, 'unk': 2\}.*pad_id=0 eos_id=1 unk_id=2"),
      ({"c4_t5": with_sentinels}, "sentinels", r"already holds <extra_id_N> pieces"),
  ]
  for models, _, pattern in cases:
    with pytest.raises(data.DataError, match=pattern):
      _prepare(root, models)
    assert not os.path.exists(registry.family_vocab_path("c4_t5", root))
  _prepare(root, {"c4_t5": model})
  other = train_vocab(DOCS["validation"] * 20, str(tmp_path / "other.model"), 120)
  with pytest.raises(data.DataError, match=r"already holds another c4_t5 vocabulary .*Prepare "
                                           r"into another data dir, or delete"):
    _prepare(root, {"c4_t5": other})
  with pytest.raises(data.DataError, match=r"write FAMILY=PATH"):
    named_vocab.parse(["gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"])
  assert named_vocab.parse(["c4_t5=gs://b/m.model"]) == {"c4_t5": "gs://b/m.model"}
