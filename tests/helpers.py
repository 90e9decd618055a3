"""Small shared helpers for the tests: unboxed variables, random parameters, kinds to sweep."""

import flax.linen as nn
import jax
import numpy as np

import synthesizer_jax as sj

MIXTURES = ("random+dot", "dense+dot", "dense+random", "factorized_random+dense+dot")
ALL_KINDS = sj.KINDS + MIXTURES


def unbox(variables):
  """Variables with logical-partitioning boxes removed, as NumPy arrays."""
  return jax.tree.map(np.asarray, nn.meta.unbox(variables))


def randomize(variables, seed=0, scale=0.5):
  """Same tree with every leaf replaced by N(0, scale^2) noise (so biases and gates matter);
  `variables` may be abstract (`jax.eval_shape(model.init, ...)`)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: (rng.standard_normal(x.shape) * scale).astype(np.float32),
                      nn.meta.unbox(variables))


def small_config(**overrides):
  base = dict(vocab_size=50, d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=2,
              max_len=12, dropout_rate=0.0, random_rank=3, factor_sizes=(3, 4))
  base.update(overrides)
  return sj.ModelConfig(**base)
