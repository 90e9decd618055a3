"""The Beam cache builder (data/beam_cache.py) against the single-process writer (cache.py),
built in the same test from the same prepared data: on Beam's DirectRunner with two worker
processes the Beam cache holds the same records in the same shards (byte for byte, hence the
same multiset), so training reads the same batches; a worker that fails leaves no cache the
reader accepts (the old one stays), and the retry (Beam's own, or a rerun) completes it."""

import collections
import filecmp
import itertools
import json
import os
import shutil

import numpy as np
import pytest
from fixtures.data import fake_debian

from synthesizer_jax import data
from synthesizer_jax.data import beam_cache, cache, records

pytest.importorskip("seqio")
pytest.importorskip("grain")
pytest.importorskip("apache_beam")

LENGTHS = {"offline_lm": {"targets": 16}, "offline_translate_en_de": {"inputs": 16, "targets": 12},
           "offline_classify": {"inputs": 12}}
SPLITS = ("train", "validation", "test")
PER_SHARD = 16  # several output shards per split
INPUT_SHARDS = 3  # uneven shards of a one-file source: the positions must interleave them
TWO = ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
       "--direct_num_workers=2"]
IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
QUIET = {"log": lambda *a: None}
# The workers import this checkout's package (before anything else on the path).
PYTHONPATH = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(prepared data dir with the single-process caches, a dir with the Beam caches of every
  split of every task: one pipeline on two worker processes)."""
  root = str(tmp_path_factory.mktemp("beam_cache"))
  path, out = os.path.join(root, "data"), os.path.join(root, "beam")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, list(LENGTHS), progress=False)
  for name in LENGTHS:
    cache.cache_task(name, path, records_per_shard=PER_SHARD, **QUIET)
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("PYTHONPATH", PYTHONPATH)
    beam_cache.build([(n, s) for n in LENGTHS for s in SPLITS], path, out_dir=out,
                     records_per_shard=PER_SHARD, num_shards=INPUT_SHARDS, beam_args=TWO, **QUIET)
  return path, out


def _files(name, split, root):
  where = records.split_dir(name, split, root)
  return sorted(os.listdir(where)), where


def _examples(name, split, root):
  manifest, shards, lengths = records.open_split(name, split, root)
  from array_record.python.array_record_module import ArrayRecordReader

  out = []
  for path in shards:
    reader = ArrayRecordReader(path)
    out += reader.read_all()
    reader.close()
  assert len(out) == len(lengths) == manifest["num_examples"]
  return out


@pytest.mark.parametrize("name", list(LENGTHS))
def test_the_beam_cache_holds_the_single_process_records(built, name):
  path, out = built
  for split in SPLITS:
    want, got = _examples(name, split, path), _examples(name, split, out)
    assert collections.Counter(got) == collections.Counter(want)  # the multiset
    assert got == want  # and the order
    (files, a), (same, b) = _files(name, split, path), _files(name, split, out)
    assert files == same
    assert split != "train" or len([f for f in files if f.endswith(".array_record")]) > 1
    for f in files:
      if f != records.MANIFEST:
        assert filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False), f
    m = json.loads(open(os.path.join(b, records.MANIFEST)).read())
    assert m.pop("builder") == {"runner": "DirectRunner", "input_shards": INPUT_SHARDS,
                                "sharded_by": "example"}
    assert m == json.loads(open(os.path.join(a, records.MANIFEST)).read())


@pytest.mark.parametrize("name", list(LENGTHS))
def test_training_reads_the_same_batches_from_either_cache(built, name):
  path, out = built
  kw = {"feature_lengths": LENGTHS[name], "batch_size": 4, "pack": True, "shuffle": True,
        "seed": 3, "repeat": True}
  got, want = (list(itertools.islice(data.get_cached_dataset(name, "train", data_dir=d, **kw), 9))
               for d in (out, path))
  for a, b in zip(got, want, strict=True):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_positions_interleave_example_shards_and_follow_file_shards():
  """Round-robin shards of N source examples, one example each, land at j * n + i; shards of
  any other sizes (a filtering preprocessor) still fill 0..N-1 once each."""
  def positions(counts, by_file):
    s = type("S", (), {"num_shards": len(counts), "by_file": by_file, "records_per_shard": 1})
    place, table = beam_cache._Place(s), dict(enumerate(counts))
    return [place((i, j, b"", []), table)[1][0] for i, c in enumerate(counts) for j in range(c)]

  n, total = 4, 10
  counts = [len(range(i, total, n)) for i in range(n)]
  got = positions(counts, by_file=False)
  assert got == [j * n + i for i, c in enumerate(counts) for j in range(c)]
  for counts in ([5, 0, 2, 7], [0, 0, 3], [1]):
    for by_file in (False, True):
      assert sorted(positions(counts, by_file)) == list(range(sum(counts)))
  assert positions([2, 3], by_file=True) == [0, 1, 2, 3, 4]


def test_a_failed_worker_leaves_the_old_cache_and_the_rerun_completes(built, tmp_path,
                                                                      monkeypatch):
  """Two worker processes; one shard write fails once (a real exception in the DoFn, after its
  file is written). The DirectRunner does not retry a bundle, so the pipeline fails: the
  cache in place is the old, complete one, the half-built split has no manifest. Run again,
  the pipeline rebuilds the split, equal to the single-process one."""
  path, _ = built
  name, split = "offline_classify", "validation"
  out = str(tmp_path / "out")
  shutil.copytree(records.split_dir(name, split, path), records.split_dir(name, split, out))
  shutil.copytree(os.path.join(path, "vocab"), os.path.join(out, "vocab"))
  marker = tmp_path / "failed"
  monkeypatch.setenv(beam_cache.FAIL_ONCE_ENV, str(marker))
  monkeypatch.setenv("PYTHONPATH", PYTHONPATH)
  kw = {"out_dir": out, "rebuild": True, "records_per_shard": PER_SHARD, "num_shards": 2,
        "beam_args": TWO, **QUIET}
  with pytest.raises(Exception, match="injected failure after writing records-"):
    beam_cache.build([(name, split)], path, **kw)
  assert marker.exists()
  partial = records.split_dir(name, split, out) + ".partial"
  assert any(f.endswith(".array_record") for f in os.listdir(partial))
  assert not os.path.exists(os.path.join(partial, records.MANIFEST))
  assert _examples(name, split, out) == _examples(name, split, path)  # the old cache, whole
  shutil.rmtree(records.split_dir(name, split, out))  # and with none in place: none accepted
  with pytest.raises(data.DataError, match="(?s)No cache of split 'validation'.*data.cache --task"):
    records.open_split(name, split, out)
  beam_cache.build([(name, split)], path, **kw)
  assert _examples(name, split, out) == _examples(name, split, path)
  assert not os.path.exists(partial)


def test_beams_own_retry_of_a_failed_bundle_completes_the_cache(built, tmp_path, monkeypatch):
  """The bundle-based DirectRunner retries a failed bundle, as Dataflow retries a work item:
  the retried shard write rewrites its file and the cache is whole."""
  path, _ = built
  marker = tmp_path / "failed"
  monkeypatch.setenv(beam_cache.FAIL_ONCE_ENV, str(marker))
  name, split, out = "offline_translate_en_de", "validation", str(tmp_path / "out")
  beam_cache.build([(name, split)], path, out_dir=out, records_per_shard=PER_SHARD,
                   num_shards=2, beam_args=["--runner=BundleBasedDirectRunner"], **QUIET)
  assert marker.exists()
  assert _examples(name, split, out) == _examples(name, split, path)


def test_a_bucket_cache_built_by_beam_reads_as_the_local_one(built, gcs):
  path, _ = built
  bucket = gcs.new_path("data")
  beam_cache.build([("offline_lm", "validation")], path, out_dir=bucket,
                   records_per_shard=PER_SHARD, beam_args=IN_PROCESS, **QUIET)
  kw = {"feature_lengths": LENGTHS["offline_lm"], "batch_size": 3, "pack": False,
        "shuffle": False, "repeat": False}
  got, want = (list(data.get_cached_dataset("offline_lm", "validation", data_dir=d, **kw))
               for d in (bucket, path))
  assert len(got) == len(want) > 0
  for a, b in zip(got, want, strict=True):
    np.testing.assert_array_equal(a["decoder_target_tokens"], b["decoder_target_tokens"])


def test_stale_caches_and_bad_arguments_are_refused_before_the_pipeline(built, tmp_path):
  path, out = built
  logs = []
  kept = beam_cache.build([("offline_lm", "test")], path, out_dir=out, log=logs.append)
  assert "up to date" in logs[-1] and kept["offline_lm", "test"]["builder"]
  copy = str(tmp_path / "data")
  shutil.copytree(path, copy)
  with open(os.path.join(copy, "offline_lm", "test.txt"), "a") as f:
    f.write("A paragraph added after the cache was built.\n")
  with pytest.raises(data.DataError, match="(?s)stale: corpus changed.*--rebuild"):
    beam_cache.build([("offline_lm", "test")], copy, **QUIET)
  with pytest.raises(data.DataError, match="cannot write the local directory.*gs://"):
    beam_cache.build([("offline_lm", "test")], copy, rebuild=True,
                     beam_args=["--runner=DataflowRunner"], **QUIET)
  with pytest.raises(data.DataError, match="records_per_shard=0"):
    beam_cache.build([("offline_lm", "test")], copy, records_per_shard=0, **QUIET)
  assert beam_cache.main(["--task", "offline_lm", "--data_dir", copy, "--splits", "nope"]) == 2
