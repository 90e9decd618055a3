"""The C4 recipe's fine-tuning mixtures glue_t5 and super_glue_t5: T5's capped
examples-proportional rates, each member's training examples counted from its TFDS dataset
info (written here with chosen sizes, as `tfds build` writes it), and seqio drawing the
members at those rates under `tfds.testing.mock_data`."""

import os
import shutil

import numpy as np
import pytest
from fixtures.data.fake_tfds import documents, mock_c4, write_split_sizes

from synthesizer_jax import data
from synthesizer_jax.data import mixtures, registry, tasks

pytest.importorskip("seqio")
tfds = pytest.importorskip("tensorflow_datasets")

MIXES = ("glue_t5", "super_glue_t5")
MEMBERS = tuple(t for m in MIXES for t in mixtures.MIXTURES[m].tasks)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(data dir with the c4_t5 vocabulary, {member: training examples in its dataset info})."""
  root = str(tmp_path_factory.mktemp("mix"))
  os.makedirs(tasks.tfds_version_dir("c4_span_corruption", root), exist_ok=True)
  with mock_c4({"train": documents(100, 4)}):
    data.prepare(root, ["c4_span_corruption"], progress=False)  # the family's vocabulary
  rng = np.random.default_rng(0)
  counts = {t: int(n) for t, n in zip(MEMBERS, rng.integers(50, 5000, len(MEMBERS)),
                                      strict=True)}
  for t in MEMBERS:
    s = registry.spec(t)
    sizes = {tfds_split: counts[t] if ours == "train" else 7 for ours, tfds_split in s.split_map}
    write_split_sizes(registry.tfds_dir(root), s.tfds_name, sizes)
  return root, counts


def test_members_are_t5s_text_to_text_tasks_of_one_vocabulary():
  for name in MIXES:
    m = mixtures.mixture(name)  # refuses a mixture of several vocabularies
    assert m.cap == 2**19  # T5's K (Raffel et al. 2020, section 3.5.3)
    for t in m.tasks:
      info = data.task_info(t)
      assert (info.shape, info.vocab_family, info.extra_ids) == ("encdec", "c4_t5", 100), t
      assert "train" in dict(registry.spec(t).split_map), t
  # As T5's glue_v002_proportional: WNLI left out, the test-only diagnostics too.
  assert "glue_wnli_t5" not in MEMBERS and "super_glue_axb_t5" not in MEMBERS
  assert {"glue_mnli_t5", "super_glue_record_t5", "super_glue_wsc_t5"} <= set(MEMBERS)


def test_rates_are_capped_training_counts_from_the_tfds_dataset_info(built):
  root, counts = built
  for name in MIXES:
    members = mixtures.MIXTURES[name].tasks
    assert mixtures.rates(name, root) == {t: float(min(counts[t], 2**19)) for t in members}
    cap = sorted(counts[t] for t in members)[3]  # caps the larger half
    capped = mixtures.rates(name, root, cap=cap)
    assert capped == {t: float(min(counts[t], cap)) for t in members}
    assert sum(v == cap for v in capped.values()) >= 4
  assert mixtures.num_examples("glue_mnli_t5", root, "validation") == 7  # validation_matched


def test_a_member_tfds_never_built_is_named_with_the_build_command(built, tmp_path):
  root, _ = built
  copy = str(tmp_path / "data")
  shutil.copytree(root, copy)
  shutil.rmtree(os.path.join(registry.tfds_dir(copy), "glue", "qqp"))
  with pytest.raises(data.DataError, match=(
      r"(?s)Cannot count the 'train' examples of TFDS glue/qqp:2.0.0 \(task 'glue_qqp_t5'\).*"
      r"tfds build glue/qqp --data_dir DIR")):
    mixtures.rates("glue_t5", copy)


def test_seqio_draws_the_members_at_their_rates(built):
  root, _ = built
  tfds_dir = registry.tfds_dir(root)
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_FILES,
                              data_dir=tfds_dir):
    rates = mixtures.rates("glue_t5", root)
    mix = mixtures.seqio_mixture("glue_t5", root)
    ds = mix.get_dataset(sequence_length={"inputs": 32, "targets": 8}, split="train",
                         shuffle=True, seed=0, num_epochs=None)
    vocab = data.get_vocabulary("glue_cola_t5", root)
    drawn = dict.fromkeys(rates, 0)
    n = 800
    for ex in ds.take(n).as_numpy_iterator():
      words = vocab.decode(ex["inputs"]).split(" ")
      drawn[f"{words[0]}_{words[1]}_t5"] += 1  # "glue cola sentence: ..." -> glue_cola_t5
  total = sum(rates.values())
  for t, count in drawn.items():  # within 5 binomial standard deviations of its rate
    p = rates[t] / total
    assert abs(count / n - p) < 5 * (p * (1 - p) / n) ** 0.5, (drawn, rates)
