"""The attention registry: a new kind is one class and one registration, nothing else."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import small_config

import synthesizer_jax as sj
from synthesizer_jax.attention import DotForm, LogitSource, costs, registry
from synthesizer_jax.layers import Projection


class Bilinear(LogitSource):
  """A test-only kind: B[i, j] = x_i W_h x_j, one d x d matrix per head."""

  needs_keys = True
  uses_positions = False

  def keys(self, x_bke):
    return x_bke

  def logits(self, x_bqe, keys, pos_bq, pos_bk):
    return jnp.einsum("bqhe,bke->bhqk", self._queries(x_bqe), keys)

  def dot_form(self, x_bqe, keys, pos_bq, pos_bk):
    q_bqhe = self._queries(x_bqe)
    shape = keys.shape[:2] + q_bqhe.shape[2:]
    return DotForm(q_bqhe, jnp.broadcast_to(keys[:, :, None, :], shape))

  @nn.compact
  def _queries(self, x_bqe):  # x_i W_h, [b, q, h, e]
    features = (self.cfg.num_heads, x_bqe.shape[-1])
    return Projection(features, ("embed",), ("heads", "head_dim"), dtype=self.cfg.dtype)(x_bqe)

  @classmethod
  def param_counts(cls, c, d_model):
    return {"trained": c.num_heads * d_model * d_model}

  @classmethod
  def forward_flops(cls, c, d_model, n):
    return 2 * n * c.num_heads * d_model * d_model + 2 * c.num_heads * n * n * d_model


@pytest.fixture
def bilinear(monkeypatch):
  monkeypatch.setattr(registry, "SOURCES", dict(registry.SOURCES))
  registry.register("bilinear", Bilinear)
  yield "bilinear"


def test_a_new_kind_is_one_class_and_one_registration(bilinear):
  tokens = np.random.default_rng(0).integers(1, 50, (2, 9)).astype(np.int32)
  for kind in (bilinear, "bilinear+random"):
    outs = {}
    for impl in ("materialized", "blockwise"):
      cfg = small_config(self_attention=kind, attention_impl=impl, attention_block_size=4)
      model = sj.DecoderLM(cfg)
      variables = model.init(jax.random.key(0), tokens)
      outs[impl] = np.asarray(model.apply(variables, tokens))
      layer = variables["params"]["decoder"]["layers_0"]["self_attention"]
      size = sum(int(np.size(x)) for x in jax.tree.leaves(layer))
      assert size == costs.param_count(cfg.attention(kind), cfg.d_model)["trained"]
    np.testing.assert_allclose(outs["blockwise"], outs["materialized"], rtol=1e-5, atol=1e-5)
  assert costs.forward_flops(small_config().attention(bilinear), 16, 8) > 0
  assert bilinear not in sj.KINDS  # the paper's kinds stay as they are


def test_register_refuses_a_taken_or_mixture_name(bilinear):
  for name in ("dot", bilinear, "a+b", ""):
    with pytest.raises(ValueError, match="cannot register"):
      registry.register(name, Bilinear)


def test_the_registry_is_a_leaf_config_imports_without_a_cycle():
  """config imports attention; no attention module imports synthesizer_jax.config."""
  import pathlib

  root = pathlib.Path(sj.__file__).parent / "attention"
  for path in root.glob("*.py"):
    assert "synthesizer_jax.config" not in path.read_text(), path.name
