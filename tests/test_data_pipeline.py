"""`get_dataset` through the real seqio pipeline: offline tasks on fake sources, TFDS tasks
under `tfds.testing.mock_data`, and the errors a user can hit."""

import itertools
import os
import shutil

import numpy as np
import pytest
from fixtures.data import fake_debian

from synthesizer_jax import data
from synthesizer_jax.data import tasks

pytest.importorskip("seqio")

OFFLINE = ("offline_lm", "offline_translate_en_de", "offline_classify", "personachat")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("pipeline"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    fake_debian.write_personachat(path)
    data.prepare(path, OFFLINE, progress=False)
  return path


def _lines(data_dir, name, split):
  ext = "txt" if name == "offline_lm" else "tsv"
  with open(os.path.join(data_dir, name, f"{split}.{ext}"), encoding="utf-8") as f:
    return f.read().splitlines()


def _batches(name, data_dir, n=None, **kw):
  kw = {"batch_size": 4, "pack": True, "shuffle": True, "seed": 0, "repeat": True,
        "shuffle_buffer_size": 64, **kw}
  it = data.get_dataset(name, kw.pop("split", "train"), data_dir=data_dir, **kw)
  return list(itertools.islice(it, n)) if n else list(it)


def _check_packed_decoder(b, prefix="decoder", min_per_row=1):
  tgt, inp = b[f"{prefix}_target_tokens"], b[f"{prefix}_input_tokens"]
  seg, pos = b[f"{prefix}_segment_ids"], b[f"{prefix}_positions"]
  np.testing.assert_array_equal(b[f"{prefix}_loss_weights"], (tgt != 0).astype(np.int32))
  starts = pos == 0
  # Inputs are targets shifted right within each packed segment, starting from 0.
  np.testing.assert_array_equal(inp[starts], 0)
  np.testing.assert_array_equal(inp[:, 1:][~starts[:, 1:]], tgt[:, :-1][~starts[:, 1:]])
  # Positions count up from 0 within a segment; padding has segment 0.
  same = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
  np.testing.assert_array_equal(pos[:, 1:][same], pos[:, :-1][same] + 1)
  assert np.all(seg[tgt == 0] == 0) and seg.max() >= min_per_row


def test_lm_packed_batches(data_dir):
  batches = _batches("offline_lm", data_dir, 8, feature_lengths={"targets": 32})
  b = batches[0]
  assert set(b) == {"decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights",
                    "decoder_segment_ids", "decoder_positions"}
  assert all(v.shape == (4, 32) and v.dtype == np.int32 for v in b.values())
  for b in batches:
    _check_packed_decoder(b)
  # Documents are cut into 32-token pieces; their short tails get packed together.
  assert max(b["decoder_segment_ids"].max() for b in batches) >= 2


def test_lm_one_pass_covers_every_document_once(data_dir):
  vocab = data.get_vocabulary("offline_lm", data_dir)
  docs = _lines(data_dir, "offline_lm", "validation")
  batches = _batches("offline_lm", data_dir, split="validation", feature_lengths={"targets": 16},
                     pack=False, shuffle=False, repeat=False, batch_size=3)
  assert {b["decoder_target_tokens"].shape[1] for b in batches} == {16}
  assert "decoder_segment_ids" not in batches[0]
  rows = [r[r > 0].tolist() for b in batches for r in b["decoder_target_tokens"]]
  # Documents are cut into full 16-token pieces; EOS (1) ends only a document's last piece.
  flat = [t for r in rows for t in r]
  ends = [i for i, t in enumerate(flat) if t == 1]
  assert len(ends) == len(docs) and ends[-1] == len(flat) - 1
  assert all(len(r) == 16 for r in rows if r[-1] != 1)
  starts = [0] + [e + 1 for e in ends[:-1]]
  assert [vocab.decode(flat[a:b]) for a, b in zip(starts, ends, strict=True)] == docs


def test_translation_packed_and_exact(data_dir):
  lengths = {"inputs": 24, "targets": 24}
  (b,) = _batches("offline_translate_en_de", data_dir, 1, feature_lengths=lengths)
  _check_packed_decoder(b, min_per_row=2)
  assert b["encoder_input_tokens"].shape == (4, 24)
  enc_seg = b["encoder_segment_ids"]
  assert set(np.unique(enc_seg[enc_seg > 0])) == set(np.unique(b["decoder_segment_ids"])) - {0}
  vocab = data.get_vocabulary("offline_translate_en_de", data_dir)
  pairs = [r.split("\t") for r in _lines(data_dir, "offline_translate_en_de", "validation")]
  batches = _batches("offline_translate_en_de", data_dir, split="validation",
                     feature_lengths={"inputs": 64, "targets": 64}, pack=False,
                     shuffle=False, repeat=False)
  rows = [(vocab.decode(e.tolist()), vocab.decode(t.tolist())) for b in batches
          for e, t in zip(b["encoder_input_tokens"], b["decoder_target_tokens"], strict=True)]
  assert rows == [tuple(p) for p in pairs]


def test_classifier_batches(data_dir):
  rows = [r.split("\t") for r in _lines(data_dir, "offline_classify", "test")]
  batches = _batches("offline_classify", data_dir, split="test", feature_lengths={"inputs": 12},
                     shuffle=False, repeat=False, batch_size=7)
  assert set(batches[0]) == {"encoder_input_tokens", "targets"}
  assert batches[0]["encoder_input_tokens"].shape == (7, 12)
  assert batches[-1]["targets"].shape == (len(rows) % 7 or 7,)  # one pass keeps the tail
  labels = np.concatenate([b["targets"] for b in batches])
  np.testing.assert_array_equal(labels, [int(r[0]) for r in rows])
  vocab = data.get_vocabulary("offline_classify", data_dir)
  for b in batches:
    for tokens in b["encoder_input_tokens"]:
      ids = [*vocab.encode(rows.pop(0)[1]), 1][:12]
      np.testing.assert_array_equal(tokens, ids + [0] * (12 - len(ids)))


def test_personachat_batches(data_dir):
  (b,) = _batches("personachat", data_dir, 1, feature_lengths={"inputs": 48, "targets": 16})
  _check_packed_decoder(b)


def test_deterministic_seeds_shards_and_resume(data_dir):
  kw = {"feature_lengths": {"targets": 16}, "batch_size": 2}
  a = _batches("offline_lm", data_dir, 5, seed=3, **kw)
  b = _batches("offline_lm", data_dir, 5, seed=3, **kw)
  c = _batches("offline_lm", data_dir, 5, seed=4, **kw)
  tokens = lambda bs: np.stack([x["decoder_target_tokens"] for x in bs])
  np.testing.assert_array_equal(tokens(a), tokens(b))
  assert not np.array_equal(tokens(a), tokens(c))
  resumed = _batches("offline_lm", data_dir, 2, seed=3, start_batch=3, **kw)
  np.testing.assert_array_equal(tokens(resumed), tokens(a[3:]))
  # Two shards of one pass split the examples between them.
  kw = {"split": "test", "feature_lengths": {"inputs": 64}, "shuffle": False, "repeat": False,
        "num_shards": 2}
  shards = [_batches("offline_classify", data_dir, shard_index=i, **kw) for i in (0, 1)]
  rows = [{tuple(r) for b in s for r in b["encoder_input_tokens"]} for s in shards]
  assert not rows[0] & rows[1]
  assert sum(len(b["targets"]) for s in shards for b in s) == 60


def test_errors(data_dir, tmp_path):
  kw = {"feature_lengths": {"targets": 16}, "batch_size": 2}
  with pytest.raises(data.DataError, match="Unknown task"):
    data.get_dataset("offline_nope", "train", data_dir=data_dir, **kw)
  with pytest.raises(data.DataError, match="(?s)does not exist.*synthesizer_jax.data.prepare"):
    data.get_dataset("offline_lm", "train", data_dir=str(tmp_path / "missing"), **kw)
  with pytest.raises(data.DataError, match="(?s)not prepared.*--tasks offline_summarize"):
    data.get_dataset("offline_summarize", "train", data_dir=data_dir, **kw)
  with pytest.raises(data.DataError, match="(?s)No vocabulary.*synthesizer_jax.data.prepare"):
    data.get_vocabulary("offline_summarize", data_dir)
  with pytest.raises(data.DataError, match=r"needs feature_lengths.*\['inputs', 'targets'\]"):
    data.get_dataset("offline_translate_en_de", "train", data_dir=data_dir, **kw)
  with pytest.raises(data.DataError, match="no split 'dev'"):
    data.get_dataset("offline_lm", "dev", data_dir=data_dir, **kw)
  # A split file emptied after preparing: the first batch says which split is empty.
  copy = str(tmp_path / "copy")
  shutil.copytree(data_dir, copy)
  open(os.path.join(copy, "offline_lm", "test.txt"), "w").close()
  with pytest.raises(data.DataError, match="split 'test' of task 'offline_lm' is empty"):
    next(data.get_dataset("offline_lm", "test", data_dir=copy, repeat=False, **kw))


TFDS_CASES = {  # task: (feature lengths, split)
    "lm1b": ({"targets": 32}, "validation"),
    "c4": ({"targets": 32}, "test"),
    "wmt14_ende": ({"inputs": 32, "targets": 32}, "train"),
    "wmt14_enfr": ({"inputs": 32, "targets": 32}, "test"),
    "cnn_dailymail": ({"inputs": 64, "targets": 16}, "test"),
    "glue_sst2": ({"inputs": 32}, "train"),
    "glue_stsb": ({"inputs": 32}, "validation"),
    "glue_mnli_t2t": ({"inputs": 48, "targets": 8}, "validation_mismatched"),
    "super_glue_copa": ({"inputs": 48}, "validation"),
    "super_glue_multirc_t2t": ({"inputs": 64, "targets": 4}, "validation"),
    "super_glue_wsc": ({"inputs": 48}, "train"),
    "super_glue_record_t2t": ({"inputs": 96, "targets": 8}, "train"),
}


def test_tfds_tasks_under_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  root = str(tmp_path)
  mock = tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE,
                                data_dir=os.path.join(root, "no_metadata"))
  with pytest.raises(data.DataError, match="(?s)TFDS data for 'lm1b' is missing.*tfds build"):
    data.get_dataset("lm1b", "train", feature_lengths={"targets": 8}, batch_size=1, data_dir=root)
  for name in TFDS_CASES:  # mock_data reads no files, but the task checks the directory exists
    os.makedirs(tasks.tfds_version_dir(name, root), exist_ok=True)
  with mock:
    data.prepare(root, ["lm1b", "c4", "wmt14_ende", "wmt14_enfr", "cnn_dailymail", "glue_sst2"],
                 progress=False)
    for name, (lengths, split) in TFDS_CASES.items():
      info = data.task_info(name, root)
      assert os.path.exists(info.vocab_path)
      (b,) = _batches(name, root, 1, split=split, feature_lengths=lengths, batch_size=2)
      if info.shape == "classifier":
        assert b["encoder_input_tokens"].shape == (2, lengths["inputs"])
        assert np.all((b["targets"] >= 0) & (b["targets"] < info.num_classes)), name
      else:
        _check_packed_decoder(b)
        if info.shape == "encdec":
          assert b["encoder_input_tokens"].shape == (2, lengths["inputs"])


def test_tfds_tasks_cache_and_read_back_without_seqio(tmp_path):
  """A TFDS task (one per model shape) caches under mock_data; Grain reads the batches
  seqio gives, and the manifest pins the TFDS name and version."""
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("grain")
  from synthesizer_jax.data import records, registry

  root = str(tmp_path)
  cases = {"lm1b": {"targets": 16}, "wmt14_ende": {"inputs": 24, "targets": 24},
           "glue_sst2": {"inputs": 32}}
  for name in cases:
    os.makedirs(tasks.tfds_version_dir(name, root), exist_ok=True)
  with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE,
                              data_dir=os.path.join(root, "no_metadata")):
    data.prepare(root, list(cases), progress=False)
    for name, lengths in cases.items():
      data.cache_task(name, root, splits=["validation"], log=lambda *a: None)
      kw = {"feature_lengths": lengths, "batch_size": 2, "pack": False, "shuffle": False,
            "repeat": False}
      want = list(data.get_dataset(name, "validation", data_dir=root, **kw))
      manifest = records.read_manifest(name, "validation", root)
      assert manifest["corpus"]["tfds_name"] == registry.spec(name).tfds_name
      got = list(data.get_cached_dataset(name, "validation", data_dir=root, **kw))
      assert len(got) == len(want) > 0, name
      for a, b in zip(want, got, strict=True):
        assert set(a) == set(b), name
        for key in a:
          np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")
