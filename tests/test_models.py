"""The three model shapes: golden shapes, causality, packing == unpacked, padding, sown weights."""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_KINDS, randomize, small_config, unbox

import synthesizer_jax as sj

LOGICAL_AXES = {"batch", "length", "embed", "heads", "head_dim", "mlp", "vocab", "syn_len",
                "syn_rank", None}


def _tokens(shape, seed=0, low=1):
  return np.random.default_rng(seed).integers(low, 50, shape).astype(np.int32)


def _init(model, *args):
  return model.init(jax.random.key(0), *args)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_shapes_and_sown_weights(kind, maybe_jit):
  cfg = small_config(self_attention=kind)
  enc, dec = _tokens((2, 9)), _tokens((2, 6), 1)
  cases = [(sj.DecoderLM(cfg), (dec,), (2, 6, 50), [(2, 2, 6, 6)] * 2),
           (sj.EncoderDecoder(cfg), (enc, dec), (2, 6, 50), [(2, 2, 9, 9)] * 2
            + [(2, 2, 6, 6)] * 2 + [(2, 2, 6, 9)] * 2),
           (sj.EncoderClassifier(cfg, num_classes=3), (enc,), (2, 3), [(2, 2, 9, 9)] * 2)]
  for model, args, out_shape, weight_shapes in cases:
    variables = _init(model, *args)
    out, state = maybe_jit(lambda v, *a, m=model: m.apply(v, *a, mutable=["intermediates"]))(
        variables, *args)
    assert out.shape == out_shape and out.dtype == jnp.float32
    sown = jax.tree.leaves(state["intermediates"])
    assert sorted(w.shape for w in sown) == sorted(weight_shapes)
    for w in sown:
      np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_parameter_has_logical_axes(kind):
  cfg = small_config(self_attention=kind, cross_attention=kind)
  variables = _init(sj.EncoderDecoder(cfg), _tokens((1, 5)), _tokens((1, 5)))
  leaves = jax.tree.leaves(variables, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), type(leaf)
    assert len(leaf.names) == leaf.value.ndim
    assert set(leaf.names) <= LOGICAL_AXES, leaf.names


def _lm_logits(model, variables, tokens, **kw):
  return np.asarray(model.apply(variables, tokens, **kw))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_decoder_lm_is_causal(kind, maybe_jit):
  """Perturbing token t changes no logit before t (and does change the logit at t)."""
  cfg = small_config(self_attention=kind)
  model = sj.DecoderLM(cfg)
  tokens = _tokens((2, 10))
  variables = _init(model, tokens)
  fn = maybe_jit(lambda v, t: model.apply(v, t))
  base = np.asarray(fn(variables, tokens))
  for t in (3, 7):
    changed = tokens.copy()
    changed[:, t] = (changed[:, t] % 49) + 1
    out = np.asarray(fn(variables, changed))
    np.testing.assert_allclose(out[:, :t], base[:, :t], rtol=1e-5, atol=1e-5)
    assert np.abs(out[:, t] - base[:, t]).max() > 1e-4


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_decoder_lm_gradient_causality(kind):
  """d logits[:, i] / d embedding[token_j] == 0 for j > i (untied: rows are inputs only)."""
  cfg = small_config(self_attention=kind, num_layers=1, tie_embeddings=False)
  model = sj.DecoderLM(cfg)
  tokens = _tokens((1, 8))
  variables = _init(model, tokens)
  i = 4

  def out_at_i(emb):
    v = jax.tree.map(lambda x: x, nn.meta.unbox(variables))
    v["params"]["embed"]["embedding"] = emb
    return model.apply(v, tokens)[0, i].sum()

  emb = nn.meta.unbox(variables)["params"]["embed"]["embedding"]
  grad = np.asarray(jax.grad(out_at_i)(emb))
  future = np.setdiff1d(tokens[0, i + 1:], tokens[0, :i + 1])
  assert len(future)
  assert np.abs(grad[future]).max() == 0.0
  assert np.abs(grad[tokens[0, :i + 1]]).max() > 0.0


def _packed(seqs, row_len):
  tokens = np.zeros((1, row_len), np.int32)
  seg = np.zeros((1, row_len), np.int32)
  pos = np.zeros((1, row_len), np.int32)
  start = 0
  for s, seq in enumerate(seqs, 1):
    n = len(seq)
    tokens[0, start:start + n], seg[0, start:start + n] = seq, s
    pos[0, start:start + n] = np.arange(n)
    start += n
  return tokens, seg, pos


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_decoder_lm_packing_equals_unpacked(kind, maybe_jit):
  cfg = small_config(self_attention=kind)
  model = sj.DecoderLM(cfg)
  seqs = [_tokens(5, 1), _tokens(4, 2)]
  tokens, seg, pos = _packed(seqs, 11)
  variables = _init(model, tokens)
  fn = maybe_jit(lambda v, t, p, s: model.apply(v, t, p, s))
  packed = np.asarray(fn(variables, tokens, pos, seg))
  # Positions derived from segment ids when omitted give the same answer (padding aside).
  derived = np.asarray(model.apply(variables, tokens, segment_ids=seg))
  real = seg[0] > 0
  np.testing.assert_allclose(derived[:, real], packed[:, real], rtol=1e-5, atol=1e-5)
  start = 0
  for seq in seqs:
    alone = np.asarray(model.apply(variables, seq[None]))
    np.testing.assert_allclose(packed[0, start:start + len(seq)], alone[0], rtol=1e-4, atol=1e-4)
    start += len(seq)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_encoder_decoder_packing_equals_unpacked(kind):
  cfg = small_config(self_attention=kind, cross_attention=kind)
  model = sj.EncoderDecoder(cfg)
  srcs, tgts = [_tokens(6, 1), _tokens(3, 2)], [_tokens(4, 3), _tokens(5, 4)]
  enc, enc_seg, enc_pos = _packed(srcs, 10)
  dec, dec_seg, dec_pos = _packed(tgts, 11)
  variables = _init(model, enc, dec)
  packed = np.asarray(jax.jit(model.apply)(variables, enc, dec, enc_pos, dec_pos, enc_seg, dec_seg))
  start = 0
  for src, tgt in zip(srcs, tgts):
    alone = np.asarray(model.apply(variables, src[None], tgt[None]))
    np.testing.assert_allclose(packed[0, start:start + len(tgt)], alone[0], rtol=1e-4, atol=1e-4)
    start += len(tgt)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_encoder_decoder_decoder_is_causal_and_reads_source(kind):
  cfg = small_config(self_attention=kind, cross_attention=kind)
  model = sj.EncoderDecoder(cfg)
  enc, dec = _tokens((1, 7)), _tokens((1, 6), 1)
  variables = _init(model, enc, dec)
  base = np.asarray(model.apply(variables, enc, dec))
  changed = dec.copy()
  changed[0, 4] = changed[0, 4] % 49 + 1
  out = np.asarray(model.apply(variables, enc, changed))
  np.testing.assert_allclose(out[:, :4], base[:, :4], rtol=1e-5, atol=1e-5)
  enc2 = enc.copy()
  enc2[0, -1] = enc2[0, -1] % 49 + 1  # the last source token is visible to every target position
  out = np.asarray(model.apply(variables, enc2, dec))
  assert np.abs(out[0, 0] - base[0, 0]).max() > 1e-5


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_classifier_ignores_padding(kind, maybe_jit):
  cfg = small_config(self_attention=kind)
  model = sj.EncoderClassifier(cfg, num_classes=4)
  tokens = _tokens((2, 6))
  padded = np.concatenate([tokens, np.zeros((2, 4), np.int32)], axis=1)
  variables = _init(model, padded)
  fn = maybe_jit(lambda v, t: model.apply(v, t))
  np.testing.assert_allclose(np.asarray(fn(variables, padded)), np.asarray(fn(variables, tokens)),
                             rtol=1e-4, atol=1e-5)
  garbage = padded.copy()
  garbage[:, 6:] = 0
  np.testing.assert_array_equal(np.asarray(fn(variables, garbage)),
                                np.asarray(fn(variables, padded)))


@pytest.mark.parametrize("model_fn", [sj.DecoderLM, sj.EncoderClassifier])
def test_sequence_longer_than_max_len_is_an_error(model_fn):
  cfg = small_config(self_attention="dense")
  tokens = _tokens((1, cfg.max_len + 1))
  with pytest.raises(ValueError, match=r"sequence length 13 exceeds max_len=12"):
    model_fn(cfg).init(jax.random.key(0), tokens)
  with pytest.raises(ValueError, match="max_len"):
    jax.jit(lambda t: model_fn(cfg).init(jax.random.key(0), t))(tokens)
  # dot has no table of positions: any length works.
  dot = small_config(self_attention="dot")
  assert model_fn(dot).init(jax.random.key(0), tokens)


def test_dropout_is_active_only_when_not_deterministic():
  cfg = small_config(self_attention="random+dot", dropout_rate=0.3, attention_dropout_rate=0.3)
  model = sj.DecoderLM(cfg)
  tokens = _tokens((2, 8))
  variables = _init(model, tokens)
  det = np.asarray(model.apply(variables, tokens))
  np.testing.assert_array_equal(det, np.asarray(model.apply(variables, tokens)))
  rngs = {"dropout": jax.random.key(1)}
  noisy = np.asarray(model.apply(variables, tokens, deterministic=False, rngs=rngs))
  assert np.abs(noisy - det).max() > 1e-3


@pytest.mark.parametrize("kind", ["random", "fixed_random", "factorized_random"])
def test_attention_dropout_masks_differ_per_example_on_the_batch_free_path(kind):
  """Identical rows, attention dropout only: each row draws its own mask, so rows differ."""
  cfg = small_config(self_attention=kind, dropout_rate=0.0, attention_dropout_rate=0.5)
  model = sj.DecoderLM(cfg)
  tokens = np.repeat(_tokens((1, 8)), 4, axis=0)
  variables = _init(model, tokens)
  noisy = np.asarray(model.apply(variables, tokens, deterministic=False,
                                 rngs={"dropout": jax.random.key(1)}))
  for row in noisy[1:]:
    assert np.abs(row - noisy[0]).max() > 1e-3


def test_untied_embeddings_add_an_output_projection():
  tokens = _tokens((1, 4))
  tied = unbox(_init(sj.DecoderLM(small_config()), tokens))["params"]
  untied = unbox(_init(sj.DecoderLM(small_config(tie_embeddings=False)), tokens))["params"]
  assert "logits_dense" not in tied
  assert untied["logits_dense"]["kernel"].shape == (16, 50)


def _intermediate_shapes(fn, *args):
  jaxpr = jax.make_jaxpr(fn)(*args)
  shapes = set()

  def visit(jx):
    for eqn in jx.eqns:
      shapes.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)
  visit(jaxpr.jaxpr)
  return shapes


@pytest.mark.parametrize("kind,shared", [("random", True), ("fixed_random", True),
                                         ("factorized_random", True), ("dot", False),
                                         ("dense", False)])
def test_random_family_builds_no_batched_attention_matrix(kind, shared):
  """Unpacked decoder: softmax(R) is computed once, never as [batch, heads, n, n]."""
  cfg = small_config(self_attention=kind)
  model = sj.DecoderLM(cfg)
  tokens = _tokens((4, 10))
  variables = _init(model, tokens)
  shapes = _intermediate_shapes(lambda v, t: model.apply(v, t), variables, tokens)
  assert ((4, cfg.num_heads, 10, 10) in shapes) != shared
  if shared:
    assert (1, cfg.num_heads, 10, 10) in shapes


@pytest.mark.parametrize("bad", [-1, 50, 10**6])
def test_token_ids_outside_the_vocabulary_never_pass_silently(bad):
  """Eagerly a ValueError naming the id and the fix; under jit NaN, never a wrapped-around id."""
  cfg = small_config()
  tokens = _tokens((2, 6))
  variables = _init(sj.DecoderLM(cfg), tokens)
  tokens[1, 3] = bad
  for model, args in ((sj.DecoderLM(cfg), (tokens,)),
                      (sj.EncoderDecoder(cfg), (tokens, _tokens((2, 4)))),
                      (sj.EncoderClassifier(cfg, 2), (tokens,))):
    variables = _init(model, *(np.abs(a) % 50 for a in args))
    with pytest.raises(ValueError, match=f"token id {bad}, outside \\[0, vocab_size=50\\)"):
      model.apply(variables, *args)
    out = np.asarray(jax.jit(model.apply)(variables, *args))
    assert np.isnan(out[1]).any()  # the bad row is NaN (the non-finite guard stops training)
  with pytest.raises(ValueError, match="prompt holds token id"):
    sj.generate(sj.DecoderLM(cfg), _init(sj.DecoderLM(cfg), np.abs(tokens) % 50), tokens[1:, :4],
                max_new_tokens=2)


@pytest.mark.parametrize("norm", ["rmsnorm", "layernorm"])
def test_norms_match_numpy(norm):
  from synthesizer_jax.layers import NORMS

  x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
  layer = NORMS[norm]()
  variables = randomize(layer.init(jax.random.key(0), x))
  p = variables["params"]
  if norm == "layernorm":
    centred = x - x.mean(-1, keepdims=True)
    expected = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-6) * p["scale"]
    expected = expected + p["bias"]
  else:
    expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * p["scale"]
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_fan_in_init_counts_only_the_input_axes():
  """A per-head kernel [embed, heads, head_dim] has the std of one [embed, h * d] matrix."""
  from synthesizer_jax.layers import fan_in_init

  w = np.asarray(fan_in_init(0)(jax.random.key(0), (256, 8, 64)))
  np.testing.assert_allclose(w.std(), 256 ** -0.5, rtol=0.05)
  w = np.asarray(fan_in_init((0, 1))(jax.random.key(0), (8, 64, 256)))
  np.testing.assert_allclose(w.std(), 512 ** -0.5, rtol=0.05)
