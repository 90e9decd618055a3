"""Sharding on 8 virtual CPU devices: every rule set and several attention kinds train to the
same loss and parameters as one device, and every parameter / optimizer leaf is placed as
the rules say."""

import fake_data
import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import synthesizer_jax as sj
from synthesizer_jax import optim, shapes, steps
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import TrainConfig

LENGTHS = {"inputs": 16, "targets": 16}
MESHES = {
    # (rules, mesh name) -> MeshConfig over 8 devices
    ("dp", "2x4"): shd.MeshConfig(data=2, fsdp=4, rules="dp"),
    ("fsdp", "2x4"): shd.MeshConfig(data=2, fsdp=4, rules="fsdp"),
    ("fsdp", "1x8"): shd.MeshConfig(data=1, fsdp=8, rules="fsdp"),
    ("fsdp_tp", "2x4"): shd.MeshConfig(data=1, fsdp=2, tensor=4, rules="fsdp_tp"),
    ("fsdp_tp", "1x8"): shd.MeshConfig(data=1, fsdp=1, tensor=8, rules="fsdp_tp"),
}
CASES = [  # (kind, shape, rules, mesh): every rule set, both mesh shapes, five kinds
    ("dot", "lm", "fsdp_tp", "2x4"),
    ("dense", "lm", "fsdp", "1x8"),
    ("random", "encdec", "fsdp", "2x4"),
    ("factorized_random", "lm", "dp", "2x4"),
    ("factorized_random+dense+dot", "lm", "fsdp_tp", "1x8"),
]
TASK = {"lm": "fake_lm", "encdec": "fake_encdec", "classifier": "fake_classify"}


def make_model(kind, shape):
  cfg = sj.ModelConfig(vocab_size=fake_data.VOCAB, d_model=16, num_heads=4, head_dim=4,
                       mlp_dim=32, num_layers=1, max_len=16, dropout_rate=0.1,
                       self_attention=kind, random_rank=4)
  if shape == "lm":
    return sj.DecoderLM(cfg)
  if shape == "encdec":
    return sj.EncoderDecoder(cfg)
  return sj.EncoderClassifier(cfg, num_classes=2)


def train(model, shape, mesh_cfg, num_steps=2):
  cfg = TrainConfig(batch_size=8, inputs_length=16, targets_length=16,
                    learning_rate=1e-2, warmup_steps=1, grad_accum_steps=2)
  mesh = shd.make_mesh(mesh_cfg)
  rules = shd.RULE_SETS[mesh_cfg.rules]
  tx = optim.make_optimizer(cfg)
  state, shardings = steps.create_train_state(model, shape, tx,
                                              shapes.get(shape).feature_lengths(cfg), mesh, rules)
  step = steps.jit_train_step(model, shape, tx, cfg, mesh, rules, shardings)
  losses = []
  for i in range(num_steps):
    batch = fake_data.make_batch(TASK[shape], np.random.default_rng(i), 8, LENGTHS,
                                 pack=shape != "classifier")
    state, metrics = step(state, shd.global_batch(batch, mesh))
    losses.append(float(metrics["loss"]))
  return state, losses, mesh, tx


_reference = {}


def single_device(kind, shape):
  if (kind, shape) not in _reference:
    _reference[kind, shape] = train(make_model(kind, shape), shape,
                                    shd.MeshConfig(data=1, num_devices=1))[:2]
  return _reference[kind, shape]


@pytest.mark.parametrize("kind,shape,rules,mesh_name", CASES)
def test_sharded_training_equals_one_device(kind, shape, rules, mesh_name):
  model = make_model(kind, shape)
  state, losses, mesh, tx = train(model, shape, MESHES[rules, mesh_name])
  ref_state, ref_losses = single_device(kind, shape)
  np.testing.assert_allclose(losses, ref_losses, rtol=2e-5)
  for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params),
                       strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-6)

  # Leaf by leaf: each parameter has the spec its logical names give under the rules ...
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *shapes.get(shape).dummy_inputs(
      LENGTHS)))
  rule_set = shd.RULE_SETS[rules]
  flat_boxed = jax.tree_util.tree_flatten_with_path(
      boxed["params"], is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))[0]
  param_specs = {}
  for (path, box), leaf in zip(flat_boxed, jax.tree.leaves(state.params), strict=True):
    want = shd.logical_to_spec(box.names, rule_set, mesh, box.value.shape)
    assert leaf.sharding.spec == want, (jax.tree_util.keystr(path), leaf.sharding.spec, want)
    param_specs[tuple(k.key for k in path)] = (leaf.shape, want)
  # ... and each optimizer leaf shaped like its parameter shares that spec (others replicated).
  for path, leaf in jax.tree_util.tree_leaves_with_path(state.opt_state):
    keys = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
    hit = param_specs.get(keys)
    want = hit[1] if hit and hit[0] == leaf.shape else P()
    assert leaf.sharding.spec == want, (jax.tree_util.keystr(path), leaf.sharding.spec)


def test_rules_shard_what_they_promise():
  mesh = shd.make_mesh(shd.MeshConfig(data=1, fsdp=2, tensor=4))
  tp = shd.RULE_SETS["fsdp_tp"]
  assert shd.logical_to_spec(("vocab", "embed"), tp, mesh, (32, 16)) == P("tensor", "fsdp")
  assert shd.logical_to_spec(("heads", "syn_len", "syn_len"), tp, mesh, (4, 16, 16)) == P(
      "tensor", "fsdp", None)
  assert shd.logical_to_spec(("embed", "mlp"), tp, mesh, (16, 32)) == P("fsdp", "tensor")
  # Activations: the batch takes fsdp, so embed is not sharded twice.
  assert shd.logical_to_spec(("batch", "length", "embed"), tp, mesh) == P("fsdp", None, None)
  # A size that does not divide falls through to the next rule (or stays whole).
  assert shd.logical_to_spec(("heads", "syn_len", "syn_rank"), tp, mesh, (2, 16, 4)) == P(
      None, "fsdp", None)
  assert shd.logical_to_spec(("embed", "mlp"), shd.RULE_SETS["dp"], mesh, (16, 32)) == P(
      None, None)


def test_mesh_shapes_fill_and_errors():
  assert shd.mesh_shapes(shd.MeshConfig(data=-1, tensor=2), 8) == ((4, 1, 2), (1, 1, 1))
  assert shd.mesh_shapes(shd.MeshConfig(data=-1, dcn_data=2), 8) == ((4, 1, 1), (2, 1, 1))
  with pytest.raises(ValueError, match="needs 6 devices, but 8 exist"):
    shd.mesh_shapes(shd.MeshConfig(data=3, fsdp=2), 8)
  with pytest.raises(ValueError, match="at most one of"):
    shd.MeshConfig(data=-1, fsdp=-1)
