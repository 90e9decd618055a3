"""The task cache (data/cache.py, records.py) and the Grain pipeline that reads it
(grain_pipeline.py, features.py): same batches as seqio, packing, resume, shards, errors."""

import collections
import itertools
import json
import os
import shutil
import time

import numpy as np
import pytest
from fixtures.data import fake_debian

from synthesizer_jax import data
from synthesizer_jax.data import records, vocab

pytest.importorskip("seqio")
pytest.importorskip("grain")

TASKS = {"offline_lm": {"targets": 16}, "offline_translate_en_de": {"inputs": 16, "targets": 12},
         "offline_classify": {"inputs": 12}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("cache"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, list(TASKS), progress=False)
  for name in TASKS:
    data.cache_task(name, path, log=lambda *a: None)
  return path


def _grain(name, data_dir, n=None, **kw):
  kw = {"feature_lengths": TASKS[name], "batch_size": 3, "pack": False, "shuffle": False,
        "repeat": False, "split": "train", **kw}
  it = data.get_cached_dataset(name, kw.pop("split"), data_dir=data_dir, **kw)
  return list(itertools.islice(it, n)) if n else list(it)


def _rows(batches, key):
  return [tuple(r[r > 0].tolist()) for b in batches for r in np.atleast_2d(b[key])]


def test_manifest_pins_vocabulary_corpus_and_counts(data_dir):
  m = records.read_manifest("offline_translate_en_de", "validation", data_dir)
  with open(os.path.join(data_dir, "offline_translate_en_de", "validation.tsv")) as f:
    lines = f.read().splitlines()
  assert (m["task"], m["split"], m["num_examples"]) == ("offline_translate_en_de", "validation",
                                                         len(lines))
  assert m["features"] == {"inputs": {"dtype": "int32", "rank": 1},
                           "targets": {"dtype": "int32", "rank": 1}}
  vpath = data.task_info("offline_translate_en_de", data_dir).vocab_path
  assert m["vocabulary"]["sha256"] == records.file_sha256(vpath)
  assert m["corpus"]["sha256"] == records.file_sha256(
      os.path.join(data_dir, "offline_translate_en_de", "validation.tsv"))
  import synthesizer_jax

  assert m["library_version"] == synthesizer_jax.__version__
  _, _, lengths = records.open_split("offline_translate_en_de", "validation", data_dir)
  assert m["num_tokens"] == {"inputs": int(lengths[:, 0].sum()),
                             "targets": int(lengths[:, 1].sum())}
  labels = records.read_manifest("offline_classify", "test", data_dir)["features"]["label"]
  assert labels == {"dtype": "int32", "rank": 0}


def test_record_format_round_trips():
  ex = {"inputs": np.array([5, 6, 1], np.int32), "label": np.int32(-1)}
  out = records.decode(records.encode(ex, ["inputs", "label"]), ["inputs", "label"], [1, 0])
  np.testing.assert_array_equal(out["inputs"], ex["inputs"])
  assert out["label"] == -1 and out["inputs"].dtype == np.int32


@pytest.mark.parametrize("name", list(TASKS))
def test_unpacked_batches_equal_seqio(data_dir, name):
  for split in ("validation", "test"):
    kw = {"feature_lengths": TASKS[name], "batch_size": 3, "pack": False, "shuffle": False,
          "repeat": False}
    want = list(data.get_dataset(name, split, data_dir=data_dir, **kw))
    got = _grain(name, data_dir, split=split)
    assert len(got) == len(want)
    for a, b in zip(want, got, strict=True):
      assert set(a) == set(b)
      for key in a:
        assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {split} {key}")


@pytest.mark.parametrize("name", ["offline_lm", "offline_translate_en_de"])
def test_packed_segments_are_the_unpacked_examples(data_dir, name):
  unpacked = _grain(name, data_dir, batch_size=8)
  by_target = {}
  for b in unpacked:
    for i, t in enumerate(b["decoder_target_tokens"]):
      by_target.setdefault(tuple(t[t > 0].tolist()), []).append({k: v[i] for k, v in b.items()})
  packed = _grain(name, data_dir, batch_size=4, pack=True, shuffle=True, seed=5)
  assert max(b["decoder_segment_ids"].max() for b in packed) >= 2  # something was packed
  seen = collections.Counter()
  sides = ("decoder", "encoder") if "encoder_input_tokens" in packed[0] else ("decoder",)
  for b in packed:
    assert all(v.dtype == np.int32 and v.ndim == 2 and len(v) <= 4 for v in b.values())
    for i in range(len(b["decoder_target_tokens"])):
      segs = b["decoder_segment_ids"][i]
      ids = np.unique(segs[segs > 0])
      np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # 1, 2, ... in order
      for s in ids:
        sel = segs == s
        tgt = b["decoder_target_tokens"][i][sel]
        (ref, *_) = by_target[tuple(tgt.tolist())]
        k = sel.sum()
        np.testing.assert_array_equal(b["decoder_positions"][i][sel], np.arange(k))
        for key in ("decoder_input_tokens", "decoder_loss_weights"):
          np.testing.assert_array_equal(b[key][i][sel], ref[key][:k], err_msg=key)
        if "encoder" in sides:
          esel = b["encoder_segment_ids"][i] == s
          ref_enc = ref["encoder_input_tokens"]
          np.testing.assert_array_equal(b["encoder_input_tokens"][i][esel], ref_enc[ref_enc > 0])
          np.testing.assert_array_equal(b["encoder_positions"][i][esel], np.arange(esel.sum()))
        seen[tuple(tgt.tolist())] += 1
      for side in sides:  # padding: segment 0, position 0, token 0
        pad = b[f"{side}_segment_ids"][i] == 0
        assert not b[f"{side}_positions"][i][pad].any()
      pad = segs == 0
      assert not b["decoder_input_tokens"][i][pad].any()
      assert not b["decoder_target_tokens"][i][pad].any()
  # One pass over the packed rows holds every example exactly once.
  assert seen == collections.Counter({t: len(v) for t, v in by_target.items()})


def test_start_batch_is_index_arithmetic(data_dir):
  kw = {"batch_size": 4, "pack": True, "shuffle": True, "repeat": True, "seed": 3}
  whole = _grain("offline_translate_en_de", data_dir, 12, **kw)  # several epochs
  resumed = _grain("offline_translate_en_de", data_dir, 4, start_batch=8, **kw)
  for a, b in zip(whole[8:], resumed, strict=True):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  other = _grain("offline_translate_en_de", data_dir, 1, **{**kw, "seed": 4})
  assert not np.array_equal(other[0]["decoder_target_tokens"], whole[0]["decoder_target_tokens"])
  times = []
  for start in (10, 10_000_000):
    t = time.perf_counter()
    _grain("offline_lm", data_dir, 1, start_batch=start, **kw)
    times.append(time.perf_counter() - t)
  assert times[1] < 5 * times[0] + 1.0, times  # no skipping through batches


def test_two_shards_are_disjoint_and_cover_the_split(data_dir):
  kw = {"split": "test", "shuffle": True, "seed": 1, "num_shards": 2}
  shards = [_grain("offline_classify", data_dir, shard_index=i, **kw) for i in (0, 1)]
  whole = _grain("offline_classify", data_dir, split="test")
  rows = [collections.Counter(_rows(s, "encoder_input_tokens")) for s in shards]
  assert not set(rows[0]) & set(rows[1])
  assert rows[0] + rows[1] == collections.Counter(_rows(whole, "encoder_input_tokens"))
  labels = sorted(int(x) for s in shards for b in s for x in b["targets"])
  assert labels == sorted(int(x) for b in whole for x in b["targets"])


def test_global_batches_do_not_depend_on_the_number_of_shards(data_dir):
  # A run resumed on 2 processes reads the global batches a 1-process run would have read.
  kw = {"pack": True, "shuffle": True, "repeat": True, "seed": 5}
  one = _grain("offline_lm", data_dir, 9, batch_size=4, **kw)  # several epochs
  two = [_grain("offline_lm", data_dir, 9, batch_size=2, num_shards=2, shard_index=i, **kw)
         for i in (0, 1)]
  for k, whole in enumerate(one):
    for key, value in whole.items():
      np.testing.assert_array_equal(value, np.concatenate([two[0][k][key], two[1][k][key]]))
  # One pass gives every shard the same number of batches (the last may be empty).
  passes = [_grain("offline_classify", data_dir, split="test", batch_size=5, num_shards=3,
                   shard_index=i) for i in range(3)]
  assert len({len(p) for p in passes}) == 1
  assert sum(len(b["targets"]) for p in passes for b in p) == sum(
      len(b["targets"]) for b in _grain("offline_classify", data_dir, split="test"))


def test_cache_is_idempotent_and_refuses_a_stale_one(data_dir, tmp_path):
  shard = os.path.join(records.split_dir("offline_classify", "test", data_dir),
                       "records-00000.array_record")
  before = os.path.getmtime(shard)
  logs = []
  data.cache_task("offline_classify", data_dir, ["test"], log=logs.append)
  assert os.path.getmtime(shard) == before and "up to date" in logs[0]
  copy = str(tmp_path / "data")
  shutil.copytree(data_dir, copy)
  with open(os.path.join(copy, "offline_classify", "test.tsv"), "a") as f:
    f.write("1\tA new review, great.\n")
  with pytest.raises(data.DataError, match=r"(?s)stale: corpus changed.*--task offline_classify "
                                           r".*--rebuild"):
    data.cache_task("offline_classify", copy, ["test"], log=logs.append)
  m = data.cache_task("offline_classify", copy, ["test"], rebuild=True, log=logs.append)["test"]
  assert m["num_examples"] == 61
  # `prepare --cache` (refresh) rebuilds a stale cache and keeps an up-to-date one.
  with open(os.path.join(copy, "offline_classify", "test.tsv"), "a") as f:
    f.write("0\tAnother review.\n")
  m = data.cache_task("offline_classify", copy, ["test"], refresh=True, log=logs.append)["test"]
  assert m["num_examples"] == 62 and "rebuilding the stale cache" in logs[-2]
  data.cache_task("offline_classify", copy, ["test"], refresh=True, log=logs.append)
  assert "up to date" in logs[-1]
  # Another vocabulary: reading refuses the cache too.
  vpath = data.task_info("offline_classify", copy).vocab_path
  with open(vpath, "ab") as f:
    f.write(b"\0")
  with pytest.raises(data.DataError, match="(?s)stale.*vocabulary.*--rebuild"):
    _grain("offline_classify", copy, split="test")
  with pytest.raises(data.DataError, match="(?s)stale.*vocabulary.*--rebuild"):
    data.cache_task("offline_classify", copy, ["test"], log=logs.append)


def test_missing_or_corrupt_cache_names_the_file_and_the_command(data_dir, tmp_path):
  copy = str(tmp_path / "data")
  shutil.copytree(data_dir, copy)
  cache = records.split_dir("offline_lm", "train", copy)
  shard = os.path.join(cache, "records-00000.array_record")
  with open(shard, "r+b") as f:
    f.truncate(1000)
  with pytest.raises(data.DataError, match=f"(?s){shard}.*corrupt.*cache --task offline_lm "
                                           ".*--rebuild"):
    _grain("offline_lm", copy)
  os.remove(shard)
  with pytest.raises(data.DataError, match=f"(?s){shard}.*missing.*--rebuild"):
    _grain("offline_lm", copy)
  shutil.rmtree(records.split_dir("offline_lm", "validation", copy))
  with pytest.raises(data.DataError, match=r"(?s)No cache of split 'validation'.*manifest.json "
                                           r"is missing.*data.cache --task offline_lm"):
    _grain("offline_lm", copy, split="validation")
  with pytest.raises(data.DataError, match=r"needs feature_lengths.*\['inputs', 'targets'\]"):
    _grain("offline_translate_en_de", copy, feature_lengths={"targets": 8})


def test_vocabulary_without_seqio_matches_seqio(data_dir):
  for name in TASKS:
    want = data.get_vocabulary(name, data_dir)
    got = vocab.SentencePieceVocabulary(data.task_info(name, data_dir).vocab_path)
    assert (got.vocab_size, got.eos_id) == (want.vocab_size, want.eos_id)
    for text in ("The quick brown fox, jumps!", "über größe", "  a  b ", ""):
      assert got.encode(text) == list(want.encode(text))
    rng = np.random.default_rng(0)
    for ids in rng.integers(0, want.vocab_size + 4, (30, 20)).tolist():
      assert got.decode(ids) == want.decode(ids)


def test_manifest_is_json_on_disk(data_dir):
  with open(records.manifest_path("offline_lm", "train", data_dir)) as f:
    assert json.load(f)["shape"] == "lm"


def test_caching_checks_token_ids_against_the_vocabulary_once(data_dir, tmp_path):
  """A vocabulary smaller than the ids the task produces is caught while caching, naming the
  example, the feature and the command that rebuilds it."""
  from synthesizer_jax.data import cache, tasks

  task = tasks.seqio_task("offline_classify", data_dir)

  class Small:  # the task's features, with a vocabulary 5 ids wide
    vocabulary = type("V", (), {"vocab_size": 5})()

  class Narrow:
    output_features = {"inputs": Small()}

    def __getattr__(self, attr):
      return getattr(task, attr)

  out = tmp_path / "out"
  out.mkdir()
  with pytest.raises(data.DataError, match=r"Example 0 of offline_classify/validation: feature "
                     r"'inputs' holds token id \d+, outside the vocabulary \[0, 5\); rebuild .*"
                     r"synthesizer_jax.data.prepare"):
    cache._write_split("offline_classify", "validation", data_dir, Narrow(), str(out), 100)


def test_pipeline_benchmark_measures_both_pipelines(data_dir):
  from benchmarks import data_pipeline as bench

  rows = [bench.worker("offline_lm", p, data_dir, batch_size=2, batches=3, starts=s)
          for p, s in (("grain", [1, 10_000_000]), ("seqio", [1]))]
  for r in rows:
    assert r["batches_per_s"] > 0 and r["cpu_s_per_batch"] > 0
  text = bench.table(rows, [1, 10_000_000])
  assert text.count("\n") == 3 and "| offline_lm | seqio |" in text and "not run" in text


def test_worker_processes_give_the_same_batches(data_dir):
  kw = {"batch_size": 4, "pack": True, "shuffle": True, "repeat": True, "seed": 2}
  threads = _grain("offline_lm", data_dir, 5, start_batch=3, **kw)
  workers = _grain("offline_lm", data_dir, 5, start_batch=3, num_workers=2, **kw)
  for a, b in zip(threads, workers, strict=True):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
