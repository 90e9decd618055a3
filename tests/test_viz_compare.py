"""Runs compared: mixture gates against a NumPy softmax of the parameters, kinds side by side
and run curves, checked in the figures (panels, labels, image data, masks, lines)."""

import json

import fake_data
import jax
import numpy as np
import pytest
from helpers import randomize, small_config

import synthesizer_jax as sj
from synthesizer_jax import viz
from synthesizer_jax import viz_compare as vc

TOKENS = np.array([[5, 9, 4, 7, 3, 0]], np.int32)


def _panels(fig):
  return [ax for ax in fig.axes if ax.images]


def _texts(labels):
  return [t.get_text() for t in labels]


def _run(kind, seed=0):
  """(model, variables) of a DecoderLM of `kind`, with random parameters (gates not uniform)."""
  model = sj.DecoderLM(small_config(self_attention=kind))
  variables = model.init(jax.random.key(0), TOKENS)
  return model, {"params": randomize(variables, seed)["params"]}


def test_mixture_gates_are_the_softmaxed_gate_logits_and_plot_per_layer_and_head(tmp_path):
  plt = pytest.importorskip("matplotlib.pyplot")
  model, variables = _run("factorized_random+dense+dot")
  gates = vc.mixture_gates(model, variables)
  assert list(gates) == [f"decoder/layers_{i}/self_attention" for i in range(2)]
  for i, (components, w_hc) in enumerate(gates.values()):
    logits = variables["params"]["decoder"][f"layers_{i}"]["self_attention"]["mixture"][
        "gate_logits"]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    assert components == ("factorized_random", "dense", "dot")
    np.testing.assert_allclose(w_hc, e / e.sum(-1, keepdims=True), rtol=1e-5)
  assert vc.mixture_gates(*_run("dot")) == {}
  by_run = {"dot": {}, "mix": gates, "random+dot": vc.mixture_gates(*_run("random+dot", 1))}
  fig = vc.gates_figure(by_run)
  panels = _panels(fig)
  assert len(panels) == 4  # the dot run has no gates: two runs x two layers
  assert [ax.get_ylabel() for ax in panels[::2]] == ["mix", "random+dot"]
  np.testing.assert_allclose(panels[1].images[0].get_array(), gates[list(gates)[1]][1])
  assert _texts(panels[0].get_xticklabels()) == ["factorized_random", "dense", "dot"]
  assert _texts(panels[0].get_yticklabels()) == ["head 0", "head 1"]
  assert sum(ax.images[0].colorbar is not None for ax in panels) == 1  # one scale, 0..1
  plt.close(fig)
  assert vc.plot_gates(by_run, str(tmp_path / "gates.png")).endswith("gates.png")
  with pytest.raises(ValueError, match="no run has a mixture"):
    vc.gates_figure({"dot": {}})


def test_kinds_side_by_side_shows_one_row_per_run_on_one_scale():
  plt = pytest.importorskip("matplotlib.pyplot")
  runs = {kind: _run(kind, seed) for seed, kind in enumerate(("dot", "dense", "random+dot"))}
  maps = {kind: viz.attention_maps(m, v, TOKENS) for kind, (m, v) in runs.items()}
  vocab = fake_data.Vocab()
  layer = "decoder/layers_1/self_attention"
  fig = vc.kinds_figure(maps, layer, heads=[1, 0], tokens=TOKENS, vocab=vocab)
  panels = _panels(fig)
  assert len(panels) == 6 and [ax.get_title() for ax in panels[:2]] == ["head 1", "head 0"]
  assert [ax.get_ylabel().split("\n")[:2] for ax in panels[::2]] == [[k, layer] for k in maps]
  pieces = [vocab.decode([i]) or f"<{i}>" for i in TOKENS[0]]
  masked = np.triu(np.ones((6, 6), bool), 1)
  masked[:, 5] = masked[5] = True  # the padded key and query
  for ax, (kind, head) in zip(panels, [(k, h) for k in maps for h in (1, 0)]):
    assert _texts(ax.get_xticklabels()) == pieces == _texts(ax.get_yticklabels())
    data = ax.images[0].get_array()
    np.testing.assert_allclose(data.data, maps[kind][layer][0, head], rtol=1e-6)
    np.testing.assert_array_equal(np.ma.getmaskarray(data), masked)
  vmax = max(float(np.where(masked, 0, m[layer][0, :2]).max()) for m in maps.values())
  np.testing.assert_allclose([ax.images[0].norm.vmax for ax in panels], vmax, rtol=1e-6)
  assert sum(ax.images[0].colorbar is not None for ax in panels) == 1
  plt.close(fig)
  with pytest.raises(ValueError, match="layers: 'decoder/layers_7/self_attention' is not"):
    vc.kinds_figure(maps, "decoder/layers_7/self_attention")


def _workdir(root, kind, ppls, results=True):
  root.mkdir()
  (root / "config.json").write_text(json.dumps({"model": {"self_attention": kind}}))
  records = [{"step": s, "split": "train", "loss": 5.0 - s} for s in range(1, 5)]
  records += [{"step": 2 * (i + 1), "split": "eval", "perplexity": p} for i, p in enumerate(ppls)]
  (root / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
  if results:
    (root / "eval_results.json").write_text(json.dumps(
        {"step": 4, "metrics": {"perplexity": ppls[-1] - 0.5}}))
  return str(root)


def test_run_summaries_give_perplexity_table_and_curves_of_every_run(tmp_path):
  plt = pytest.importorskip("matplotlib.pyplot")
  dot = vc.run_summary(_workdir(tmp_path / "dot", "dot", [40.0, 30.0]))
  dense = vc.run_summary(_workdir(tmp_path / "dense", "dense", [45.0, 35.0], results=False))
  assert (dot["kind"], dot["step"], dot["perplexity"]) == ("dot", 4, 29.5)  # eval_results.json
  assert (dense["step"], dense["perplexity"]) == (4, 35.0)  # else the last eval record
  assert len(dot["train"]) == 4 and len(dot["eval"]) == 2
  table = vc.summary_table({"a": dot, "b": dense})
  assert "| a | dot | 4 | 29.50 |" in table and "| b | dense | 4 | 35.00 |" in table
  fig = vc.curves_figure({"a": dot, "b": dense})
  loss, ppl = fig.axes[:2]
  assert loss.get_title() == "train loss" and ppl.get_title() == "eval perplexity"
  assert [line.get_label() for line in ppl.lines] == ["a", "b"]
  np.testing.assert_allclose(ppl.lines[1].get_ydata(), [45.0, 35.0])
  np.testing.assert_allclose(loss.lines[0].get_xdata(), [1, 2, 3, 4])
  plt.close(fig)
  assert vc.plot_run_curves({"a": dot}, str(tmp_path / "c.png")).endswith("c.png")
  with pytest.raises(FileNotFoundError, match="has no config.json"):
    vc.run_summary(str(tmp_path))
