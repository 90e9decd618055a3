"""Invalid configurations fail at construction with a message naming the field and the fix."""

import pytest

import synthesizer_jax as sj
from synthesizer_jax.config import default_factor_sizes


@pytest.mark.parametrize("changes,pattern", [
    (dict(self_attention="dnse"), r"self_attention.*unknown attention kind 'dnse'.*dense"),
    (dict(self_attention="random+foo"), r"unknown attention kind 'foo' in 'random\+foo'"),
    (dict(cross_attention="dot+dot"), r"cross_attention.*repeats a component"),
    (dict(self_attention=""), r"non-empty string"),
    (dict(num_heads=3), r"num_heads=3.*head_dim = 3 \* 32 = 96 must equal d_model=128"),
    (dict(d_model=100), r"d_model=100"),
    (dict(factor_sizes=(4, 4)), r"factor_sizes=\(4, 4\).*a \* b = 16 must equal max_len=128"),
    (dict(factor_sizes=(4,)), r"factor_sizes.*two positive integers"),
    (dict(random_rank=500), r"random_rank=500.*<= max_len=128"),
    (dict(max_len=0), r"max_len=0: must be a positive integer"),
    (dict(dropout_rate=1.5), r"dropout_rate=1.5: must be in \[0, 1\)"),
    (dict(dtype="float64"), r"dtype='float64'"),
    (dict(mlp_activation="tanh"), r"mlp_activation='tanh'"),
    (dict(pad_id=300), r"pad_id=300"),
    (dict(random_init_stddev=-1.0), r"random_init_stddev=-1.0"),
    (dict(num_decoder_layers=0), r"num_decoder_layers=0"),
])
def test_invalid_config_names_the_field(changes, pattern):
  with pytest.raises(ValueError, match=pattern):
    sj.ModelConfig(**changes)


def test_valid_configs_and_defaults():
  cfg = sj.ModelConfig(self_attention="factorized_random+dense+dot", max_len=96)
  att = cfg.attention(cfg.self_attention)
  assert att.factor_sizes == (8, 12) and att.factor_sizes[0] * att.factor_sizes[1] == 96
  assert att.dense_hidden_dim == cfg.head_dim
  assert att.random_init_stddev == pytest.approx(96 ** -0.5)
  assert cfg.encoder_layers == cfg.decoder_layers == cfg.num_layers
  assert cfg.replace(num_decoder_layers=5).decoder_layers == 5
  assert sj.parse_kind("random+dot") == ("random", "dot")


@pytest.mark.parametrize("n", [1, 2, 7, 12, 64, 97, 128, 512, 1000])
def test_default_factor_sizes_multiply_to_max_len(n):
  a, b = default_factor_sizes(n)
  assert a * b == n and a <= b


def test_classifier_rejects_bad_num_classes():
  import jax
  import numpy as np
  with pytest.raises(ValueError, match="num_classes=0"):
    sj.EncoderClassifier(sj.ModelConfig(), num_classes=0).init(
        jax.random.key(0), np.ones((1, 4), np.int32))
