"""Checkpoints: a resumed run equals an uninterrupted one, restore onto another mesh."""

import json
import os

import fake_data
import jax
import numpy as np
import pytest

from synthesizer_jax import checkpointing, loop, optim, steps
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig, TrainConfig

MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
             dropout_rate=0.1, self_attention="dense")


def train_cfg(data_dir, task="fake_lm", **kw):
  base = dict(task=task, data_dir=str(data_dir), batch_size=8, inputs_length=16,
              targets_length=16, num_train_steps=4, log_every=1, eval_every=100,
              checkpoint_every=2, eval_batches=0, predict_batches=0, learning_rate=1e-2,
              warmup_steps=1, sample_prompt="")
  return TrainConfig(**{**base, **kw})


def train_losses(workdir):
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def test_resume_gives_same_next_step_loss(tmp_path):
  (tmp_path / "data").mkdir()
  cfg = train_cfg(tmp_path / "data")
  mesh = shd.MeshConfig(num_devices=1)
  loop.train_and_evaluate(RunConfig.build(MODEL, cfg, mesh), str(tmp_path / "a"), data=fake_data,
                          progress=False)
  stopped = loop.train_and_evaluate(RunConfig.build(MODEL, cfg, mesh), str(tmp_path / "b"),
                                    data=fake_data, stop_after=2, progress=False)
  assert stopped["stopped"] and stopped["step"] == 2
  loop.train_and_evaluate(RunConfig.build(MODEL, cfg, mesh), str(tmp_path / "b"), data=fake_data,
                          progress=False)
  a, b = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
  assert sorted(b) == [1, 2, 3, 4]
  np.testing.assert_allclose([b[3], b[4]], [a[3], a[4]], rtol=1e-6)
  saved = checkpointing.Checkpointer(str(tmp_path / "b"), read_only=True)
  assert saved.latest_step() == 4
  config = saved.config()
  saved.close()
  assert config["vocab_path"].endswith("fake.model") and config["model"]["d_model"] == 16


def _state(mesh, seed=0):
  import synthesizer_jax as sj

  model = sj.DecoderLM(sj.ModelConfig(vocab_size=32, d_model=16, num_heads=2, head_dim=8,
                                      mlp_dim=32, num_layers=1, max_len=16,
                                      self_attention="factorized_random+dot"))
  tx = optim.make_optimizer(TrainConfig())
  rules = shd.RULE_SETS["fsdp_tp"]
  state, sh = steps.create_train_state(model, "lm", tx, {"targets": 16}, mesh, rules, seed)
  return model, tx, state, sh


@pytest.mark.parametrize("src,dst", [(8, 1), (1, 8)])
def test_restore_onto_another_mesh(tmp_path, src, dst):
  def mesh_of(n):
    cfg = shd.MeshConfig(data=-1, fsdp=2, tensor=2) if n == 8 else shd.MeshConfig(data=1)
    return shd.make_mesh(cfg, jax.devices()[:n])

  model, tx, state, _ = _state(mesh_of(src))
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(7, state, {"x": 1}, {"train_batches": 7})
  ckpt.wait()
  target_sh = steps.state_shardings(model, "lm", tx, {"targets": 16}, mesh_of(dst),
                                       shd.RULE_SETS["fsdp_tp"])
  restored, meta = ckpt.restore(steps.abstract_state(model, "lm", tx, {"targets": 16},
                                                        target_sh))
  ckpt.close()
  assert meta["train_batches"] == 7
  for got, want, sh in zip(jax.tree.leaves(restored), jax.tree.leaves(state),
                           jax.tree.leaves(target_sh), strict=True):
    assert got.sharding == sh
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
