"""Training steps: loss goes down for every model shape, accumulation is exact, losses match
NumPy, schedules, bf16, and bad configs fail clearly."""

import fake_data
import jax
import numpy as np
import pytest

import synthesizer_jax as sj
from synthesizer_jax import optim, shapes, steps
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import TrainConfig

LENGTHS = {"inputs": 16, "targets": 16}


def tiny_model(shape, **overrides):
  cfg = sj.ModelConfig(**{**dict(vocab_size=fake_data.VOCAB, d_model=16, num_heads=2, head_dim=8,
                                 mlp_dim=32, num_layers=1, max_len=16, dropout_rate=0.0,
                                 self_attention="dense"), **overrides})
  if shape == "lm":
    return sj.DecoderLM(cfg)
  if shape == "encdec":
    return sj.EncoderDecoder(cfg)
  return sj.EncoderClassifier(cfg, num_classes=2)


TASK = {"lm": "fake_lm", "encdec": "fake_encdec", "classifier": "fake_classify"}


def batch_for(shape, n=8, seed=0, pack=True):
  rng = np.random.default_rng(seed)
  return fake_data.make_batch(TASK[shape], rng, n, LENGTHS, pack and shape != "classifier")


def one_device_mesh():
  return shd.make_mesh(shd.MeshConfig(data=1), devices=shd.jax.devices()[:1])


def run_steps(shape, cfg, model=None, num_steps=8, mesh=None, rules_name="fsdp", batch=None):
  model = model or tiny_model(shape)
  mesh = mesh or one_device_mesh()
  rules = shd.RULE_SETS[rules_name]
  tx = optim.make_optimizer(cfg)
  state, shardings = steps.create_train_state(model, shape, tx,
                                              shapes.get(shape).feature_lengths(cfg),
                                              mesh, rules, seed=cfg.seed)
  step = steps.jit_train_step(model, shape, tx, cfg, mesh, rules, shardings)
  batch = batch_for(shape) if batch is None else batch
  losses = []
  for _ in range(num_steps):
    state, metrics = step(state, shd.global_batch(batch, mesh))
    losses.append(float(metrics["loss"]))
  return state, losses


def config(**kw):
  base = dict(batch_size=8, inputs_length=16, targets_length=16, learning_rate=1e-2,
              warmup_steps=1, num_train_steps=100)
  return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("shape", ["lm", "encdec", "classifier"])
def test_few_steps_reduce_loss(shape):
  _, losses = run_steps(shape, config())
  assert losses[-1] < losses[0] - 0.1, losses


def test_adafactor_label_smoothing_z_loss_reduce_loss():
  _, losses = run_steps("lm", config(optimizer="adafactor", label_smoothing=0.1, z_loss=1e-3))
  assert losses[-1] < losses[0] - 0.1, losses


def test_bfloat16_compute_trains():
  _, losses = run_steps("lm", config(), model=tiny_model("lm", dtype="bfloat16"), num_steps=6)
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_grad_accumulation_equals_full_batch():
  full, _ = run_steps("lm", config(), num_steps=2)
  accum, _ = run_steps("lm", config(grad_accum_steps=4), num_steps=2)
  for a, b in zip(shd.jax.tree.leaves(full.params), shd.jax.tree.leaves(accum.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("shape", ["lm", "encdec", "classifier"])
def test_loss_chunks_give_the_whole_batchs_loss_and_gradients(shape, monkeypatch):
  """loss_chunk=5 over 16 targets (the last chunk padded): same losses and updates; the
  classifier, which has no vocabulary logits, ignores it."""
  kw = dict(label_smoothing=0.1, z_loss=1e-3)
  whole, whole_losses = run_steps(shape, config(**kw), num_steps=3)
  traced, chunked_loss_sums = [], steps.chunked_loss_sums
  monkeypatch.setattr(steps, "chunked_loss_sums", lambda *a, **k: (
      traced.append(a[4]), chunked_loss_sums(*a, **k))[1])
  chunked, chunked_losses = run_steps(shape, config(loss_chunk=5, **kw), num_steps=3)
  assert traced == ([] if shape == "classifier" else [5])
  np.testing.assert_allclose(chunked_losses, whole_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(chunked.params)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-5, atol=2e-6)


def test_chunked_loss_sums_and_gradients_equal_the_unchunked_ones():
  rng = np.random.default_rng(0)
  hidden = rng.standard_normal((2, 7, 4)).astype(np.float32)
  w_out = rng.standard_normal((4, 9)).astype(np.float32)
  targets = rng.integers(0, 9, (2, 7))
  weights = (rng.random((2, 7)) > 0.3).astype(np.float32)

  def sums(w, h, chunk):
    if chunk:
      return steps.chunked_loss_sums(lambda x: x @ w, h, targets, weights, chunk, 0.1, 0.01)
    return steps.loss_sums(h @ w, targets, weights, 0.1, 0.01)

  want = sums(w_out, hidden, 0)
  for chunk in (1, 3, 7):
    got = sums(w_out, hidden, chunk)
    for key in steps.SUM_KEYS:
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=f"{key}, chunk {chunk}")
    grads = jax.grad(lambda w, h, c=chunk: sums(w, h, c)["loss"], argnums=(0, 1))
    for g, g0 in zip(grads(w_out, hidden), jax.grad(
        lambda w, h: sums(w, h, 0)["loss"], argnums=(0, 1))(w_out, hidden)):
      np.testing.assert_allclose(g, g0, rtol=1e-5, atol=1e-6)


def test_loss_sums_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((2, 3, 5)).astype(np.float32)
  targets = rng.integers(0, 5, (2, 3))
  weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  ls, zl = 0.2, 0.01
  out = steps.loss_sums(logits, targets, weights, ls, zl)
  log_z = np.log(np.exp(logits).sum(-1))
  log_p = logits - log_z[..., None]
  q = np.full((2, 3, 5), ls / 4)
  np.put_along_axis(q, targets[..., None], 1 - ls, -1)
  entropy = -(q * np.log(q)).sum(-1)
  ce = -(q * log_p).sum(-1) - entropy + zl * log_z ** 2
  nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(out["loss"], (ce * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(out["nll"], (nll * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(out["correct"], ((logits.argmax(-1) == targets) * weights).sum())
  assert float(out["weight"]) == 3.0


@pytest.mark.parametrize("decay", ["rsqrt", "cosine", "linear", "constant"])
def test_schedule_warms_up_then_decays(decay):
  cfg = config(learning_rate=1.0, warmup_steps=10, num_train_steps=110, decay=decay,
               min_learning_rate_fraction=0.1)
  lr = optim.learning_rate_schedule(cfg)
  np.testing.assert_allclose([float(lr(0)), float(lr(4))], [0.1, 0.5], rtol=1e-6)
  np.testing.assert_allclose(float(lr(10)), 1.0, rtol=1e-6)
  end = {"rsqrt": np.sqrt(10 / 110), "cosine": 0.1, "linear": 0.1, "constant": 1.0}[decay]
  np.testing.assert_allclose(float(lr(110)), end, rtol=1e-5)


def test_weight_decay_skips_vectors():
  cfg = config(weight_decay=0.5, learning_rate=1e-3, clip_norm=0.0)
  tx = optim.make_optimizer(cfg)
  params = {"w": np.ones((2, 2), np.float32), "scale": np.ones((2,), np.float32)}
  zeros = shd.jax.tree.map(np.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert np.all(np.asarray(updates["w"]) < 0) and np.all(np.asarray(updates["scale"]) == 0)


@pytest.mark.parametrize("field,value,match", [
    ("optimizer", "sgd", "TrainConfig.optimizer"),
    ("decay", "exp", "TrainConfig.decay"),
    ("learning_rate", 0.0, "TrainConfig.learning_rate"),
    ("label_smoothing", 1.0, "TrainConfig.label_smoothing"),
    ("batch_size", 0, "TrainConfig.batch_size"),
    ("grad_accum_steps", 3, "multiple of grad_accum_steps"),
])
def test_bad_train_config_values(field, value, match):
  with pytest.raises(ValueError, match=match):
    config(**{field: value})


def test_unknown_config_field():
  with pytest.raises(ValueError, match="unknown TrainConfig fields"):
    TrainConfig.from_dict({"learning_rte": 1.0})


def test_check_batch_names_missing_features():
  with pytest.raises(ValueError, match="decoder_loss_weights"):
    steps.check_batch({"decoder_input_tokens": 0, "decoder_target_tokens": 0}, "lm")


def test_fixed_random_constants_carried_not_trained():
  model = tiny_model("lm", self_attention="fixed_random")
  state, _ = run_steps("lm", config(), model=model, num_steps=2)
  assert shd.jax.tree.leaves(state.constants)
  leaves = shd.jax.tree.leaves(state.opt_state)
  n_const = sum(x.size for x in shd.jax.tree.leaves(state.constants))
  assert sum(x.size for x in leaves) < 3 * sum(x.size for x in shd.jax.tree.leaves(state.params)) \
      + n_const


def test_batch_tokens_counts_what_each_shape_learns_from():
  """Classifier: its non-padding inputs (a label 0 example counts); LM: scored targets."""
  cls = {"encoder_input_tokens": np.array([[5, 6, 0], [7, 0, 0]]), "targets": np.array([0, 0])}
  assert shapes.get("classifier").batch_tokens(cls) == 3
  lm = {"decoder_loss_weights": np.array([[1, 1, 0], [1, 0, 0]])}
  assert shapes.get("lm").batch_tokens(lm) == 3


def test_check_batch_refuses_token_ids_outside_the_vocabulary():
  batch = {"decoder_input_tokens": np.array([[1, 2, 60]]),
           "decoder_target_tokens": np.ones((1, 3), np.int32),
           "decoder_loss_weights": np.ones((1, 3), np.float32)}
  with pytest.raises(ValueError, match="'decoder_input_tokens' holds token id 60.*vocab_size=50"):
    steps.check_batch(batch, "lm", vocab_size=50)
  steps.check_batch(batch, "lm", vocab_size=61)


def test_jitted_step_counts_out_of_vocabulary_ids_and_drops_the_update():
  """Under jit no host check runs: the step reports the bad ids and leaves the state as it was."""
  model = tiny_model("lm")
  cfg = config()
  mesh = one_device_mesh()
  rules = shd.RULE_SETS["fsdp"]
  tx = optim.make_optimizer(cfg)
  state, shardings = steps.create_train_state(model, "lm", tx, {"targets": 16}, mesh, rules)
  before = jax.tree.map(np.asarray, state.params)
  step = steps.jit_train_step(model, "lm", tx, cfg, mesh, rules, shardings)
  batch = dict(batch_for("lm"))
  tokens = np.array(batch["decoder_input_tokens"])
  tokens[0, 3], tokens[1, 5] = model.cfg.vocab_size, -1
  state, metrics = step(state, shd.global_batch({**batch, "decoder_input_tokens": tokens}, mesh))
  assert int(metrics["bad_token_ids"]) == 2 and int(metrics["nonfinite"]) == 1
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, state.params))
  _, metrics = step(state, shd.global_batch(batch, mesh))
  assert int(metrics["bad_token_ids"]) == 0 and int(metrics["nonfinite"]) == 0
