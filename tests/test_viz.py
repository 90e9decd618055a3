"""Attention-map extraction and plots (files are real PNGs of the expected layout)."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest
from helpers import small_config

import synthesizer_jax as sj
from synthesizer_jax import viz

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path):
  with open(path, "rb") as f:
    return f.read(8) == PNG


def test_attention_maps_of_every_layer(tmp_path):
  cfg = small_config(self_attention="random+dot")
  model = sj.EncoderDecoder(cfg)
  src, tgt = np.ones((2, 7), np.int32), np.ones((2, 5), np.int32)
  variables = model.init(jax.random.key(0), src, tgt)
  maps = viz.attention_maps(model, variables, src, tgt)
  assert set(maps) == {f"{stack}/layers_{i}/{att}" for i in range(2) for stack, att in
                       [("encoder", "self_attention"), ("decoder", "self_attention"),
                        ("decoder", "cross_attention")]}
  assert maps["decoder/layers_1/cross_attention"].shape == (2, 2, 5, 7)
  assert _png(viz.plot_attention(maps, str(tmp_path / "maps.png"), title="t"))
  with pytest.raises(ValueError, match="no attention maps"):
    viz.plot_attention({}, str(tmp_path / "x.png"))


def test_random_matrices_are_the_softmaxed_tables(tmp_path):
  cfg = small_config(self_attention="factorized_random+random")
  model = sj.DecoderLM(cfg.replace(num_layers=1))
  variables = model.init(jax.random.key(0), np.ones((1, 4), np.int32))
  mats = viz.random_matrices(variables)
  base = "decoder/layers_0/self_attention/mixture"
  assert set(mats) == {f"{base}/random", f"{base}/factorized_random"}
  p = nn.meta.unbox(variables)["params"]["decoder"]["layers_0"]["self_attention"]
  r = np.asarray(p["mixture"]["random"]["R"])
  np.testing.assert_allclose(mats[f"{base}/random"], np.asarray(jax.nn.softmax(r, -1)), rtol=1e-6)
  fixed = sj.DecoderLM(cfg.replace(num_layers=1, self_attention="fixed_random"))
  fv = fixed.init(jax.random.key(0), np.ones((1, 4), np.int32))
  (name,) = viz.random_matrices(fv, softmax=False)
  assert name.endswith("fixed_random")
  assert _png(viz.plot_kinds(mats, str(tmp_path / "kinds.png")))


def test_training_curves_from_jsonl(tmp_path):
  log = tmp_path / "metrics.jsonl"
  log.write_text("\n".join(json.dumps({"step": s, "train/loss": 5.0 / s, "note": "x"})
                           for s in range(1, 6)) + "\n")
  records = viz.read_jsonl(str(log))
  assert len(records) == 5
  assert _png(viz.plot_curves(records, str(tmp_path / "curves.png")))
  with pytest.raises(FileNotFoundError, match="no metrics log"):
    viz.read_jsonl(str(tmp_path / "missing.jsonl"))
