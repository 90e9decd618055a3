"""T5's recipe on C4 (vocabulary family c4_t5), on generated documents served as TFDS
c4/en through `tfds.testing.mock_data`: c4_span_corruption's examples are inputs / targets
with sentinels at T5's noise density and span length that give the documents back (seqio,
and the cache Grain reads), one vocabulary trained on C4's text serves the GLUE / SuperGLUE
text-to-text tasks of the family, and a checkpoint of it starts a GLUE run of the family
whole while a run of another vocabulary is refused."""

import os

import numpy as np
import pytest
from fixtures.data import vocab_spy
from fixtures.data.fake_tfds import documents, mock_c4
from test_span_corruption_task import reconstruct, until_eos

from synthesizer_jax import data, loop
from synthesizer_jax import run as run_lib
from synthesizer_jax.config import MeshConfig, RunConfig, TrainConfig
from synthesizer_jax.data import registry, span_corruption, tasks
from synthesizer_jax.finetune import flat_paths

pytest.importorskip("seqio")
pytest.importorskip("tensorflow_datasets")

TASK = "c4_span_corruption"
INPUTS = 32
LENGTHS = {"inputs": INPUTS, "targets": span_corruption.lengths_for(INPUTS)[1]}
DOCS = {"train": documents(300, 0), "validation": documents(40, 1)}
GLUE_T5 = tuple(n for n in registry.TASKS if "glue" in n and n.endswith("_t5"))
MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(data dir, {vocabulary file: the lines it was trained on})."""
  root = str(tmp_path_factory.mktemp("c4"))
  for name in (TASK, "glue_cola_t5", "glue_cola_t2t"):  # mock_data reads no files, but
    os.makedirs(tasks.tfds_version_dir(name, root), exist_ok=True)  # the tasks check the dir
  with pytest.MonkeyPatch.context() as mp, mock_c4(DOCS):
    seen = vocab_spy.spy(mp)
    data.prepare(root, [TASK], progress=False)
    data.cache_task(TASK, root, splits=["validation"], log=lambda *a: None)
  return root, seen


@pytest.fixture
def c4():
  with mock_c4(DOCS):
    yield


def seqio_examples(root, split):
  ds = tasks.seqio_task(TASK, root).get_dataset(
      sequence_length=LENGTHS, split=split, shuffle=False, num_epochs=1, try_in_mem_cache=False)
  return [(until_eos(ex["inputs"]), until_eos(ex["targets"])) for ex in ds.as_numpy_iterator()]


def cached_examples(root, split):
  batches = data.get_cached_dataset(TASK, split, feature_lengths=LENGTHS, batch_size=8,
                                    pack=False, shuffle=False, repeat=False, data_dir=root)
  return [(until_eos(i), until_eos(t)) for b in batches
          for i, t in zip(b["encoder_input_tokens"], b["decoder_target_tokens"], strict=True)]


def t5_spans(n):
  """(noise pieces, noise spans) of an n-piece document at T5's defaults: 15% noise in spans
  of mean length 3 (each span at least one piece, at least one clean piece between)."""
  noise = min(max(round(n * 0.15), 1), n - 1)
  return noise, min(max(round(noise / 3), 1), noise, n - noise)


@pytest.mark.parametrize("path", ["seqio", "cache"])
def test_examples_are_sentinel_pairs_that_give_the_documents_back(built, c4, path):
  root, _ = built
  vocab = data.get_vocabulary(TASK, root)
  first = vocab.vocab_size - 100  # the family's 100 extra ids are the sentinels
  raw = span_corruption.lengths_for(INPUTS)[0]
  ids = [list(vocab.encode(doc)) for doc in DOCS["validation"]]
  want = [[d[i:i + raw] for i in range(0, len(d), raw) if len(d[i:i + raw]) >= 2] for d in ids]
  examples = (seqio_examples if path == "seqio" else cached_examples)(root, "validation")
  got = [reconstruct(i, t, first) for i, t in examples]
  assert got == [p for pieces in want for p in pieces]
  for (inputs, targets), piece in zip(examples, got, strict=True):
    sentinels = [t for t in targets if t >= first]
    # <extra_id_0> = the last id, then down; the inputs hold the same ones, in order.
    assert sentinels == list(range(vocab.vocab_size - 1, vocab.vocab_size - 1 - len(sentinels),
                                   -1)) == [t for t in inputs if t >= first]
    assert (len(targets) - len(sentinels), len(sentinels)) == t5_spans(len(piece))
  assert max(len(i) + 1 for i, _ in examples) == INPUTS  # a full piece fills the inputs (+ EOS)
  at, whole = 0, 0  # the text: each document back from its examples
  for doc, pieces, d in zip(DOCS["validation"], want, ids, strict=True):
    if sum(map(len, pieces)) == len(d) and 2 not in d:  # every piece kept, no UNK
      assert vocab.decode([t for p in got[at:at + len(pieces)] for t in p]) == doc
      whole += 1
    at += len(pieces)
  assert whole > len(DOCS["validation"]) // 2


def test_one_vocabulary_trained_on_c4_serves_every_task_of_the_family(built):
  root, seen = built
  names = (TASK, "c4_lm_t5", *GLUE_T5)
  infos = [data.task_info(n, root) for n in names]
  assert {i.vocab_path for i in infos} == {registry.family_vocab_path("c4_t5", root)}
  assert {(i.vocab_family, i.extra_ids) for i in infos} == {("c4_t5", 100)}
  assert list(seen) == ["c4_t5.model"]  # trained once, for every member
  lines = set(seen["c4_t5.model"])
  assert set(DOCS["train"]) <= lines  # C4's training text (all of it fits the size cap here)
  assert not set(DOCS["validation"]) & lines
  prompts = {"glue cola", "sentence:", "super_glue record", "span1_text:", "not_entailment"}
  assert prompts <= lines  # what the GLUE tasks add: prefixes, field names, label words
  vocab = data.get_vocabulary("glue_cola_t5", root)
  assert vocab.vocab_size == data.get_vocabulary(TASK, root).vocab_size
  assert 2 not in vocab.encode(" ".join(prompts))  # no UNK


def test_glue_t5_tasks_are_text_to_text_in_the_c4_vocabulary(built):
  tfds = pytest.importorskip("tensorflow_datasets")
  root, _ = built
  vocab = data.get_vocabulary("glue_cola_t5", root)
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    batch = next(data.get_dataset("glue_cola_t5", "validation", data_dir=root,
                                  feature_lengths={"inputs": 48, "targets": 8}, batch_size=6,
                                  pack=False, shuffle=False, repeat=False))
  for inputs, targets in zip(batch["encoder_input_tokens"], batch["decoder_target_tokens"],
                             strict=True):
    assert vocab.decode(inputs).startswith("glue cola sentence: ")
    assert vocab.decode(targets) in ("unacceptable", "acceptable")


def _run(root, task, **train):
  cfg = TrainConfig(task=task, data_dir=root, data_pipeline="seqio", batch_size=4,
                    inputs_length=INPUTS, targets_length=8, pack=False, num_train_steps=2,
                    warmup_steps=1, log_every=1, eval_batches=1, predict_batches=0,
                    checkpoint_every=2, async_checkpoints=False, **train)
  return RunConfig.build(MODEL, cfg, MeshConfig(num_devices=1))


def test_a_c4_checkpoint_starts_glue_t5_whole_and_another_vocabulary_is_refused(
    built, c4, tmp_path):
  root, _ = built
  work = str(tmp_path / "pretrain")
  loop.train_and_evaluate(_run(root, TASK), work, progress=False)
  logs = []
  run = run_lib.setup(_run(root, "glue_cola_t5", init_from=work))
  state = run_lib.initial_state(run, log=logs.append)
  import synthesizer_jax as sj

  _, source, _ = sj.load_checkpoint(work)
  got, want = flat_paths(state.params), flat_paths(source["params"])
  assert set(got) == set(want) and "at init" not in logs[-1], logs
  for key, value in got.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(want[key]), err_msg=key)
  # The GLUE family's own vocabulary (configs/glue.py's tasks) is another one: refused.
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    data.prepare(root, ["glue_cola_t2t"], progress=False)
  ours, theirs = (registry.vocab_path(n, root) for n in ("glue_cola_t2t", TASK))
  with pytest.raises(ValueError, match=(
      rf"(?s)another vocabulary.*the c4_t5 vocabulary {theirs} had sha256 \w+\.\.\. when "
      rf"saved, the glue vocabulary {ours} has \w+\.\.\. now.*embed/")):
    run_lib.initial_state(run_lib.setup(_run(root, "glue_cola_t2t", init_from=work)))
