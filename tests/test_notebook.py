"""notebooks/quickstart.ipynb runs top to bottom against a checkpoint this test trains, in a
local workdir and in a bucket (the GCS emulator of `gcs_emulator.py`)."""

import dataclasses
import os
import types

import fake_data
import pytest
from etils import epath

from synthesizer_jax import loop
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig, TrainConfig

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "quickstart.ipynb")


def _vocab(tmp_path):
  import sentencepiece as spm

  text = tmp_path / "corpus.txt"
  text.write_text("\n".join(f"the interpreter runs function {i} and a list of {i * 3} items"
                            for i in range(200)))
  spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"),
                                 vocab_size=fake_data.VOCAB, pad_id=0, eos_id=1, unk_id=2,
                                 bos_id=-1, minloglevel=2)
  return str(tmp_path / "sp.model")


@pytest.mark.parametrize("kind,where", [("random+dot", "local"), ("dense", "bucket")])
def test_quickstart_notebook_executes(tmp_path, kind, where, request):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  vocab_path = _vocab(tmp_path)
  data = types.SimpleNamespace(
      TASKS=fake_data.TASKS, get_dataset=fake_data.get_dataset,
      get_vocabulary=fake_data.get_vocabulary,
      task_info=lambda name, data_dir=None: dataclasses.replace(
          fake_data.task_info(name, data_dir), vocab_path=vocab_path))
  cfg = TrainConfig(task="fake_lm", data_dir=str(tmp_path), batch_size=8,
                    targets_length=32, num_train_steps=4, log_every=1, eval_every=4,
                    checkpoint_every=4, eval_batches=1, predict_batches=0,
                    sample_prompt="", warmup_steps=1, checkpoint_ocdbt=where == "local")
  model = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=2, max_len=48,
               dropout_rate=0.0, self_attention=kind)
  workdir = str(tmp_path / "run") if where == "local" else request.getfixturevalue(
      "gcs").new_path("notebook")
  loop.train_and_evaluate(RunConfig.build(model, cfg, shd.MeshConfig(num_devices=1)), workdir,
                          data=data, progress=False)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  os.environ["SJ_WORKDIR"] = workdir
  try:
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
  finally:
    del os.environ["SJ_WORKDIR"]
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert f"DecoderLM | attention: {kind}" in outputs
  assert "greedy 'The king said' ->" in outputs and "beam" in outputs
  assert "decoder/layers_1/self_attention (1, 2," in outputs
  pngs = ("attention_maps.png", "train_curves.png") + (("random_matrices.png",)
                                                      if "random" in kind else ())
  for png in pngs:
    assert epath.Path(workdir, png).stat().length > 1000, png
  assert not os.path.exists(os.path.join(str(tmp_path), "gs:"))
