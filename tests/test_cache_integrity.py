"""The cache reader checks what it reads against what the manifest promises (issue 32): a
damaged `lengths.npy`, records that disagree with it, a stale cache and a hand-edited
manifest fail with a DataError naming the file and the rebuild command, never with other
data or a library's internal message."""

import json
import os
import shutil
import types

import numpy as np
import pytest
from fixtures.data import fake_debian

from synthesizer_jax import data
from synthesizer_jax.data import records
from synthesizer_jax.run import Run

pytest.importorskip("seqio")
pytest.importorskip("grain")

LENGTHS = {"offline_lm": {"targets": 16}, "offline_classify": {"inputs": 12}}
SHA = "lengths_sha256"  # the manifest's checksum of lengths.npy


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("integrity"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, list(LENGTHS), progress=False)
  for name in LENGTHS:
    data.cache_task(name, path, log=lambda *a: None)
  return path


@pytest.fixture
def copy(built, tmp_path):
  """A private copy of the prepared and cached data directory, free to damage."""
  path = str(tmp_path / "data")
  shutil.copytree(built, path)
  return path


def _read(name, split, data_dir):
  return list(data.get_cached_dataset(name, split, feature_lengths=LENGTHS[name], batch_size=3,
                                      pack=False, shuffle=False, repeat=False,
                                      data_dir=data_dir))


def _lengths_file(name, split, data_dir):
  return os.path.join(records.split_dir(name, split, data_dir), records.LENGTHS)


def _edit_manifest(name, split, data_dir, edit):
  path = records.manifest_path(name, split, data_dir)
  with open(path) as f:
    manifest = json.load(f)
  edit(manifest)
  with open(path, "w") as f:
    json.dump(manifest, f)
  return path


def _flip_bit(lengths, other):
  out = lengths.copy()
  out[0, 0] ^= 1 << 3
  return out


def _other_split(lengths, other):
  return other[:len(lengths)].copy()  # the same shape, another split's lengths


def _rows_permuted(lengths, other):
  return lengths[np.argsort(-lengths[:, 0], kind="stable")].copy()  # same shape and totals


DAMAGES = {  # name -> (task, split, damage(lengths, another split's lengths))
    "flipped_bit": ("offline_lm", "validation", _flip_bit),
    "halved": ("offline_lm", "validation", lambda x, o: x // 2),
    "doubled": ("offline_lm", "validation", lambda x, o: x * 2),
    "another_split": ("offline_classify", "test", _other_split),
    "rows_permuted": ("offline_classify", "test", _rows_permuted),
}


def _damage(kind, data_dir):
  name, split, damage = DAMAGES[kind]
  path = _lengths_file(name, split, data_dir)
  lengths = np.load(path)
  bad = damage(lengths, np.load(_lengths_file(name, "train", data_dir)))
  assert bad.shape == lengths.shape and not np.array_equal(bad, lengths)
  np.save(path, bad)
  return name, split, path


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_lengths_file_is_refused_before_any_batch(copy, kind):
  name, split, path = _damage(kind, copy)
  with pytest.raises(data.DataError, match=f"(?s)Cache file {path} has sha256 .*, the "
                                           "manifest says .*damaged.*cache --task "
                                           f"{name} .*--rebuild"):
    data.get_cached_dataset(name, split, feature_lengths=LENGTHS[name], batch_size=3,
                            data_dir=copy)


@pytest.mark.parametrize("kind", ["flipped_bit", "halved", "doubled", "another_split"])
def test_a_cache_without_the_checksum_checks_the_token_counts(copy, kind):
  # Caches written before the manifest held the lengths' sha256.
  name, split, path = _damage(kind, copy)
  _edit_manifest(name, split, copy, lambda m: m.pop(SHA, None))
  with pytest.raises(data.DataError, match=f"(?s)Cache file {path} sums to [\\d,]+ "
                                           "tokens of '(inputs|targets)', the manifest says "
                                           "[\\d,]+: it is damaged.*--rebuild"):
    _read(name, split, copy)


def test_records_that_disagree_with_the_lengths_are_refused_at_read_time(built, copy):
  # Rows permuted: the same shape and totals, so only the records themselves can tell.
  name, split, path = _damage("rows_permuted", copy)
  _edit_manifest(name, split, copy, lambda m: m.pop(SHA, None))
  with pytest.raises(data.DataError, match=rf"(?s)Record \d+ of the cache of 'test' of task "
                                           rf"'offline_classify'.*header.*{records.LENGTHS}.*"
                                           "--rebuild"):
    _read(name, split, copy)
  # Undamaged, every record agrees with the lengths file and reads as before.
  assert len(_read(name, split, built)) == -(-records.read_manifest(name, split, built)
                                             ["num_examples"] // 3)


def test_the_writer_records_the_lengths_checksum(built):
  for name in LENGTHS:
    for split in ("train", "validation", "test"):
      manifest = records.read_manifest(name, split, built)
      assert manifest[SHA] == records.file_sha256(
          _lengths_file(name, split, built))


def _fake_run(pipeline, data_dir, task="offline_lm"):
  cfg = types.SimpleNamespace(data_pipeline=pipeline, task=task, data_dir=data_dir, pack=True,
                              seed=0, data_workers=0)
  return types.SimpleNamespace(cfg=cfg, data=data, feature_lengths=LENGTHS[task],
                               local_batch_size=2, shape=types.SimpleNamespace(packable=True))


def test_the_reader_refuses_a_stale_cache_as_the_cache_command_does(copy):
  with open(os.path.join(copy, "offline_lm", "validation.txt"), "a") as f:
    f.write("A paragraph added after the cache was built.\n")
  with pytest.raises(data.DataError) as command:
    data.cache_task("offline_lm", copy, ["validation"], log=lambda *a: None)
  with pytest.raises(data.DataError) as reader:
    _read("offline_lm", "validation", copy)
  assert str(reader.value) == str(command.value)
  assert "stale: corpus changed" in str(reader.value)
  assert str(reader.value).endswith(records.rebuild_cmd("offline_lm", copy))
  # Training with "auto" (or "grain") raises too, instead of reading the old tokens or
  # falling back to another pipeline.
  for pipeline in ("auto", "grain"):
    with pytest.raises(data.DataError, match="stale: corpus changed"):
      Run.dataset(_fake_run(pipeline, copy), "validation", train=False)
  # The other splits' files did not change: they still read.
  assert next(Run.dataset(_fake_run("auto", copy), "train", train=True))
  # A changed vocabulary is stale in both, with one message too.
  with open(data.task_info("offline_classify", copy).vocab_path, "ab") as f:
    f.write(b"\0")
  with pytest.raises(data.DataError) as command:
    data.cache_task("offline_classify", copy, ["test"], log=lambda *a: None)
  with pytest.raises(data.DataError) as reader:
    _read("offline_classify", "test", copy)
  assert str(reader.value) == str(command.value) and "vocabulary" in str(reader.value)


def test_a_host_with_only_the_cache_and_the_vocabulary_reads_it(built, copy):
  # docs/data.md: cache where TensorFlow is, copy records/ and vocab/ to the accelerator host.
  shutil.rmtree(os.path.join(copy, "offline_lm"))
  got, want = _read("offline_lm", "validation", copy), _read("offline_lm", "validation", built)
  assert len(got) == len(want)
  for a, b in zip(got, want, strict=True):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def _renamed(m):
  m["features"]["text"] = m["features"].pop("targets")
  m["num_tokens"]["text"] = m["num_tokens"].pop("targets")


def _emptied(m):
  m.update(num_examples=0, shards=[], num_tokens={"targets": 0})


MANIFEST_EDITS = [  # (task, split, edit, message)
    ("offline_lm", "validation", _renamed,
     r"lists features \{'text': 1\}.*task 'offline_lm' needs \{'targets': 1\}"),
    ("offline_lm", "validation", _emptied, r"num_examples=0.*at least one example"),
    ("offline_lm", "validation", lambda m: m.pop("features"), r"features None"),
    ("offline_lm", "validation", lambda m: m.update(split="test"),
     r"it is the manifest of 'offline_lm' split 'test'"),
    ("offline_lm", "validation", lambda m: m.update(num_examples=m["num_examples"] + 1),
     r"its shards hold \d+ records, num_examples says \d+"),
    ("offline_classify", "test", lambda m: m["features"]["label"].update(rank=1),
     r"lists features \{'inputs': 1, 'label': 1\}.*needs \{'inputs': 1, 'label': 0\}"),
]


@pytest.mark.parametrize("name, split, edit, message", MANIFEST_EDITS,
                         ids=["renamed_feature", "empty_split", "no_features", "other_split",
                              "more_examples", "label_rank"])
def test_a_hand_edited_manifest_is_named_with_the_rebuild_command(copy, name, split, edit,
                                                                   message):
  if edit is _emptied:
    np.save(_lengths_file(name, split, copy), np.zeros((0, 1), np.int32))
  path = _edit_manifest(name, split, copy, edit)
  with pytest.raises(data.DataError, match=f"(?s)Cache manifest {path} .*{message}.*--rebuild"):
    _read(name, split, copy)


def test_the_benchmark_measures_what_the_checks_cost(built):
  from benchmarks import data_pipeline as bench

  row = bench.verify_cost("offline_lm", built, batch_size=2, batches=3, rounds=2)
  assert all(len(v) == 2 and min(v) > 0 for v in row["rounds"].values())
  assert row["ratio"] > 0 and row["open_split_s"] > 0 and row["stale_check_s"] > 0
  text = bench.verify_table([row])
  assert text.count("\n") == 2 and text.splitlines()[2].startswith("| offline_lm | ")
