"""The notebooks run top to bottom against checkpoints this test trains: quickstart.ipynb in a
local workdir and in a bucket (the GCS emulator of `gcs_emulator.py`), compare_kinds.ipynb on
three runs of different kinds, one of them in the bucket. Both are stored without outputs."""

import dataclasses
import json
import os
import types

import fake_data
import pytest
from etils import epath

from synthesizer_jax import loop
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig, TrainConfig

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")
NOTEBOOK = os.path.join(NOTEBOOKS, "quickstart.ipynb")
COMPARE = os.path.join(NOTEBOOKS, "compare_kinds.ipynb")


def _vocab(tmp_path):
  import sentencepiece as spm

  text = tmp_path / "corpus.txt"
  text.write_text("\n".join(f"the interpreter runs function {i} and a list of {i * 3} items"
                            for i in range(200)))
  spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"),
                                 vocab_size=fake_data.VOCAB, pad_id=0, eos_id=1, unk_id=2,
                                 bos_id=-1, minloglevel=2)
  return str(tmp_path / "sp.model")


def _train(tmp_path, vocab_path, kind, workdir, ocdbt=True):
  """A 4-step DecoderLM of attention `kind` on fake_data, its vocabulary SentencePiece's."""
  data = types.SimpleNamespace(
      TASKS=fake_data.TASKS, get_dataset=fake_data.get_dataset,
      get_vocabulary=fake_data.get_vocabulary,
      task_info=lambda name, data_dir=None: dataclasses.replace(
          fake_data.task_info(name, data_dir), vocab_path=vocab_path))
  cfg = TrainConfig(task="fake_lm", data_dir=str(tmp_path), batch_size=8,
                    targets_length=32, num_train_steps=4, log_every=1, eval_every=4,
                    checkpoint_every=4, eval_batches=1, predict_batches=0,
                    sample_prompt="", warmup_steps=1, checkpoint_ocdbt=ocdbt)
  model = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=2, max_len=48,
               dropout_rate=0.0, self_attention=kind)
  loop.train_and_evaluate(RunConfig.build(model, cfg, shd.MeshConfig(num_devices=1)), workdir,
                          data=data, progress=False)


def _execute(path, tmp_path, env):
  """The notebook at `path`, executed in `tmp_path` with environment `env`; its text output."""
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  nb = nbformat.read(path, as_version=4)
  os.environ.update(env)
  try:
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
  finally:
    for name in env:
      del os.environ[name]
  return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))


@pytest.mark.parametrize("path", [NOTEBOOK, COMPARE])
def test_notebooks_are_stored_without_outputs(path):
  with open(path) as f:
    nb = json.load(f)
  code = [c for c in nb["cells"] if c["cell_type"] == "code"]
  assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
  top = "".join(nb["cells"][0]["source"])  # says what it needs, and the command that makes it
  assert nb["cells"][0]["cell_type"] == "markdown" and "python train.py --config" in top


@pytest.mark.parametrize("kind,where", [("random+dot", "local"), ("dense", "bucket")])
def test_quickstart_notebook_executes(tmp_path, kind, where, request):
  vocab_path = _vocab(tmp_path)
  workdir = str(tmp_path / "run") if where == "local" else request.getfixturevalue(
      "gcs").new_path("notebook")
  _train(tmp_path, vocab_path, kind, workdir, ocdbt=where == "local")
  outputs = _execute(NOTEBOOK, tmp_path, {"SJ_WORKDIR": workdir})
  assert f"DecoderLM | attention: {kind}" in outputs
  assert "greedy 'The king said' ->" in outputs and "beam" in outputs
  assert "decoder/layers_1/self_attention (1, 2," in outputs
  pngs = ("attention_maps.png", "attention_last_layer.png", "train_curves.png") + (
      ("random_matrices.png",) if "random" in kind else ())
  for png in pngs:
    assert epath.Path(workdir, png).stat().length > 1000, png
  assert not os.path.exists(os.path.join(str(tmp_path), "gs:"))


def test_compare_kinds_notebook_executes(tmp_path, gcs):
  vocab_path = _vocab(tmp_path)
  workdirs = [str(tmp_path / "kinds" / "dot"), str(tmp_path / "kinds" / "dense"),
              gcs.new_path("random+dot")]
  for kind, workdir in zip(("dot", "dense", "random+dot"), workdirs):
    _train(tmp_path, vocab_path, kind, workdir, ocdbt=not workdir.startswith("gs://"))
  plots, sentence = tmp_path / "plots", "the interpreter runs a list"
  outputs = _execute(COMPARE, tmp_path, {"SJ_WORKDIRS": ",".join(workdirs),
                                         "SJ_SENTENCE": sentence, "SJ_PLOTS": str(plots)})
  import sentencepiece as spm

  pieces = spm.SentencePieceProcessor(model_file=vocab_path).encode(sentence, out_type=str)
  assert f"{len(pieces)} pieces: {pieces}" in outputs  # what labels the maps' axes
  for kind, workdir in zip(("dot", "dense", "random+dot"), workdirs):
    assert f"{kind:14s} DecoderLM | layers: 2 | heads: 2" in outputs
    ppl = json.loads(epath.Path(workdir, "eval_results.json").read_text())["metrics"]
    assert f"| {kind} | {kind} | 4 | {ppl['perplexity']:.2f} |" in outputs
  # Only the mixture has gates: one line per layer, its weights per component.
  assert "random+dot decoder/layers_0/self_attention {'random': [" in outputs
  assert "random+dot decoder/layers_1/self_attention {'random': [" in outputs
  assert "dense decoder/" not in outputs and "dot decoder/" not in outputs.replace("+dot", "")
  for png in ("kinds_layer0.png", "kinds_layer-1.png", "gates.png", "curves.png"):
    assert (plots / png).stat().st_size > 1000, png
  assert not os.path.exists(os.path.join(str(tmp_path), "gs:"))
