"""Task caches in a bucket, against a real GCS API (the emulator of `gcs_emulator.py`): the
cache command uploads a cache built on local disk (`--out_dir gs://...`, manifest last, the
vocabulary beside it); the Grain pipeline and a training run read it through ArrayRecord's
own GCS reader and get what they get from the local cache (bucket == local disk); a stale,
damaged or half-uploaded cache in the bucket is refused as on local disk; what cannot read a
bucket (seqio) is refused at start; `cache_copy` brings a cache back to local disk."""

import glob
import itertools
import json
import os
import shutil
import tempfile
import types

import numpy as np
import pytest
from etils import epath
from fixtures.data import fake_debian
from test_reliability import MODEL, ONE

from synthesizer_jax import data, loop
from synthesizer_jax.config import RunConfig, TrainConfig
from synthesizer_jax.data import cache, cache_copy, records, vocab
from synthesizer_jax.run import Run, setup

pytest.importorskip("seqio")
pytest.importorskip("grain")

LENGTHS = {"offline_lm": {"targets": 16}, "offline_classify": {"inputs": 12}}
PER_SHARD = 16  # several shards per split (offline_lm's validation split holds 2 documents)
QUIET = {"log": lambda *a: None}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """A prepared data directory with both tasks cached on local disk (the reference)."""
  root = str(tmp_path_factory.mktemp("bucket_data"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, list(LENGTHS), progress=False)
  for name in LENGTHS:
    cache.cache_task(name, path, records_per_shard=PER_SHARD, **QUIET)
  return path


@pytest.fixture
def copy(built, tmp_path):
  """A private copy of the prepared and cached data directory, free to change."""
  path = str(tmp_path / "data")
  shutil.copytree(built, path)
  return path


def _batches(name, data_dir, split="validation", n=None, **kw):
  kw = {"feature_lengths": LENGTHS[name], "batch_size": 3, "pack": False, "shuffle": False,
        "repeat": False, **kw}
  it = data.get_cached_dataset(name, split, data_dir=data_dir, **kw)
  return list(itertools.islice(it, n)) if n else list(it)


def _assert_same(got, want):
  assert len(got) == len(want) > 0
  for a, b in zip(got, want, strict=True):
    assert set(a) == set(b)
    for key in a:
      assert a[key].dtype == b[key].dtype
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _fake_run(pipeline, data_dir, task):
  cfg = types.SimpleNamespace(data_pipeline=pipeline, task=task, data_dir=data_dir, pack=True,
                              seed=0, data_workers=0)
  return types.SimpleNamespace(cfg=cfg, data=data, feature_lengths=LENGTHS[task],
                               local_batch_size=2, shape=types.SimpleNamespace(packable=True))


def _upload(built, gcs, tasks=("offline_lm",), splits=None):
  bucket = gcs.new_path("data")
  for name in tasks:
    cache.cache_task(name, built, splits, out_dir=bucket, records_per_shard=PER_SHARD, **QUIET)
  return bucket


def test_a_cache_uploaded_to_a_bucket_reads_as_the_local_one(built, gcs):
  bucket = gcs.new_path("data")
  assert cache.main(["--task", *LENGTHS, "--data_dir", built, "--out_dir", bucket,
                     "--records_per_shard", str(PER_SHARD)]) == 0
  root = epath.Path(bucket)
  # A data_dir of the cache and the vocabulary only, with what the local cache holds.
  assert sorted(p.name for p in root.iterdir()) == ["records", "vocab"]
  for name in LENGTHS:
    local_vocab = data.task_info(name, built).vocab_path
    assert epath.Path(data.task_info(name, bucket).vocab_path).read_bytes() == open(
        local_vocab, "rb").read()
    for split in ("train", "validation", "test"):
      manifest = records.read_manifest(name, split, bucket)
      assert manifest == records.read_manifest(name, split, built)
      assert len(manifest["shards"]) > 1 or split != "train"
      files = sorted(p.name for p in epath.Path(records.split_dir(name, split, bucket)).iterdir())
      assert files == sorted(os.listdir(records.split_dir(name, split, built)))
    # One pass, unshuffled; and packed, shuffled training batches from a later start.
    _assert_same(_batches(name, bucket), _batches(name, built))
    train = {"split": "train", "pack": True, "shuffle": True, "seed": 3, "repeat": True,
             "start_batch": 5, "n": 4}
    _assert_same(_batches(name, bucket, **train), _batches(name, built, **train))
    for pipeline in ("auto", "grain"):
      got = next(Run.dataset(_fake_run(pipeline, bucket, name), "train", train=True))
      _assert_same([got], [next(Run.dataset(_fake_run(pipeline, built, name), "train",
                                            train=True))])
    # The vocabulary loads from the bucket (as bytes) with the local one's ids.
    remote, local = data.get_vocabulary(name, bucket), data.get_vocabulary(name, built)
    assert isinstance(remote, vocab.SentencePieceVocabulary)
    text = "the quick river finds a stone"
    assert remote.vocab_size == local.vocab_size and remote.encode(text) == list(
        local.encode(text))
  assert not os.path.exists("gs:") and not glob.glob(os.path.join(built, "**", "gs:"))


def test_training_from_a_bucket_equals_training_from_local_disk(built, gcs, tmp_path):
  bucket = _upload(built, gcs, splits=["train", "validation"])
  out = {}
  for where, data_dir in (("bucket", bucket), ("local", built)):
    cfg = TrainConfig(task="offline_lm", data_dir=data_dir, batch_size=4, targets_length=16,
                      num_train_steps=3, log_every=1, eval_every=100, checkpoint_every=100,
                      eval_batches=1, predict_batches=0, warmup_steps=1, sample_prompt="",
                      async_checkpoints=False, data_pipeline="grain")
    work = tmp_path / where
    out[where] = loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), str(work),
                                         progress=False)
    out[where]["losses"] = [json.loads(line).get("loss")
                            for line in open(work / "metrics.jsonl")]
  assert out["bucket"]["step"] == out["local"]["step"] == 3
  assert out["bucket"]["losses"] == out["local"]["losses"]
  assert out["bucket"]["metrics"] == out["local"]["metrics"]
  a, b = (data.task_info("offline_lm", d).vocab_path for d in (bucket, built))
  saved = json.loads(open(tmp_path / "bucket" / "config.json").read())
  assert saved["vocab_path"] == a and saved["vocab_sha256"] == json.loads(
      open(tmp_path / "local" / "config.json").read())["vocab_sha256"]
  assert b != a


def test_the_cache_command_keeps_an_up_to_date_bucket_cache_and_refuses_a_stale_one(copy, gcs):
  bucket = _upload(copy, gcs, splits=["validation"])
  manifest = epath.Path(records.manifest_path("offline_lm", "validation", bucket))
  before = manifest.read_text()
  logs = []
  cache.cache_task("offline_lm", copy, ["validation"], out_dir=bucket, log=logs.append)
  assert "cache up to date" in logs[-1] and manifest.read_text() == before
  # The bucket lost its vocabulary: the up-to-date cache is kept, the vocabulary put back.
  epath.Path(data.task_info("offline_lm", bucket).vocab_path).unlink()
  cache.cache_task("offline_lm", copy, ["validation"], out_dir=bucket, log=logs.append)
  assert "copied its vocabulary" in logs[-2] and data.get_vocabulary("offline_lm", bucket)
  # Another corpus: refused as for a local cache, with the command that rebuilds the bucket's.
  with open(os.path.join(copy, "offline_lm", "validation.txt"), "a") as f:
    f.write("A paragraph added after the cache was built.\n")
  with pytest.raises(data.DataError) as refused:
    cache.cache_task("offline_lm", copy, ["validation"], out_dir=bucket, **QUIET)
  with pytest.raises(data.DataError) as local:
    cache.cache_task("offline_lm", copy, ["validation"], **QUIET)
  reason = str(local.value).split(" is stale: ")[1].split(". Rebuild")[0]
  assert reason.startswith("corpus changed") and reason in str(refused.value)
  assert str(refused.value).startswith(
      f"The cache {records.split_dir('offline_lm', 'validation', bucket)} is stale")
  assert str(refused.value).endswith(
      f"--data_dir {copy} --out_dir {bucket} --rebuild") and manifest.read_text() == before
  # --rebuild: the bucket holds what the local rebuild holds.
  cache.cache_task("offline_lm", copy, ["validation"], out_dir=bucket, rebuild=True,
                   records_per_shard=PER_SHARD, **QUIET)
  cache.cache_task("offline_lm", copy, ["validation"], rebuild=True,
                   records_per_shard=PER_SHARD, **QUIET)
  assert manifest.read_text() != before
  _assert_same(_batches("offline_lm", bucket), _batches("offline_lm", copy))
  with pytest.raises(data.DataError, match="is a bucket.*--out_dir"):
    cache.cache_task("offline_lm", bucket, ["validation"], **QUIET)


def test_the_cache_command_refuses_a_missing_bucket_in_one_line(built, gcs, capsys):
  missing = f"gs://no-such-bucket-{os.getpid()}/data"
  assert cache.main(["--task", "offline_lm", "--data_dir", built, "--out_dir", missing]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: bucket gs://no-such-bucket-{os.getpid()} of {missing} does "
                        "not exist") and "gcloud storage buckets create" in err


def _flip_lengths(root, name, split):
  path = epath.Path(records.split_dir(name, split, root)) / records.LENGTHS
  raw = bytearray(path.read_bytes())
  raw[-1] ^= 1 << 3
  path.write_bytes(bytes(raw))


def _edit_manifest(root, name, split):
  path = epath.Path(records.manifest_path(name, split, root))
  m = json.loads(path.read_text())
  m["num_examples"] += 1
  path.write_text(json.dumps(m))


def _other_vocab(root, name, split):
  other = epath.Path(data.task_info("offline_lm", root).vocab_path).read_bytes()
  epath.Path(data.task_info(name, root).vocab_path).write_bytes(other)


def _drop_shard(root, name, split):
  (epath.Path(records.split_dir(name, split, root)) / "records-00001.array_record").unlink()


def _drop_manifest(root, name, split):
  epath.Path(records.manifest_path(name, split, root)).unlink()


NAME = "offline_classify"  # its validation split has 2 shards here
DAMAGES = {"lengths_bit": (_flip_lengths, "has sha256"),
           "manifest_edit": (_edit_manifest, "damaged or hand-edited"),
           "other_vocabulary": (_other_vocab, "is stale: vocabulary"),
           "missing_shard": (_drop_shard, "is missing"),
           "no_manifest": (_drop_manifest, "No cache of split")}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_or_stale_cache_in_the_bucket_is_refused_as_on_local_disk(built, gcs, tmp_path,
                                                                             kind):
  damage, what = DAMAGES[kind]
  bucket = _upload(built, gcs, tuple(LENGTHS), splits=["validation"])
  local = str(tmp_path / "data")  # the same cache, copied down: no corpus there either
  for name in LENGTHS:
    cache_copy.copy_cache(name, bucket, local, **QUIET)
  errors = {}
  for root in (bucket, local):
    damage(root, NAME, "validation")
    with pytest.raises(data.DataError) as e:
      _batches(NAME, root)
    errors[root] = str(e.value)
    assert what in errors[root] and f"synthesizer_jax.data.cache --task {NAME}" in errors[root]
  # The same message, but for the place and the command that rebuilds it there.
  assert errors[bucket].split("\n")[0].replace(bucket, "D") == errors[local].split("\n")[
      0].replace(local, "D")
  assert errors[bucket].endswith(f"--data_dir PREPARED_DATA_DIR --out_dir {bucket}"
                                 + ("" if kind == "no_manifest" else " --rebuild"))
  if kind == "no_manifest":  # "auto" does not pass a bucket over for seqio either
    with pytest.raises(data.DataError, match="no cache there"):
      data.check_data_dir(NAME, bucket, "auto")


def test_an_interrupted_upload_leaves_no_cache_training_accepts(built, gcs, monkeypatch):
  bucket = _upload(built, gcs, splits=["validation"])
  want = _batches("offline_lm", built)
  _assert_same(_batches("offline_lm", bucket), want)
  real = cache_copy.copy_file
  staged = os.path.join(tempfile.gettempdir(), "sj-cache-offline_lm-validation-*")
  before = set(glob.glob(staged))

  def fails_at_the_lengths(src, dst):
    if str(dst).endswith(records.LENGTHS):
      raise OSError("connection reset (injected)")
    real(src, dst)

  monkeypatch.setattr(cache_copy, "copy_file", fails_at_the_lengths)
  with pytest.raises(OSError, match="injected"):
    cache.cache_task("offline_lm", built, ["validation"], out_dir=bucket, rebuild=True,
                     records_per_shard=PER_SHARD, **QUIET)
  assert set(glob.glob(staged)) == before  # the staging directory is gone
  # The new shards are there, the old cache is not: nothing a reader takes for complete.
  root = epath.Path(records.split_dir("offline_lm", "validation", bucket))
  assert (root / "records-00000.array_record").exists()
  assert not data.has_cache("offline_lm", bucket, "validation")
  with pytest.raises(data.DataError, match="No cache of split 'validation'.*missing"):
    _batches("offline_lm", bucket)
  with pytest.raises(data.DataError, match="no cache there"):
    data.check_data_dir("offline_lm", bucket, "grain")
  monkeypatch.setattr(cache_copy, "copy_file", real)
  cache.cache_task("offline_lm", built, ["validation"], out_dir=bucket, **QUIET)
  _assert_same(_batches("offline_lm", bucket), want)


def test_a_run_refuses_at_start_what_cannot_read_a_bucket(built, gcs):
  bucket = _upload(built, gcs, splits=["train"])

  def start(pipeline):
    cfg = TrainConfig(task="offline_lm", data_dir=bucket, batch_size=4, targets_length=16,
                      num_train_steps=1, warmup_steps=1, data_pipeline=pipeline)
    return setup(RunConfig.build(MODEL, cfg, ONE))

  for pipeline, why in (("auto", r"split\(s\) \['validation'\] of task 'offline_lm' have no "
                                 "cache there"),
                        ("grain", "have no cache there"),
                        ("seqio", "data_pipeline='seqio' reads prepared corpus files")):
    with pytest.raises(data.DataError, match=f"(?s)is a bucket.*{why}.*--out_dir {bucket}.*"
                                             "gcsfuse.*cache_copy"):
      start(pipeline)
  with pytest.raises(data.DataError, match="is a bucket: seqio reads"):
    data.get_dataset("offline_lm", "train", feature_lengths=LENGTHS["offline_lm"],
                     batch_size=2, data_dir=bucket)
  cache.cache_task("offline_lm", built, ["validation"], out_dir=bucket, **QUIET)
  assert start("auto").info.vocab_path == data.task_info("offline_lm", bucket).vocab_path
  with pytest.raises(data.DataError, match="seqio"):
    start("seqio")


def test_cache_copy_brings_a_bucket_cache_to_local_disk(built, gcs, tmp_path):
  bucket = _upload(built, gcs, tuple(LENGTHS))
  local = tmp_path / "copy"
  assert cache_copy.main(["--task", *LENGTHS, "--src", bucket, "--dst", str(local)]) == 0
  for name in LENGTHS:
    assert cache_copy.cached_splits(name, str(local)) == ["test", "train", "validation"]
    _assert_same(_batches(name, str(local)), _batches(name, built))
  assert sorted(os.listdir(local)) == ["records", "vocab"]
  # Another vocabulary of the family at the destination is not overwritten.
  other = tmp_path / "other"
  vocab_file = other / "vocab" / "offline_lm.model"
  vocab_file.parent.mkdir(parents=True)
  vocab_file.write_bytes(b"not this cache's vocabulary")
  with pytest.raises(data.DataError, match="another vocabulary.*remove"):
    cache_copy.copy_cache("offline_lm", bucket, str(other), **QUIET)
  assert not (other / "records").exists()
  assert cache_copy.main(["--task", "offline_lm", "--src", str(tmp_path / "none"),
                          "--dst", str(other)]) == 2


def test_the_bucket_vocabulary_is_read_as_bytes_without_seqio(built, gcs):
  bucket = _upload(built, gcs, splits=["validation"])
  path = data.task_info("offline_lm", bucket).vocab_path
  remote, local = (vocab.SentencePieceVocabulary(p) for p in (
      path, data.task_info("offline_lm", built).vocab_path))
  ids = remote.encode("the small bird sees a blue window")
  assert ids == local.encode("the small bird sees a blue window") and len(ids) > 2
  assert remote.decode(ids + [1]) == local.decode(ids + [1])
  with pytest.raises(data.DataError, match=f"(?s)No vocabulary.*--out_dir {bucket}"):
    data.get_vocabulary("offline_lm", bucket + "-missing")
