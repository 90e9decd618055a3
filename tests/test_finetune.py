"""Fine-tune loading (`finetune.py`): another run's parameters into a fresh model (subset,
renames, shape-mismatch errors)."""

import fake_data
import flax.linen as nn
import jax
import numpy as np
import pytest
from test_checkpointing import MODEL, train_cfg

from synthesizer_jax import checkpointing, finetune
from synthesizer_jax import run as run_lib
from synthesizer_jax import sharding as shd
from synthesizer_jax.checkpointing import flat_paths
from synthesizer_jax.config import RunConfig


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
  flat = flat_paths(state.params)
  src = flat_paths(source["params"])
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
    finetune.merge_params(state.params, source["params"], ("decoder",))


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
  merged, loaded = finetune.merge_params(clf, lm, ("embed", "encoder=decoder"))
  flat, src, fresh = (flat_paths(t) for t in (merged, lm, clf))
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
    finetune.merge_params(clf, lm, ("encoder",))
  with pytest.raises(ValueError, match=r"init_params entry '=decoder'.*encoder=decoder"):
    finetune.merge_params(clf, lm, ("=decoder",))
