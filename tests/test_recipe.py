"""T5's recipe on fake corpora. One vocabulary (family offline_t5): it is trained on the
pre-training text and every fine-tuning task's text, every task of the recipe uses it (with
its 100 sentinel ids), the fine-tuning tasks are text-to-text with T5's prefixes, a
span-corruption run's whole model (embedding included) starts a fine-tuning run, and a
source of another vocabulary is refused with both vocabularies named. The recipe end to
end: pre-train on span corruption, then fine-tune on the mixture offline_t5_finetune from
step 0 with a fresh optimizer, every member evaluated on its own (cached and seqio paths;
from a bucket as from local disk)."""

import json
import os

import jax
import numpy as np
import pytest
from fixtures.data import fake_debian, vocab_spy

import synthesizer_jax as sj
from synthesizer_jax import data, evaluation, logging_utils, loop
from synthesizer_jax import run as run_lib
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import MeshConfig, RunConfig, TrainConfig
from synthesizer_jax.data import build, cache, grain_pipeline, mixtures, registry, tasks
from synthesizer_jax.finetune import flat_paths

pytest.importorskip("seqio")
pytest.importorskip("grain")

PRETRAIN = "offline_prose_span_corruption"
FINETUNE = ("offline_classify_t5", "offline_translate_en_de_t5", "offline_summarize_t5")
MIX = "offline_t5_finetune"
#: Each member's own metric, from its decoded predictions.
OWN_METRIC = {"offline_classify_t5": "accuracy", "offline_translate_en_de_t5": "bleu",
              "offline_summarize_t5": "rouge1"}
MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(data dir, {vocabulary file: the lines it was trained on})."""
  root = str(tmp_path_factory.mktemp("recipe"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    seen = vocab_spy.spy(mp)
    data.prepare(path, [PRETRAIN, *FINETUNE], progress=False, cache=True)
  return path, seen


def _train_texts(name, data_dir):
  return list(build._split_texts(name, data_dir))


def test_one_vocabulary_trained_on_every_task_of_the_recipe(built):
  data_dir, seen = built
  infos = [data.task_info(n, data_dir) for n in (PRETRAIN, *FINETUNE)]
  assert {i.vocab_path for i in infos} == {registry.vocab_path(PRETRAIN, data_dir)}
  assert {i.vocab_family for i in infos} == {"offline_t5"} and {i.extra_ids for i in infos} == {100}
  sizes = {data.get_vocabulary(n, data_dir).vocab_size for n in (PRETRAIN, *FINETUNE)}
  assert len(sizes) == 1
  lines = set(seen["offline_t5.model"])
  assert {"review:", "summarize:", "great", "other"} <= lines  # what the tasks add
  for corpus in registry.FAMILIES["offline_t5"].texts:  # both sides of a translation pair
    texts = _train_texts(corpus, data_dir)
    assert texts and lines >= set(texts[:20]), corpus


def test_fine_tuning_tasks_are_text_to_text_with_t5_prefixes(built):
  data_dir, _ = built
  vocab = data.get_vocabulary("offline_classify_t5", data_dir)
  with open(tasks.split_file("offline_classify", "validation", data_dir)) as f:
    labels = [("other", "great")[int(line.split("\t")[0])] for line in f]
  batches = data.get_cached_dataset("offline_classify_t5", "validation",
                                    feature_lengths={"inputs": 64, "targets": 8}, batch_size=8,
                                    pack=False, shuffle=False, repeat=False, data_dir=data_dir)
  got = [(vocab.decode(i), vocab.decode(t)) for b in batches
         for i, t in zip(b["encoder_input_tokens"], b["decoder_target_tokens"], strict=True)]
  assert [t for _, t in got] == labels
  assert all(i.startswith("review: ") for i, _ in got), got[:2]
  for name, prefix in (("offline_translate_en_de_t5", "translate English to German: "),
                       ("offline_summarize_t5", "summarize: ")):
    ex = next(tasks.seqio_task(name, data_dir).get_dataset(
        sequence_length=None, split="validation", shuffle=False).as_numpy_iterator())
    assert vocab.decode(ex["inputs"]).startswith(prefix), name


def _run(data_dir, task, model=(), **train):
  fields = dict(batch_size=4, inputs_length=16, targets_length=8, num_train_steps=2,
                warmup_steps=1, log_every=1, eval_batches=1, predict_batches=0,
                checkpoint_every=2, async_checkpoints=False)
  cfg = TrainConfig(task=task, data_dir=data_dir, **{**fields, **train})
  return RunConfig.build({**MODEL, **dict(model)}, cfg, MeshConfig(num_devices=1))


@pytest.fixture(scope="module")
def pretrained(built, tmp_path_factory):
  work = str(tmp_path_factory.mktemp("pretrain") / "run")
  loop.train_and_evaluate(_run(built[0], PRETRAIN), work, progress=False)
  return work


def test_a_span_corruption_run_starts_a_fine_tuning_run_whole(built, pretrained):
  data_dir, _ = built
  logs = []
  run = run_lib.setup(_run(data_dir, "offline_classify_t5", init_from=pretrained))
  state = run_lib.initial_state(run, log=logs.append)
  import synthesizer_jax as sj

  _, source, _ = sj.load_checkpoint(pretrained)
  got, want = flat_paths(state.params), flat_paths(source["params"])
  assert set(got) == set(want)
  for key, value in got.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(want[key]), err_msg=key)
  assert "at init" not in logs[-1], logs
  saved = run.run_config()
  assert saved["vocab_family"] == "offline_t5" and saved["vocab_extra_ids"] == 100


def test_a_source_of_another_vocabulary_is_refused_naming_both(built, pretrained):
  data_dir, _ = built
  run = run_lib.setup(_run(data_dir, "offline_translate_en_de", init_from=pretrained))
  ours, theirs = (registry.vocab_path(n, data_dir)
                  for n in ("offline_translate_en_de", PRETRAIN))
  with pytest.raises(ValueError, match=(
      rf"(?s)another vocabulary.*the offline_t5 vocabulary {theirs} had sha256 \w+\.\.\. when "
      rf"saved, the offline_translate_en_de vocabulary {ours} has \w+\.\.\. now.*embed/")):
    run_lib.initial_state(run)


def test_mixture_rates_are_t5s_capped_example_counts_and_seqio_draws_by_them(built):
  data_dir, _ = built
  counts = {}
  for t in FINETUNE:
    with open(tasks.split_file(t, "train", data_dir)) as f:
      counts[t] = len(f.read().splitlines())
  cap = sorted(counts.values())[1]  # caps the largest member only
  want = {t: float(min(n, cap)) for t, n in counts.items()}
  assert mixtures.rates("offline_t5_finetune", data_dir, cap=cap) == want
  rates = mixtures.rates("offline_t5_finetune", data_dir)  # what the seqio Mixture draws by
  assert rates == {t: float(min(n, mixtures.MIXTURES["offline_t5_finetune"].cap))
                   for t, n in counts.items()}
  mix = mixtures.seqio_mixture("offline_t5_finetune", data_dir)
  assert mixtures.seqio_mixture("offline_t5_finetune", data_dir) is mix
  ds = mix.get_dataset(sequence_length={"inputs": 32, "targets": 8}, split="train",
                       shuffle=True, seed=0, num_epochs=None)
  vocab = data.get_vocabulary(FINETUNE[0], data_dir)
  prefixes = {"review:": FINETUNE[0], "translate": FINETUNE[1], "summarize:": FINETUNE[2]}
  drawn = dict.fromkeys(FINETUNE, 0)
  for ex in ds.take(600).as_numpy_iterator():
    drawn[prefixes[vocab.decode(ex["inputs"]).split(" ")[0]]] += 1
  total = sum(rates.values())
  for t in FINETUNE:  # within 5 binomial standard deviations of its rate
    p = rates[t] / total
    assert abs(drawn[t] / 600 - p) < 5 * (p * (1 - p) / 600) ** 0.5, (drawn, rates)
  with pytest.raises(data.DataError, match="Known mixtures: .*offline_t5_finetune"):
    mixtures.rates("nope", data_dir)


def _first_batch_loss(run, state):
  """The mean loss of `state` on the run's first training batch (what step 1 logs)."""
  batches = run.dataset("train", train=True)
  try:
    batch = next(batches)
  finally:
    getattr(batches, "close", lambda: None)()
  sums = jax.device_get(run.eval_step(state, shd.global_batch(batch, run.mesh)))
  return float(sums["loss"]) / float(sums["weight"]), batches


def _member_rows(rows, step):
  (row,) = [r for r in rows if r["split"] == "eval" and r["step"] == step]
  return row


def test_pretrain_then_fine_tune_the_whole_model_on_the_mixture(built, pretrained, tmp_path):
  """The recipe as one flow: the span-corruption run's EncoderDecoder starts a mixture run
  at step 0 with a fresh optimizer, trains from the cache (Grain), and every evaluation
  scores each member on its own split by its own metric."""
  data_dir, _ = built
  config = _run(data_dir, MIX, model=dict(dropout_rate=0.0), init_from=pretrained,
                num_train_steps=3, eval_every=2, checkpoint_every=3, predict_batches=1)
  logs = []
  run = run_lib.setup(config)
  assert run.info.members == FINETUNE and [m.info.metric for m in run.members] == [
      registry.spec(t).metric for t in FINETUNE]
  state = run_lib.initial_state(run, log=logs.append)
  _, source, _ = sj.load_checkpoint(pretrained)
  assert int(state.step) == 0
  got, want = flat_paths(state.params), flat_paths(source["params"])
  assert set(got) == set(want) and "at init" not in logs[-1], logs
  for key, value in got.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(want[key]), err_msg=key)
  fresh = run.tx.init(state.params)  # no moment, count 0: nothing of the source's optimizer
  for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(fresh), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  first_loss, batches = _first_batch_loss(run, state)
  assert isinstance(batches, grain_pipeline.GrainBatches)  # caches exist: the cached path

  work = str(tmp_path / "finetune")
  result = loop.train_and_evaluate(config, work, progress=False)
  rows = logging_utils.read_metrics(work)
  train = [r for r in rows if r["split"] == "train"]
  assert [r["step"] for r in train] == [1, 2, 3]  # its own count, from 0
  # Step 1's loss is the pre-trained weights' loss on the first batch: the loop starts there.
  np.testing.assert_allclose(train[0]["loss"], first_loss, rtol=1e-5)
  for step in (2, 3):  # an evaluation during training, and the final one
    row = _member_rows(rows, step)
    for t in FINETUNE:
      assert {f"{t}/loss", f"{t}/perplexity", f"{t}/{OWN_METRIC[t]}"} <= set(row), (step, t)
    np.testing.assert_allclose(row["loss"], np.mean([row[f"{t}/loss"] for t in FINETUNE]))
  assert result["step"] == 3
  saved = json.loads((tmp_path / "finetune" / evaluation.RESULTS_FILE).read_text())
  assert {e["task"] for e in saved["examples"]} == set(FINETUNE)
  # Each member's numbers are that task's own evaluation of the same checkpoint.
  for t in FINETUNE:
    alone = evaluation.evaluate_checkpoint(work, overrides={"task": t},
                                           mesh_cfg=MeshConfig(num_devices=1))["metrics"]
    assert alone, t
    for name, value in alone.items():
      assert result["metrics"][f"{t}/{name}"] == pytest.approx(value, rel=1e-5), (t, name)


def test_the_mixture_trains_through_seqio_too(built, tmp_path):
  data_dir, _ = built
  config = _run(data_dir, MIX, data_pipeline="seqio", num_train_steps=1, checkpoint_every=1)
  result = loop.train_and_evaluate(config, str(tmp_path / "seqio"), progress=False)
  for t in FINETUNE:
    assert {f"{t}/loss", f"{t}/perplexity", f"{t}/token_accuracy"} <= set(result["metrics"])


def test_a_mixture_is_its_members_shape_and_vocabulary_and_prepares_them(built):
  data_dir, _ = built
  info = data.task_info(MIX, data_dir)
  member = data.task_info(FINETUNE[1], data_dir)
  assert info.members == FINETUNE and info.metric == "mixture"
  assert (info.shape, info.feature_keys, info.vocab_path, info.extra_ids) == (
      member.shape, member.feature_keys, member.vocab_path, member.extra_ids)
  assert data.get_vocabulary(MIX, data_dir).vocab_size == data.get_vocabulary(
      PRETRAIN, data_dir).vocab_size
  assert list(data.prepare(data_dir, [MIX], progress=False)) == list(FINETUNE)


def test_seqio_batches_of_a_mixture_hold_every_member_and_resume_at_batch_k(built):
  data_dir, _ = built
  vocab = data.get_vocabulary(MIX, data_dir)
  args = dict(feature_lengths={"inputs": 32, "targets": 8}, batch_size=16, pack=False,
              seed=0, data_dir=data_dir)
  full = data.get_dataset(MIX, "train", **args)
  full = [next(full) for _ in range(4)]
  prefixes = {vocab.decode(row[row > 1].tolist()).split(" ")[0] for b in full
              for row in b["encoder_input_tokens"]}
  assert prefixes == {"review:", "translate", "summarize:"}
  again = next(data.get_dataset(MIX, "train", start_batch=3, **args))
  for key, value in full[3].items():
    np.testing.assert_array_equal(again[key], value, err_msg=key)
  with pytest.raises(data.DataError, match="evaluate each member"):
    data.get_dataset(MIX, "validation", repeat=False, **args)
  with pytest.raises(data.DataError, match="shuffle_buffer_size=64 cannot be set for mixture"):
    data.get_dataset(MIX, "train", shuffle_buffer_size=64, **args)


def test_a_mixture_of_shapes_or_of_classifiers_is_refused(monkeypatch):
  monkeypatch.setitem(mixtures.MIXTURES, "bad", mixtures.Mixture(
      ("offline_classify_t5", "offline_lm_prose_t5"), cap=10))
  with pytest.raises(data.DataError, match=r"mixes the model shapes \['encdec', 'lm'\].*text-to-"):
    data.task_info("bad")
  monkeypatch.setitem(mixtures.MIXTURES, "bad", mixtures.Mixture(
      ("offline_classify", "offline_classify"), cap=10))
  with pytest.raises(data.DataError, match=r"classifier members \['offline_classify'"):
    mixtures.mixture("bad")


def test_a_mixture_run_from_a_bucket_equals_one_from_local_disk(built, gcs, tmp_path):
  """Caches of every member uploaded (`cache --task <mixture> --out_dir gs://...`), the
  workdir in the bucket too: the same losses and per-member metrics as on local disk."""
  data_dir, _ = built
  bucket = gcs.new_path("data")
  assert cache.main(["--task", MIX, "--data_dir", data_dir, "--out_dir", bucket,
                     "--splits", "train", "validation"]) == 0
  out = {}
  for where, root, work in (("bucket", bucket, gcs.new_path("run")),
                            ("local", data_dir, str(tmp_path / "run"))):
    # (OCDBT off: the emulator's limit, gcs_emulator.py)
    config = _run(root, MIX, num_train_steps=2, checkpoint_ocdbt=False)
    out[where] = loop.train_and_evaluate(config, work, progress=False)
    out[where]["losses"] = [r.get("loss") for r in logging_utils.read_metrics(work)]
  assert out["bucket"]["losses"] == out["local"]["losses"]
  assert out["bucket"]["metrics"] == out["local"]["metrics"]
  assert {f"{t}/loss" for t in FINETUNE} <= set(out["bucket"]["metrics"])
