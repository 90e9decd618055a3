"""The C4 recipe's TPU configs (configs/c4_span_corruption.py, glue_t5_finetune.py,
super_glue_t5_finetune.py) convert and build the model their docstrings state: T5-base
shaped, its parameter count from `jax.eval_shape` equal to the count of its parts (the
attention kinds' declared counts, attention/costs.py, plus embedding, MLPs and norms) and
within 2% of T5-base's 220M with dot attention; fine-tuning repeats the pre-training model
in the same vocabulary. No data, no training."""

import os

import flax.linen as nn
import jax
import numpy as np
import pytest
from test_cli import REPO, load_config, load_doc

from synthesizer_jax import shapes
from synthesizer_jax.attention import costs
from synthesizer_jax.config import parse_config
from synthesizer_jax.data import mixtures, registry, span_corruption

VOCAB = 32_000 + 100  # T5's SentencePiece pieces + the c4_t5 family's sentinels
PRETRAIN = "c4_span_corruption"


def path(name):
  return os.path.join(REPO, "configs", f"{name}.py")


def expected_params(m) -> int:
  """Tied embedding, then per layer: attention (as each kind declares it), MLP, norms (scale
  and bias); a final norm per stack."""
  def attention(kind):
    return costs.param_count(m.attention(kind), m.d_model)["trained"]

  mlp, norm = 2 * m.d_model * m.mlp_dim, 2 * m.d_model
  encoder = m.encoder_layers * (attention(m.self_attention) + mlp + 2 * norm)
  decoder = m.decoder_layers * (attention(m.self_attention) + attention(m.cross_attention)
                                + mlp + 3 * norm)
  return m.vocab_size * m.d_model + encoder + decoder + 2 * norm


def counted(model_cfg, lengths) -> int:
  shape = shapes.get("encdec")
  model = shape.build(model_cfg)
  variables = jax.eval_shape(model.init, jax.random.key(0), *shape.dummy_inputs(lengths))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(variables)["params"]))


@pytest.mark.parametrize("kind", ["dot", "dense"])
def test_pretraining_builds_the_t5_base_encoder_decoder_it_states(kind):
  config = load_config(path(PRETRAIN))
  config.model.self_attention = kind  # the attention kind is a config field
  run = parse_config(config.to_dict())
  cfg, model = run.train, run.model_for(VOCAB)
  assert cfg.task == PRETRAIN and registry.spec(PRETRAIN).objective == "span_corruption"
  lengths = shapes.get("encdec").feature_lengths(cfg)
  assert lengths == {"inputs": 512, "targets": span_corruption.lengths_for(512)[1]}
  assert 128 <= cfg.batch_size <= 256 and cfg.optimizer == "adafactor" and cfg.pack
  assert (model.d_model, model.num_heads, model.head_dim, model.mlp_dim, model.encoder_layers,
          model.decoder_layers, model.max_len) == (768, 12, 64, 3072, 12, 12, 512)
  n = counted(model, lengths)
  assert n == expected_params(model)
  if kind == "dot":
    assert abs(n / 220e6 - 1) < 0.02  # T5-base: 220M parameters (Raffel et al. 2020)
  assert f"{n / 1e6:.1f}M" in load_doc(path(PRETRAIN)), n  # the size the docstring states


@pytest.mark.parametrize("name,mixture", [("glue_t5_finetune", "glue_t5"),
                                          ("super_glue_t5_finetune", "super_glue_t5")])
def test_fine_tuning_takes_the_whole_pretrained_model_of_its_vocabulary(name, mixture):
  pre = parse_config(load_config(path(PRETRAIN)).to_dict())
  fine = parse_config(load_config(path(name)).to_dict())
  assert fine.train.task == mixture
  assert {registry.spec(t).family for t in mixtures.mixture(mixture).tasks} == {
      registry.spec(PRETRAIN).family}
  assert fine.model == pre.model  # so the checkpoint loads whole, embedding included
  assert fine.train.init_from and fine.train.init_params == ()
  assert fine.model_for(VOCAB) == pre.model_for(VOCAB)
  assert (fine.train.decay, fine.train.num_train_steps) == ("constant", 2**18)  # T5's
  assert fine.train.inputs_length == pre.train.inputs_length <= fine.model.max_len
  assert "--config.init_from=gs://" in load_doc(path(name))
