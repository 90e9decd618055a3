"""The parameter and FLOP formulas of docs/synthesizers.md against real trees and XLA."""

import jax
import numpy as np
import pytest
from helpers import ALL_KINDS, unbox

import synthesizer_jax as sj
from synthesizer_jax.attention import costs

CFG = sj.ModelConfig(d_model=64, num_heads=4, head_dim=16, max_len=64, random_rank=8,
                     dense_hidden_dim=24, factor_sizes=(4, 16))


def _layer(kind, n):
  layer = sj.Attention(CFG.attention(kind))
  x = np.ones((1, n, CFG.d_model), np.float32)
  pos = np.arange(n)[None]
  return layer, layer.init(jax.random.key(0), x, x, None, pos, pos), x, pos


def _size(tree):
  return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(unbox(tree)))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_param_count_matches_tree(kind):
  _, variables, _, _ = _layer(kind, 8)
  expected = costs.param_count(CFG.attention(kind), CFG.d_model)
  assert _size(variables["params"]) == expected["trained"]
  assert _size(variables.get("constants", {})) == expected["constant"]


def test_param_count_of_a_whole_model_adds_up():
  """DecoderLM params = embeddings + per layer (attention + MLP + 2 norms) + final norm."""
  for kind, norm in [(k, "rmsnorm") for k in sj.KINDS] + [("dot", "layernorm")]:
    cfg = CFG.replace(self_attention=kind, num_layers=3, norm=norm)
    variables = sj.DecoderLM(cfg).init(jax.random.key(0), np.ones((1, 8), np.int32))
    norm_params = cfg.d_model * (2 if norm == "layernorm" else 1)  # scale (+ bias)
    per_layer = (costs.param_count(cfg.attention(kind), cfg.d_model)["trained"]
                 + 2 * cfg.d_model * cfg.mlp_dim + 2 * norm_params)
    assert _size(variables["params"]) == (cfg.vocab_size * cfg.d_model + 3 * per_layer
                                          + norm_params)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("n", [16, 64])
def test_flops_match_xla_cost_analysis(kind, n):
  """The formula counts the matmuls; XLA adds only O(h n^2) elementwise work on top."""
  layer, variables, x, pos = _layer(kind, n)
  compiled = jax.jit(lambda v, x, p: layer.apply(v, x, x, None, p, p)).lower(
      variables, x, pos).compile()
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  ratio = costs.forward_flops(CFG.attention(kind), CFG.d_model, n) / analysis["flops"]
  assert 0.85 <= ratio <= 1.0, ratio
