"""The issue-19 baseline harness: reference model switches, recall spec, a 2-step run."""

import dataclasses

import flax.linen as nn
import jax
import numpy as np

from experiments import baseline, baseline_tasks
from experiments.baseline_ref import OURS, params_from_ours, sincos_table
from synthesizer_jax.layers import sinusoidal_positions

#: The reference switched to every choice of the library as it is now (the fixed fan-in and
#: LayerNorm since 2026-12-02); `ref_as_ours` (OURS) is the library before that fix.
NOW = "ref_as_ours+lecun_qkv_init+layernorm"


def _init(variant):
  model, _, _ = baseline.build(variant, "recall")
  inp = baseline_tasks.held_out("recall")[0][:4]
  return model, nn.unbox(model.init(jax.random.key(0), inp)["params"]), inp


def test_reference_with_our_switches_computes_our_model():
  ours, ours_params, inp_bl = _init("ours")
  ref, ref_params, _ = _init(NOW)
  converted = params_from_ours(ours_params)
  assert jax.tree.structure(converted) == jax.tree.structure(ref_params)
  np.testing.assert_allclose(ref.apply({"params": converted}, inp_bl),
                             ours.apply({"params": ours_params}, inp_bl), atol=1e-5)


def test_reference_with_our_switches_draws_our_init():
  # Same function is not enough: the stddev of every initial kernel must match ours too
  # (this is what caught our q/k/v fan-in, see RefSwitches.small_qkv_init).
  _, ours_params, _ = _init("ours")
  _, ref_params, _ = _init(NOW)
  converted = params_from_ours(ours_params)
  for path, ours_leaf in jax.tree_util.tree_leaves_with_path(converted):
    ref_leaf = ref_params
    for key in path:
      ref_leaf = ref_leaf[key.key]
    np.testing.assert_allclose(np.std(ref_leaf), np.std(ours_leaf), rtol=0.1, err_msg=str(path))


def test_switches_change_parameters_as_documented():
  count = {v: sum(x.size for x in jax.tree.leaves(_init(v)[1]))
           for v in ("ours", "ref", NOW, "ref+rms", "ref+no_mlp_bias")}
  assert count[NOW] == count["ours"]
  # LayerNorm biases: 5 norms x 64; MLP biases: 2 layers x (128 + 64).
  assert count["ref"] - count["ref+rms"] == 5 * 64
  assert count["ref"] - count["ref+no_mlp_bias"] == 2 * (128 + 64)
  assert baseline.VARIANTS["ref_as_ours"] == OURS
  assert dataclasses.replace(OURS, norm="layer") == baseline.VARIANTS["ref_as_ours+layernorm"]


def test_position_tables_agree():
  np.testing.assert_allclose(sincos_table(24, 64),
                             np.asarray(sinusoidal_positions(np.arange(24)[None], 64))[0],
                             atol=1e-5)


def test_recall_rows_follow_the_spec():
  targets, weights = baseline_tasks.recall_rows(np.random.default_rng(0), 256)
  assert targets.shape == (256, 16) and targets.max() < 40 and targets.min() >= 4
  keys, values = targets[:, 0:8:2], targets[:, 1:8:2]
  queries, answers = targets[:, 8::2], targets[:, 9::2]
  assert ((keys >= 4) & (keys < 20)).all() and ((values >= 20) & (values < 36)).all()
  for k, v, q, a in zip(keys, values, queries, answers, strict=True):
    assert len(set(k)) == 4 and sorted(q) == sorted(k)  # the keys again, permuted
    assert all(dict(zip(k, v, strict=True))[qi] == ai for qi, ai in zip(q, a, strict=True))
  assert (weights[:, 9::2] == 1).all() and weights.sum() == 256 * 4
  inp, tgt, _ = baseline_tasks.rows("recall", np.random.default_rng(0), 2)
  assert (inp[:, 0] == 0).all() and (inp[:, 1:] == tgt[:, :-1]).all()


def test_two_steps_end_to_end(tmp_path):
  assert baseline.main(["--task", "recall", "--models", "ours,ref", "--seeds", "1", "--steps",
                        "2", "--every", "1", "--batch", "4", "--out", str(tmp_path)]) == 0
  lines = (tmp_path / "runs.jsonl").read_text().splitlines()
  assert len(lines) == 2
  assert "| ours | 2 |" in (tmp_path / "tables.md").read_text()


def test_stats_midranks_and_mann_whitney():
  from experiments import baseline_stats
  np.testing.assert_allclose(baseline_stats.midranks(np.array([300., np.inf, 300., 100.])),
                             [2.5, 4, 2.5, 1])
  a, b = np.array([100., 200., 300.]), np.array([400., 500., np.inf])
  u, p_faster, p = baseline_stats.mann_whitney(a, b, perms=2000)
  assert u == 0 and p_faster == 1.0 and 0.05 < p < 0.15  # exact: 2 / C(6, 3) = 0.1
  assert baseline.VARIANTS["ref_as_ours+lecun_qkv_init+layernorm+mlp_bias"] == \
      dataclasses.replace(baseline.VARIANTS[NOW], mlp_bias=True)
