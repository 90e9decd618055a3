"""Attention-map extraction and plots (files are real PNGs of the expected layout)."""

import json

import fake_data
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


def _panels(fig):
  """The axes that show a map (the colour bar's axes hold no image)."""
  return [ax for ax in fig.axes if ax.images]


def _texts(labels):
  return [t.get_text() for t in labels]


def test_plot_attention_labels_pieces_hatches_masks_and_shows_chosen_heads(tmp_path):
  plt = pytest.importorskip("matplotlib.pyplot")
  model = sj.DecoderLM(small_config(self_attention="random+dot"))
  tokens = np.array([[5, 9, 4, 7, 3, 8, 0, 0], [4, 4, 4, 4, 4, 4, 4, 4]], np.int32)
  variables = model.init(jax.random.key(0), tokens)
  maps = viz.attention_maps(model, variables, tokens)
  vocab = fake_data.Vocab()
  layer = "decoder/layers_1/self_attention"
  fig = viz.attention_figure(maps, layers=[layer], heads=[1], tokens=tokens, vocab=vocab)
  (ax,) = _panels(fig)
  pieces = [vocab.decode([i]) or f"<{i}>" for i in tokens[0]]  # padding decodes to nothing
  assert pieces[-1] == "<0>" and _texts(ax.get_xticklabels()) == pieces  # keys across
  assert _texts(ax.get_yticklabels()) == pieces  # queries down
  image = ax.images[0]
  assert image.colorbar is not None  # the colour scale
  # Masked: later keys (causal), padded keys and padded queries; not drawn as zero weight.
  pad = tokens[0] == 0
  masked = np.triu(np.ones((8, 8), bool), 1) | pad[None, :] | pad[:, None]
  data = image.get_array()
  assert isinstance(data, np.ma.MaskedArray)
  np.testing.assert_array_equal(np.ma.getmaskarray(data), masked)
  w = maps[layer][0, 1]
  np.testing.assert_allclose(data.data, w, rtol=1e-6)
  # The mask is the model's: every real query's weights over its unmasked keys sum to one.
  np.testing.assert_allclose(np.where(masked, 0, w)[~pad].sum(-1), 1.0, rtol=1e-5)
  plt.close(fig)
  # One panel per (layer, head) asked for, titled by head, rows by layer.
  fig = viz.attention_figure(maps, example=1, heads=[1, 0], tokens=tokens, vocab=vocab)
  panels = _panels(fig)
  assert [ax.get_title() for ax in panels] == ["head 1", "head 0"] * 2
  assert [ax.get_ylabel().split("\n")[0] for ax in panels[::2]] == list(maps)
  np.testing.assert_allclose(panels[1].images[0].get_array().data,
                             maps["decoder/layers_0/self_attention"][1, 0], rtol=1e-6)
  assert not np.ma.getmaskarray(panels[1].images[0].get_array())[np.tril_indices(8)].any()
  plt.close(fig)
  fig = viz.attention_figure(maps, layers=[-1, 0], max_heads=1)  # indices; no tokens: no labels
  assert [ax.get_ylabel().split("\n")[0] for ax in _panels(fig)] == list(maps)[::-1]
  plt.close(fig)
  with pytest.raises(ValueError, match=r"layers: 'decoder/nope' is not a layer .* choose names"):
    viz.attention_figure(maps, layers=["decoder/nope"])
  with pytest.raises(ValueError, match=r"heads=2 must be in \[0, 1\]"):
    viz.attention_figure(maps, heads=[2])
  with pytest.raises(ValueError, match="tokens do not fit"):
    viz.attention_figure(maps, tokens=tokens[:, :5])
  out = viz.plot_attention(maps, str(tmp_path / "m.png"), layers=[layer], heads=[0, 1],
                           tokens=tokens, vocab=vocab, title="t")
  assert _png(out)


def test_cross_attention_keys_are_the_encoder_pieces_and_its_padding_is_masked():
  plt = pytest.importorskip("matplotlib.pyplot")
  model = sj.EncoderDecoder(small_config(self_attention="dense"))
  src = np.array([[6, 7, 8, 9, 0, 0, 0]], np.int32)
  tgt = np.array([[3, 4, 5, 6, 7]], np.int32)
  variables = model.init(jax.random.key(0), src, tgt)
  maps = viz.attention_maps(model, variables, src, tgt)
  vocab = fake_data.Vocab()
  enc_pieces = [vocab.decode([i]) or f"<{i}>" for i in src[0]]
  dec_pieces = [vocab.decode([i]) for i in tgt[0]]
  names = ["encoder/layers_0/self_attention", "decoder/layers_0/cross_attention"]
  fig = viz.attention_figure(maps, layers=names, heads=[0], tokens=(src, tgt), vocab=vocab)
  enc_ax, cross_ax = _panels(fig)
  assert _texts(enc_ax.get_yticklabels()) == enc_pieces == _texts(enc_ax.get_xticklabels())
  assert _texts(cross_ax.get_yticklabels()) == dec_pieces
  assert _texts(cross_ax.get_xticklabels()) == enc_pieces
  pad = src[0] == 0
  # The encoder is bidirectional: only padding is masked, and the model gives it no weight.
  np.testing.assert_array_equal(np.ma.getmaskarray(enc_ax.images[0].get_array()),
                                pad[None, :] | pad[:, None])
  cross_mask = np.ma.getmaskarray(cross_ax.images[0].get_array())
  np.testing.assert_array_equal(cross_mask, np.broadcast_to(pad, (5, 7)))
  np.testing.assert_allclose(maps[names[1]][0, 0][:, pad], 0.0, atol=1e-6)
  plt.close(fig)


def test_long_sequences_show_at_most_max_labels_pieces():
  plt = pytest.importorskip("matplotlib.pyplot")
  model = sj.DecoderLM(small_config(self_attention="dot", num_layers=1, max_len=96,
                                    factor_sizes=(8, 12)))
  tokens = (3 + np.arange(90) % 29)[None].astype(np.int32)
  variables = model.init(jax.random.key(0), tokens)
  maps = viz.attention_maps(model, variables, tokens)
  vocab = fake_data.Vocab()
  fig = viz.attention_figure(maps, heads=[0], tokens=tokens, vocab=vocab, max_labels=30,
                             figsize=(7, 6))
  (ax,) = _panels(fig)
  pieces = [vocab.decode([i]) for i in tokens[0]]
  assert list(ax.get_xticks()) == list(range(0, 90, 3))  # every third piece: 30 labels
  assert _texts(ax.get_xticklabels()) == pieces[::3] == _texts(ax.get_yticklabels())
  assert tuple(fig.get_size_inches()) == (7, 6)
  plt.close(fig)
