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


def test_every_config_field_declares_its_domain():
  import dataclasses

  from synthesizer_jax.config import MeshConfig, TrainConfig

  for cls in (sj.ModelConfig, TrainConfig, MeshConfig):
    missing = [f.name for f in dataclasses.fields(cls) if "domain" not in f.metadata]
    assert not missing, f"{cls.__name__} fields without a domain: {missing}"


@pytest.mark.parametrize("cls,changes,error,pattern", [
    ("train", dict(learning_rate=float("nan")), ValueError, r"learning_rate=nan: must be in \(0"),
    ("train", dict(clip_norm=float("inf")), ValueError, r"clip_norm=inf: must be in \[0"),
    ("train", dict(b1=1.0), ValueError, r"TrainConfig.b1=1.0: must be in \[0, 1\)"),
    ("train", dict(b2=-0.1), ValueError, r"TrainConfig.b2=-0.1"),
    ("train", dict(batch_size="32"), TypeError, r"batch_size='32': must be a positive integer, "
     "got str"),
    ("train", dict(pack="yes"), TypeError, r"pack='yes': must be True or False"),
    ("train", dict(data_pipeline="tfdata"), ValueError,
     r"TrainConfig.data_pipeline='tfdata': must be one of \('auto', 'seqio', 'grain'\)"),
    ("train", dict(init_params="encoder"), TypeError, r"write \('encoder',\) for one name"),
    ("train", dict(init_partial="yes"), TypeError, r"init_partial='yes': must be True or False"),
    ("train", dict(num_beams=2.0), TypeError, r"num_beams=2.0: must be a positive integer"),
    ("model", dict(tie_embeddings=1), TypeError, r"tie_embeddings=1: must be True or False"),
    ("model", dict(dropout_rate=float("nan")), ValueError, r"dropout_rate=nan"),
    ("model", dict(num_layers=True), TypeError, r"num_layers=True"),
    ("mesh", dict(data=0), ValueError, r"MeshConfig.data=0: must be a positive size or -1"),
    ("mesh", dict(rules="zero"), ValueError, r"MeshConfig.rules='zero': must be one of"),
])
def test_bad_types_and_values_name_the_field(cls, changes, error, pattern):
  from synthesizer_jax.config import MeshConfig, TrainConfig

  build = {"train": TrainConfig, "model": sj.ModelConfig, "mesh": MeshConfig}[cls]
  with pytest.raises(error, match=pattern):
    build(**changes)


def test_warmup_longer_than_the_run_says_what_the_schedule_does():
  from synthesizer_jax.config import TrainConfig

  with pytest.warns(UserWarning, match=r"warmup_steps=100 > num_train_steps=40: the learning "
                    r"rate only warms up, to 40% of learning_rate"):
    TrainConfig(num_train_steps=40, warmup_steps=100)


def test_parse_config_checks_every_level_before_any_data_work():
  from synthesizer_jax.config import parse_config

  run = parse_config({"task": "fake_lm", "batch_size": 8, "model": {"d_model": 16, "num_heads": 2,
                                                                   "head_dim": 8},
                      "mesh": {"data": 1}})
  assert run.vocab_from_task and run.model_for(40).vocab_size == 40
  assert parse_config({"model": {"vocab_size": 64}}).model_for(40).vocab_size == 64
  with pytest.raises(ValueError, match=r"model.vocab_size=8 is smaller than the task"):
    parse_config({"model": {"vocab_size": 8}}).model_for(40)
  for bad, pattern in [({"learning_rte": 1}, "unknown TrainConfig fields"),
                       ({"model": {"nm_layers": 1}}, "unknown model config fields"),
                       ({"mesh": {"fsdpp": 1}}, "unknown mesh config fields"),
                       ({"model": {"norm": "batchnorm"}}, "ModelConfig.norm='batchnorm'")]:
    with pytest.raises(ValueError, match=pattern):
      parse_config({"task": "no_such_task_is_looked_up", **bad})
