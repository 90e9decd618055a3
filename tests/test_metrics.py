"""Eval metrics against values computed by hand on tiny inputs."""

import math

import numpy as np
import pytest

from synthesizer_jax import metrics


def test_perplexity_and_lm_metrics():
  sums = {"loss": 6.0, "nll": 4.0, "correct": 1.0, "weight": 2.0, "z_loss": 0.0}
  out = metrics.lm_metrics(sums)
  assert out["loss"] == 3.0 and out["nll"] == 2.0
  assert math.isclose(out["perplexity"], math.exp(2.0))
  assert out["token_accuracy"] == 50.0
  with pytest.raises(ValueError, match="zero tokens"):
    metrics.perplexity(1.0, 0.0)


def test_accuracy_f1_binary():
  t = [1, 1, 0, 0, 1]
  p = [1, 0, 0, 1, 1]
  # tp=2, fp=1, fn=1 -> F1 = 4 / (4 + 2) = 2/3
  assert metrics.accuracy(t, p)["accuracy"] == pytest.approx(60.0)
  assert metrics.f1(t, p)["f1"] == pytest.approx(200 / 3)


def test_f1_macro_multiclass():
  t = [0, 1, 2, 2]
  p = [0, 2, 2, 1]
  # class 0: 1.0; class 1: tp 0 -> 0; class 2: tp 1, fp 1, fn 1 -> 0.5
  assert metrics.f1(t, p)["f1"] == pytest.approx(100 * 1.5 / 3)


def test_matthews_binary_by_hand():
  t = [1, 1, 1, 0, 0, 0]
  p = [1, 1, 0, 0, 0, 1]
  tp, tn, fp, fn = 2, 2, 1, 1
  want = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  assert metrics.matthews_corrcoef(t, p)["matthews_corrcoef"] == pytest.approx(100 * want)
  assert metrics.matthews_corrcoef([1, 1], [1, 1])["matthews_corrcoef"] == 0.0


def test_pearson_spearman_by_hand():
  t = [1.0, 2.0, 3.0, 4.0]
  p = [1.0, 3.0, 2.0, 5.0]
  tc, pc = np.array(t) - 2.5, np.array(p) - 2.75
  pearson = (tc @ pc) / math.sqrt((tc @ tc) * (pc @ pc))
  # ranks of p: 1, 3, 2, 4 -> d = 0, 1, 1, 0 -> rho = 1 - 6 * 2 / (4 * 15)
  out = metrics.pearson_spearman(t, p)
  assert out["pearson"] == pytest.approx(100 * pearson)
  assert out["spearman"] == pytest.approx(100 * (1 - 12 / 60))


def test_bleu_identical_and_disjoint():
  refs = ["the cat sat on the mat today", "a dog ran in the park all day"]
  assert metrics.bleu(refs, refs)["bleu"] == pytest.approx(100.0)
  assert metrics.bleu(refs, ["x y z", "u v w"])["bleu"] < 1.0


def test_rouge_by_hand():
  # unigram: 2 of 3 prediction tokens in the 4-token target -> P 2/3, R 1/2, F 4/7.
  out = metrics.rouge(["the cat sat down"], ["the cat ran"])
  assert out["rouge1"] == pytest.approx(100 * 4 / 7)
  # bigrams: "the cat" matches -> P 1/2, R 1/3, F 0.4
  assert out["rouge2"] == pytest.approx(40.0)
  assert out["rougeL"] == pytest.approx(100 * 4 / 7)


def test_glue_and_compute_merge_dicts():
  out = metrics.compute(metrics.METRIC_FNS["glue"], [0, 1, 1], [0, 1, 0])
  assert set(out) == {"accuracy", "f1", "matthews_corrcoef"}
  with pytest.raises(ValueError, match="2 targets but 1 predictions"):
    metrics.accuracy([0, 1], [0])


def test_eval_padding_rows_carry_no_weight():
  from synthesizer_jax import evaluation

  batch = {"targets": np.array([1, 0]), "encoder_input_tokens": np.ones((2, 3), np.int32)}
  padded, n = evaluation.pad_batch(batch, 4)
  assert n == 2 and padded["targets"].tolist() == [1, 0, -1, -1]
  assert padded["encoder_input_tokens"][2:].sum() == 0
  lm = evaluation.pad_batch({"decoder_loss_weights": np.ones((1, 2))}, 2)[0]
  assert lm["decoder_loss_weights"][1].sum() == 0


def test_decode_ids_stops_at_eos():
  import fake_data

  from synthesizer_jax import evaluation

  vocab = fake_data.Vocab()
  assert evaluation.decode_ids(vocab, vocab.encode("abc") + [1] + vocab.encode("zz")) == "abc"
  assert evaluation.decode_ids(vocab, [0] + vocab.encode("ab") + [0, 0]) == "ab"
