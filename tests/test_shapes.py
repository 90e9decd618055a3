"""Model shapes: one registry owns them; a fourth shape is one class plus one `register` line,
and the loop, evaluation and checkpoint loading take it without any other change."""

import json
import os
import re

import fake_data
import jax.numpy as jnp
import numpy as np
import pytest

import synthesizer_jax as sj
from synthesizer_jax import loop, optim, shapes, steps
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig, TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=32,
             dropout_rate=0.0, self_attention="dense")


class PrefixLM(shapes.ModelShape):
  """Test-only shape: a decoder reads [inputs; targets] and is scored on the targets only."""

  name = "test_prefix_lm"
  model_class = sj.DecoderLM
  task_features = {"inputs": True, "targets": True}
  batch_features = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")
  predicts = False

  def dummy_inputs(self, lengths, batch=1):
    return (jnp.ones((batch, lengths["inputs"] + lengths["targets"]), jnp.int32),)

  def forward(self, model, variables, batch, *, deterministic, rngs=None):
    logits = model.apply(variables, batch["decoder_input_tokens"], deterministic=deterministic,
                         rngs=rngs)
    return logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"]


class PrefixData:
  """fake_data's vocabulary and sequences, served as one prefix-LM task."""

  TASKS = ("fake_prefix",)
  get_vocabulary = staticmethod(fake_data.get_vocabulary)

  @staticmethod
  def task_info(name, data_dir=None):
    return fake_data.TaskInfo(name, PrefixLM.name, "perplexity", f"{data_dir}/vocab/fake.model",
                              None, ("inputs", "targets"))

  @staticmethod
  def get_dataset(name, split, *, feature_lengths, batch_size, start_batch=0, repeat=True,
                  seed=0, shard_index=0, **_):
    n = feature_lengths["inputs"] + feature_lengths["targets"]
    offset = 0 if split == "train" else 10_000

    def gen():
      i = start_batch
      while repeat or i < 2:
        rng = np.random.default_rng([seed, shard_index, offset + i])
        seq = fake_data._sequences(rng, batch_size, n)
        weights = np.zeros_like(seq)
        weights[:, feature_lengths["inputs"]:] = 1
        yield {"decoder_input_tokens": fake_data._shift(seq), "decoder_target_tokens": seq,
               "decoder_loss_weights": weights}
        i += 1

    return gen()


@pytest.fixture
def prefix_lm():
  shape = shapes.register(PrefixLM())
  yield shape
  del shapes.SHAPES[shape.name]


def test_a_test_only_shape_trains_evaluates_and_loads(prefix_lm, tmp_path):
  cfg = TrainConfig(task="fake_prefix", data_dir=str(tmp_path), batch_size=4, inputs_length=8,
                    targets_length=8, num_train_steps=30, learning_rate=3e-2, warmup_steps=1,
                    decay="constant",
                    log_every=10, eval_every=100, checkpoint_every=30, eval_batches=2,
                    sample_prompt="")
  work = str(tmp_path / "work")
  result = loop.train_and_evaluate(RunConfig.build(MODEL, cfg, shd.MeshConfig(num_devices=1)),
                                   work, data=PrefixData, progress=False)
  assert result["step"] == 30 and "perplexity" in result["metrics"]
  with open(os.path.join(work, "metrics.jsonl")) as f:
    losses = [r["loss"] for r in map(json.loads, f) if r["split"] == "train"]
  assert len(losses) == 3 and losses[-1] < losses[0] - 0.3  # steps 10, 20, 30: it learns
  model, variables, saved = sj.load_checkpoint(work)
  assert saved["shape"] == "test_prefix_lm" and isinstance(model, sj.DecoderLM)
  assert model.apply(variables, np.ones((1, 16), np.int32)).shape == (1, 16, fake_data.VOCAB)


def test_a_model_of_another_shape_is_refused():
  model = sj.EncoderDecoder(sj.ModelConfig(vocab_size=32, **MODEL))
  tx = optim.make_optimizer(TrainConfig())
  with pytest.raises(TypeError, match="'lm' shape's model must be a DecoderLM, got EncoderDecoder"):
    steps.create_train_state(model, "lm", tx, {"targets": 8}, shd.make_mesh(
        shd.MeshConfig(num_devices=1)), shd.RULE_SETS["dp"])
  with pytest.raises(ValueError, match="unknown model shape 'lm2'; expected one of"):
    shapes.get("lm2")
  with pytest.raises(ValueError, match="already registered"):
    shapes.register(shapes.LanguageModel())


@pytest.mark.parametrize("name", ["lm", "encdec", "classifier"])
def test_each_shape_builds_its_model_and_dummy_inputs_fit_it(name):
  shape = shapes.get(name)
  model = shape.build(sj.ModelConfig(vocab_size=32, **MODEL), num_classes=3)
  shape.check_model(model)
  lengths = shape.feature_lengths(TrainConfig(inputs_length=12, targets_length=8))
  assert set(lengths) == set(shape.task_features)
  inputs = shape.dummy_inputs(lengths, batch=2)
  import jax

  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), *inputs))[0]
  last = 3 if name == "classifier" else 32
  assert out.shape[0] == 2 and out.shape[-1] == last


def test_no_module_outside_shapes_compares_shape_names():
  """The training, evaluation, checkpoint and data code ask the shape object instead."""
  pattern = re.compile(r"""(?<![\w.])shape(\.name)?\s*(==|!=)\s*["']|(?<![\w.])shape(\.name)?"""
                       r"""\s+in\s+\(\s*["']|(==|!=)\s*["'](lm|encdec|classifier)["']""")
  files = ["loop.py", "run.py", "steps.py", "evaluation.py", "checkpointing.py", "optim.py"]
  data_dir = os.path.join(REPO, "synthesizer_jax", "data")
  files += [os.path.join("data", f) for f in os.listdir(data_dir) if f.endswith(".py")]
  for name in files:
    with open(os.path.join(REPO, "synthesizer_jax", name)) as f:
      hits = [line.strip() for line in f if pattern.search(line)]
    assert not hits, f"{name} compares shape names: {hits}"
