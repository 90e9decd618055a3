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
from synthesizer_jax.config import RunConfig
from synthesizer_jax.finetune import flat_paths


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


def _init(shape, num_classes=None, abstract=False, **model):
  from synthesizer_jax import shapes
  from synthesizer_jax.config import ModelConfig

  cfg = ModelConfig(**{**MODEL, "vocab_size": 40, **model})
  shp = shapes.get(shape)
  model = shp.build(cfg, num_classes)
  dummy = shp.dummy_inputs({k: 16 for k in shp.feature_lengths(train_cfg("/tmp"))})
  init = jax.eval_shape if abstract else lambda f, *a: jax.jit(f)(*a)  # shapes are enough to refuse
  return nn.unbox(init(model.init, jax.random.PRNGKey(0), *dummy)["params"])


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


# Issue 32: nothing of a fine-tune is left behind or loaded in part without a word.

def _run(data_dir, model=None, **train):
  data_dir.mkdir(exist_ok=True)
  cfg = RunConfig.build({**MODEL, **(model or {})}, train_cfg(data_dir, **train),
                        shd.MeshConfig(num_devices=1))
  return run_lib.setup(cfg, data=fake_data)


def _save(run, workdir):
  """Saves `run`'s fresh state as step 1 of `workdir`; returns the state."""
  state = run_lib.initial_state(run, log=lambda *_: None)
  ckpt = checkpointing.Checkpointer(str(workdir), async_save=False)
  ckpt.save(1, state, run.run_config(), {"train_batches": 1})
  ckpt.close()
  return state


def test_init_from_carries_fixed_randoms_table(tmp_path):
  kind = {"self_attention": "fixed_random"}
  source = _save(_run(tmp_path / "data", kind, seed=0), tmp_path / "pre")
  logs = []
  run = _run(tmp_path / "data", kind, seed=1, init_from=str(tmp_path / "pre"))
  state = run_lib.initial_state(run, log=logs.append)
  fresh = flat_paths(run_lib.initial_state(_run(tmp_path / "data", kind, seed=1)).constants)
  got, want = flat_paths(state.constants), flat_paths(source.constants)
  assert list(got) == list(want) == list(fresh) and any(k.endswith("/R") for k in got)
  for key in got:
    assert not np.array_equal(np.asarray(fresh[key]), np.asarray(want[key]))  # seeds differ
    np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]))
  for key, value in flat_paths(state.params).items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_paths(source.params)[key]))
  assert f"and {len(want)} constant arrays from" in logs[-1]


def _under(flat, prefix):
  return sorted(k for k in flat if k.startswith(prefix + "/"))


def test_a_prefix_the_source_fills_in_part_is_refused():
  one, two = _init("lm"), _init("lm", num_layers=2)
  layer_1 = _under(flat_paths(two), "decoder/layers_1")
  for prefixes in (("decoder",), ()):  # () takes every shared top-level name, each whole
    with pytest.raises(ValueError, match=rf"only in part.*loads {len(flat_paths(one)) - 1} of "
                       rf"the {len(flat_paths(two)) - 1} arrays of this model under 'decoder'; "
                       rf"no source for decoder/layers_1/\* \({len(layer_1)} arrays\).*"
                       "init_partial=True"):
      finetune.merge_params(two, one, prefixes)
  # Another attention kind: the value and output projections match, the mixture does not.
  mixture = _init("lm", self_attention="dense+dot")
  gates = _under(flat_paths(mixture), "decoder/layers_0/self_attention/mixture")
  with pytest.raises(ValueError, match=r"no source for decoder/layers_0/self_attention/mixture/"
                                       rf"\* \({len(gates)} arrays\)"):
    finetune.merge_params(mixture, one, ("decoder",))
  # A language model's decoder into a deeper classifier's encoder.
  clf = _init("classifier", 2, num_layers=2)
  deeper = _under(flat_paths(clf), "encoder/layers_1")
  with pytest.raises(ValueError, match=r"entry 'encoder=decoder' loads .* no source for "
                                       rf"encoder/layers_1/\* \({len(deeper)} arrays\)"):
    finetune.merge_params(clf, one, ("embed", "encoder=decoder"))


def test_init_partial_loads_the_rest_and_logs_what_stayed_at_init(tmp_path):
  source = _save(_run(tmp_path / "data"), tmp_path / "pre")
  deeper = {"num_layers": 2}
  fresh = run_lib.initial_state(_run(tmp_path / "data", deeper, seed=3))
  with pytest.raises(ValueError, match=r"decoder/layers_1/\*"):
    run_lib.initial_state(_run(tmp_path / "data", deeper, seed=3, init_from=str(tmp_path / "pre"),
                               init_params=("decoder",)))
  logs = []
  run = _run(tmp_path / "data", deeper, seed=3, init_from=str(tmp_path / "pre"),
             init_params=("decoder",), init_partial=True)
  state = run_lib.initial_state(run, log=logs.append)
  got, src, init = (flat_paths(s.params) for s in (state, source, fresh))
  layer_1 = _under(got, "decoder/layers_1")
  for key, value in got.items():
    want = init[key] if key in layer_1 or key.startswith("embed/") else src[key]
    np.testing.assert_array_equal(np.asarray(value), np.asarray(want), err_msg=key)
  assert (f"at init: decoder/layers_1/* ({len(layer_1)} arrays), embed/* (1 array)" in logs[-1]
          and f"left {len(layer_1)} requested arrays without a source: decoder/layers_1/*"
          in logs[-1]), logs


def test_overlapping_entries_name_the_entry_that_claimed_the_paths():
  # The second entry does match (the LM has decoder/layers_0), but the first claims its paths.
  lm, clf = _init("lm", abstract=True), _init("classifier", 2, abstract=True, num_layers=2)
  with pytest.raises(ValueError, match=r"entries 'encoder=decoder' and 'encoder/layers_1=decoder/"
                                       r"layers_0' overlap: 'encoder=decoder' already claims the "
                                       r"paths under 'encoder/layers_1'"):
    finetune.merge_params(clf, lm, ("encoder=decoder", "encoder/layers_1=decoder/layers_0"))
  with pytest.raises(ValueError, match=r"entries 'embed' and 'embed/' overlap"):
    finetune.merge_params(lm, lm, ("embed", "embed/"))


def test_a_source_of_another_vocabulary_keeps_its_embedding(tmp_path):
  for name, pieces in (("a", b"pieces v1"), ("b", b"pieces v2, retrained"), ("c", b"pieces v1")):
    (tmp_path / name / "vocab").mkdir(parents=True)
    (tmp_path / name / "vocab" / "fake.model").write_bytes(pieces)  # fake_data's vocab_path
  _save(_run(tmp_path / "a"), tmp_path / "pre")
  pre = str(tmp_path / "pre")
  for prefixes in ((), ("embed", "decoder")):
    with pytest.raises(ValueError, match=rf"(?s)another vocabulary.*{tmp_path}/a/vocab/fake.model "
                                         rf"had sha256 \w+\.\.\. when saved, {tmp_path}/b/vocab/"
                                         r"fake.model has \w+\.\.\. now.*embed/embedding.*Leave "
                                         "the embedding out"):
      run_lib.initial_state(_run(tmp_path / "b", init_from=pre, init_params=prefixes))
  # Without the embedding it loads; the same vocabulary at another path loads whole.
  logs = []
  run_lib.initial_state(_run(tmp_path / "b", init_from=pre, init_params=("decoder",)),
                        log=logs.append)
  assert "at init: embed/* (1 array)" in logs[-1]
  run_lib.initial_state(_run(tmp_path / "c", init_from=pre), log=logs.append)
  assert "at init" not in logs[-1]
