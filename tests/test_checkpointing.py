"""Checkpoints: a resumed run equals an uninterrupted one, restore onto another mesh,
fine-tuning from another run's parameters (subset, shape-mismatch errors)."""

import json
import os

import fake_data
import flax.linen as nn
import jax
import numpy as np
import pytest

from synthesizer_jax import checkpointing, loop, optim, steps
from synthesizer_jax import run as run_lib
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


def test_fine_tune_from_encoder_decoder(tmp_path):
  (tmp_path / "data").mkdir()
  pre = run_lib.setup(RunConfig.build(MODEL, train_cfg(tmp_path / "data", task="fake_encdec"),
                                      shd.MeshConfig(num_devices=1)), data=fake_data)
  ckpt = checkpointing.Checkpointer(str(tmp_path / "pre"))
  ckpt.save(2, run_lib.initial_state(pre), pre.run_config(), {"train_batches": 2})
  ckpt.close()
  source, _, _ = checkpointing.restore_source(str(tmp_path / "pre"))
  ft = train_cfg(tmp_path / "data", task="fake_classify", init_from=str(tmp_path / "pre"),
                 init_params=("embed", "encoder"))
  run = run_lib.setup(RunConfig.build(MODEL, ft, shd.MeshConfig(num_devices=1)), data=fake_data)
  state = run_lib.initial_state(run, log=lambda *_: None)
  flat = checkpointing._flat(state.params)
  src = checkpointing._flat(source["params"])
  assert any(k.startswith("encoder/") for k in flat)
  for key, value in flat.items():
    if key.startswith(("encoder/", "embed/")):
      np.testing.assert_array_equal(np.asarray(value), src[key])
    else:
      assert key.startswith("head/")
  # A parameter of another shape is an error that names it.
  bad = train_cfg(tmp_path / "data", task="fake_classify", init_from=str(tmp_path / "pre"))
  run = run_lib.setup(RunConfig.build({**MODEL, "mlp_dim": 48}, bad,
                                      shd.MeshConfig(num_devices=1)), data=fake_data)
  with pytest.raises(ValueError, match=r"mlp/wi/kernel: shape \(16, 32\)"):
    run_lib.initial_state(run, log=lambda *_: None)
  with pytest.raises(ValueError, match="matches no parameter"):
    checkpointing.merge_params(state.params, source["params"], ("decoder",))


def _init(shape, num_classes=None):
  from synthesizer_jax import shapes
  from synthesizer_jax.config import ModelConfig

  cfg = ModelConfig(**{**MODEL, "vocab_size": 40})
  shp = shapes.get(shape)
  model = shp.build(cfg, num_classes)
  dummy = shp.dummy_inputs({k: 16 for k in shp.feature_lengths(train_cfg("/tmp"))})
  return nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), *dummy)["params"])


def test_init_params_renames_a_language_models_decoder_into_an_encoder():
  lm, clf = _init("lm"), _init("classifier", 2)
  merged, loaded = checkpointing.merge_params(clf, lm, ("embed", "encoder=decoder"))
  flat, src, fresh = (checkpointing._flat(t) for t in (merged, lm, clf))
  assert sorted(loaded) == sorted(k for k in flat if k.startswith(("embed/", "encoder/")))
  assert any(k.startswith("encoder/layers_0/self_attention/") for k in loaded)
  for key, value in flat.items():
    if key.startswith("encoder/"):
      np.testing.assert_array_equal(np.asarray(value), src["decoder/" + key[len("encoder/"):]])
    elif key.startswith("embed/"):
      np.testing.assert_array_equal(np.asarray(value), src[key])
    else:  # the head has no counterpart in a language model: it stays fresh
      assert key.startswith("head/")
      np.testing.assert_array_equal(np.asarray(value), np.asarray(fresh[key]))
  # Without the rename the encoder has no counterpart, and the error lists both trees' names.
  with pytest.raises(ValueError, match=r"'encoder' matches no parameter.*has \['decoder', "):
    checkpointing.merge_params(clf, lm, ("encoder",))
  with pytest.raises(ValueError, match=r"init_params entry '=decoder'.*encoder=decoder"):
    checkpointing.merge_params(clf, lm, ("=decoder",))
