"""Evaluation's decoding: greedy predictions equal a step-by-step argmax of the full model."""

import flax.linen as nn
import jax
import numpy as np

import synthesizer_jax as sj
from synthesizer_jax import evaluation


def test_predict_tokens_is_greedy_argmax_of_full_forward():
  cfg = sj.ModelConfig(vocab_size=16, d_model=16, num_heads=2, head_dim=8, mlp_dim=32,
                       num_layers=1, max_len=8, dropout_rate=0.0, self_attention="dense")
  model = sj.EncoderDecoder(cfg)
  enc = np.random.default_rng(0).integers(2, 16, (3, 8)).astype(np.int32)
  variables = nn.meta.unbox(model.init(jax.random.key(1), enc, enc))
  # Larger random weights so predictions differ between steps and rows.
  variables = jax.tree.map(lambda x: x * 3.0, variables)
  got = evaluation.predict_tokens(model, variables, enc, 8, method="greedy")
  assert got.shape == (3, 7)  # the start token takes one of the 8 positions
  dec = np.zeros((3, 8), np.int32)
  want = np.zeros((3, 7), np.int32)
  done = np.zeros(3, bool)
  for t in range(7):
    logits = np.asarray(model.apply(variables, enc, dec))
    nxt = logits[:, t].argmax(-1)
    want[:, t] = np.where(done, 0, nxt)
    done |= nxt == evaluation.EOS_ID
    dec[:, t + 1] = nxt
  np.testing.assert_array_equal(got, want)


def test_predict_tokens_defaults_to_beam_search():
  """Seq2seq metrics decode with beam search (beam 4, alpha 0.6) unless told otherwise."""
  from synthesizer_jax.config import TrainConfig

  cfg = TrainConfig()
  assert (cfg.decode_method, cfg.num_beams, cfg.length_penalty) == ("beam", 4, 0.6)
  model_cfg = sj.ModelConfig(vocab_size=16, d_model=16, num_heads=2, head_dim=8, mlp_dim=32,
                             num_layers=1, max_len=8, dropout_rate=0.0, self_attention="dense")
  model = sj.EncoderDecoder(model_cfg)
  enc = np.random.default_rng(0).integers(2, 16, (2, 8)).astype(np.int32)
  variables = jax.tree.map(lambda x: x * 3.0, nn.meta.unbox(model.init(jax.random.key(1), enc,
                                                                        enc)))
  got = evaluation.predict_tokens(model, variables, enc, 8)
  want = sj.generate(model, variables, np.zeros((2, 1), np.int32), encoder_tokens=enc,
                     max_new_tokens=7, method="beam", num_beams=4, alpha=0.6,
                     eos_id=evaluation.EOS_ID)
  np.testing.assert_array_equal(got, np.asarray(want.tokens))


def test_a_classifiers_accuracy_covers_the_evaluated_rows_not_only_the_predicted_ones(tmp_path):
  """eval_batches > predict_batches: "accuracy" is over every evaluated row (as "examples"
  says); the decoded metrics say how many rows they saw."""
  import fake_data

  from synthesizer_jax import metrics as metrics_lib
  from synthesizer_jax import run as run_lib
  from synthesizer_jax import sharding as shd
  from synthesizer_jax.config import RunConfig, TrainConfig

  cfg = TrainConfig(task="fake_classify", data_dir=str(tmp_path), batch_size=4,
                    inputs_length=16, targets_length=16, eval_batches=3, predict_batches=1,
                    sample_prompt="")
  model = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
               dropout_rate=0.0, self_attention="dot")
  run = run_lib.setup(RunConfig.build(model, cfg, shd.MeshConfig(num_devices=1)), data=fake_data)
  state = run_lib.initial_state(run, log=lambda *_: None)
  got = evaluation.evaluate(run, state)["metrics"]
  forced = evaluation.teacher_forced(run, state, run.eval_batches("validation"), 3)
  _, targets, preds = evaluation.predictions(run, state, run.eval_batches("validation"), 1)
  assert got["accuracy"] == forced["accuracy"]
  assert got["examples"] == forced["examples"] == 12 and got["predicted_examples"] == 4
  assert got["f1"] == metrics_lib.f1(targets, preds)["f1"]
