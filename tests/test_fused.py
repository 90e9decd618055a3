"""Fused attention (attention/fused.py, blockwise.py) against the materialized reference.

Every kind with a dot-product form, in every model shape, on packed, padded and causal
batches: the blockwise kernel (blocks of 4, so rows span several blocks and the last one
is padded) gives the materialized outputs and parameter gradients in float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_KINDS, randomize, small_config

import synthesizer_jax as sj
from synthesizer_jax.attention import fused, pallas
from synthesizer_jax.attention.core import MASK_VALUE, DotForm, Mask, masked_softmax
from synthesizer_jax.attention.positions import Positions

FUSED_KINDS = [k for k in ALL_KINDS if sj.attention.has_dot_form(k)]
#: Kinds run in every shape; the others' forms are checked on the packed decoder alone (their
#: query, key and bias parts are the same code in every shape; this keeps the test short).
EVERY_SHAPE = ("dot", "dense", "random+dot")
SEG = np.array([[1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]], np.int32)
ENC_SEG = np.array([[1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0, 0],
                    [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]], np.int32)


def _tokens(seg, seed):
  rng = np.random.default_rng(seed)
  return np.where(seg > 0, rng.integers(1, 50, seg.shape), 0).astype(np.int32)


def _cases(kind):
  """(name, model, args, kwargs, valid rows of the output) for the three shapes."""
  dec, enc = _tokens(SEG, 1), _tokens(ENC_SEG, 2)
  padded = np.where(np.arange(11)[None, :] < np.array([[7], [11]]), enc[:, :11], 0)
  cases = [
      ("lm-packed", sj.DecoderLM, (dec,), dict(segment_ids=SEG), SEG > 0),
      ("encdec-packed", sj.EncoderDecoder, (enc, dec),
       dict(encoder_segment_ids=ENC_SEG, decoder_segment_ids=SEG), SEG > 0),
      ("lm-causal", sj.DecoderLM, (dec,), {}, np.ones_like(SEG, bool)),
      ("classifier-padded", lambda c: sj.EncoderClassifier(c, num_classes=3), (padded,), {},
       None),
  ]
  return cases if kind in EVERY_SHAPE else cases[:1]


def _outputs_and_grads(model, variables, args, kwargs, valid):
  weights = np.random.default_rng(0).standard_normal(
      jax.eval_shape(lambda: model.apply(variables, *args, **kwargs)).shape).astype(np.float32)
  if valid is not None:
    weights = weights * valid[..., None]

  def loss(params):
    out = model.apply({**variables, "params": params}, *args, **kwargs)
    return jnp.sum(out * weights), out

  (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  out = np.asarray(out)
  return (out if valid is None else out[valid]), grads


#: The materialized reference of (kind, case), computed once a process: the blockwise, Pallas
#: and Pallas TPU tests compare against the same one (outputs and gradients are a function of
#: the kind and the case alone: the same parameters are drawn for every implementation).
_REFERENCES = {}


def _run(kind, impl, make, args, kwargs, valid):
  cfg = small_config(self_attention=kind, cross_attention=kind, attention_impl=impl,
                     attention_block_size=4, num_layers=1)
  model = make(cfg)
  # Shapes only (randomize draws every leaf): no eager init, whose kernel calls the TPU
  # interpreter runs with callbacks that dispatch JAX ops of their own; an eager op queued on
  # the CPU meanwhile deadlocked 2 runs in 3 (jax 0.10.2).
  variables = randomize(jax.eval_shape(model.init, jax.random.key(0), *args, **kwargs))
  return _outputs_and_grads(model, variables, args, kwargs, valid)


def _compare(kind, impl, cases):
  for name, make, args, kwargs, valid in cases:
    if (kind, name) not in _REFERENCES:
      _REFERENCES[kind, name] = _run(kind, "materialized", make, args, kwargs, valid)
    (ref, ref_grads), (got, got_grads) = _REFERENCES[kind, name], _run(
        kind, impl, make, args, kwargs, valid)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5, err_msg=name)
    flat_ref = jax.tree_util.tree_leaves_with_path(ref_grads)
    flat_got = jax.tree.leaves(got_grads)
    assert len(flat_ref) == len(flat_got)
    for (path, r), g in zip(flat_ref, flat_got):
      np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-5,
                                 err_msg=f"{name} {jax.tree_util.keystr(path)}")


@pytest.mark.parametrize("kind", FUSED_KINDS)
def test_blockwise_equals_materialized(kind):
  _compare(kind, "blockwise", _cases(kind))


@pytest.mark.parametrize("kind", ["dot", "dense", "factorized_random", "dense+dot"])
def test_pallas_kernel_in_interpret_mode_equals_materialized(kind, monkeypatch):
  """JAX's Pallas GPU flash kernel, run by Pallas's interpreter on the CPU; cross-attention
  (encdec) takes the blockwise fallback."""
  monkeypatch.setattr(pallas, "INTERPRET", True)
  calls = []
  kernel = pallas.mha
  monkeypatch.setattr(pallas, "mha", lambda *a: calls.append(1) or kernel(*a))
  cases = _cases("dot")
  _compare(kind, "pallas", cases if kind == "dense+dot" else cases[:1])
  assert calls, "the Pallas kernel was never called"


@pytest.mark.parametrize("kind", ["dot", "dense", "random+dot", "fixed_random"])
def test_pallas_tpu_kernel_in_interpret_mode_equals_materialized(kind, monkeypatch):
  """JAX's Pallas TPU flash kernel, run by the TPU interpreter on the CPU: it takes a bias
  and separate query / key segment ids, so the random family and cross-attention run on it."""
  from jax.experimental.pallas import tpu as pltpu

  monkeypatch.setattr(pallas, "TPU_INTERPRET", True)
  calls = []
  kernel = pallas.tpu_flash
  monkeypatch.setattr(pallas, "tpu_flash", lambda *a: calls.append(a[2].causal) or kernel(*a))
  cases = _cases("dot")
  with pltpu.force_tpu_interpret_mode():
    _compare(kind, "pallas", cases[:2] if kind == "random+dot" else cases[:1])
  assert calls and (kind != "random+dot" or False in calls), "cross-attention not on the kernel"


def test_pallas_on_a_gpu_refuses_the_random_family(monkeypatch):
  monkeypatch.setattr(pallas, "INTERPRET", True)
  model = sj.DecoderLM(small_config(self_attention="random+dot", attention_impl="pallas"))
  with pytest.raises(ValueError, match=r"random family.*takes no bias.*'blockwise' or 'auto'"):
    model.init(jax.random.key(0), _tokens(SEG, 1))


def _kernel_inputs(seed=0, b=2, n=13, h=2, d=5, length=16):
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  return f(b, n, h, d), f(1, n, h, d), f(b, n, h, 3), f(h, length, length)


def _reference(form, v, mask, pos, n):
  s = jnp.einsum("bqhd,khd->bhqk", form.q_bqhd, form.k_bkhd[0])
  s = s + jnp.swapaxes(form.bias_hll[:, pos[:, :, None], pos[:, None, :]], 0, 1)
  return jnp.einsum("bhqk,bkhd->bqhd", masked_softmax(s, mask.dense(n, n)), v)


@pytest.mark.parametrize("offset", [0, 3])
def test_kernel_matches_reference_with_causal_offset_and_padding(offset):
  q, k, v, bias = _kernel_inputs()
  n = q.shape[1]
  valid = jnp.asarray(np.arange(n)[None, :] < np.array([[n], [9]]))
  pos = jnp.asarray(np.stack([np.arange(n), np.r_[np.arange(5), np.arange(8)]]), jnp.int32)
  mask = Mask(k_valid_bk=valid, q_offset=jnp.asarray(offset), causal=True)
  form = DotForm(q, k, bias)
  p = Positions.of(pos)
  got = sj.attention.blockwise.blockwise_attention(form, v, mask, p, p, n, block_q=4, block_k=3)
  np.testing.assert_allclose(got, _reference(form, v, mask, pos, n), rtol=1e-5, atol=1e-5)


def test_fully_masked_rows_are_uniform_like_the_materialized_path():
  q, k, v, bias = _kernel_inputs(n=6)
  valid = jnp.asarray(np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool))
  mask = Mask(valid, valid)
  pos = jnp.arange(6)[None, :]
  form = DotForm(q, k, bias)
  got = sj.attention.blockwise.blockwise_attention(form, v, mask, Positions.of(pos),
                                                    Positions.contiguous(6), 6, block_q=4,
                                                    block_k=4)
  np.testing.assert_allclose(got, _reference(form, v, mask, jnp.broadcast_to(pos, (2, 6)), 6),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[0, 4], v[0].mean(0), rtol=1e-5)  # MASK_VALUE everywhere
  assert MASK_VALUE > -np.inf


@pytest.mark.parametrize("kind", ["dot", "dense", "random", "dense+dot"])
def test_cudnn_wrapper_plumbing_on_xla(kind, monkeypatch):
  """The cuDNN call (padding to one head dim, bias gathering, mask) via XLA on the CPU."""
  monkeypatch.setattr(fused, "CUDNN_BACKEND", "xla")
  dec = _tokens(SEG, 1)
  outs = {}
  for impl in ("materialized", "cudnn"):
    cfg = small_config(self_attention=kind, attention_impl=impl, dtype="bfloat16")
    model = sj.DecoderLM(cfg)
    variables = randomize(model.init(jax.random.key(0), dec))
    for name, kw in (("packed", dict(segment_ids=SEG)), ("causal", {})):
      apply = jax.jit(lambda v, kw=kw, model=model: model.apply(v, dec, **kw))
      outs[impl, name] = np.asarray(apply(variables))
  for name in ("packed", "causal"):
    np.testing.assert_allclose(outs["cudnn", name][SEG > 0], outs["materialized", name][SEG > 0],
                               rtol=0.05, atol=0.05)


@pytest.mark.parametrize("overrides, match", [
    (dict(self_attention="factorized_dense", attention_impl="blockwise"), "factorized_dense"),
    (dict(self_attention="dense+factorized_dense", attention_impl="blockwise"), "materialized"),
    (dict(cross_attention="factorized_dense", attention_impl="cudnn", dtype="bfloat16"),
     "cross_attention"),
    (dict(attention_impl="blockwise", attention_dropout_rate=0.1), "attention_dropout_rate"),
    (dict(attention_impl="cudnn"), "bfloat16"),
    (dict(attention_impl="flash"), "must be one of"),
    (dict(attention_block_size=0), "attention_block_size"),
])
def test_unsupported_combinations_are_refused(overrides, match):
  with pytest.raises(ValueError, match=match):
    small_config(**overrides)


@pytest.mark.parametrize("impl, match", [
    ("cudnn", "needs an NVIDIA GPU.*'blockwise'"),
    ("pallas", "Pallas flash kernels for GPUs and TPUs.*'cpu'.*'blockwise'")])
def test_gpu_kernels_off_gpu_name_the_platform_and_the_alternative(impl, match):
  cfg = small_config(attention_impl=impl, dtype="bfloat16")
  tokens = _tokens(SEG, 1)
  model = sj.DecoderLM(cfg)
  with pytest.raises(ValueError, match=match):
    model.init(jax.random.key(0), tokens)


def test_auto_falls_back_instead_of_raising():
  tokens = _tokens(SEG, 1)
  for overrides in (dict(self_attention="factorized_dense"), dict(attention_dropout_rate=0.5)):
    model = sj.DecoderLM(small_config(**overrides))
    variables = model.init(jax.random.key(0), tokens)
    out = model.apply(variables, tokens, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert np.isfinite(np.asarray(out)).all()


def test_auto_picks_blockwise_for_large_logits_and_long_rows_on_cpu():
  common = dict(has_dot_form=True, mask_is_dense=False, dropout_active=False, decoding=False,
                wants_weights=False)
  assert fused.choose("auto", logits_bytes=1 << 20, k_len=512, **common) == "materialized"
  assert fused.choose("auto", logits_bytes=1 << 20, k_len=2048, **common) == "blockwise"
  assert fused.choose("auto", logits_bytes=1 << 20, k_len=2048, platform="gpu", **common) == (
      "materialized")
  assert fused.choose("auto", logits_bytes=fused.AUTO_BLOCKWISE_BYTES + 1, platform="gpu",
                      **common) == "blockwise"
  assert fused.choose("auto", logits_bytes=1 << 40, decoding=True,
                      **{k: v for k, v in common.items() if k != "decoding"}) == "materialized"
  assert fused.choose("auto", logits_bytes=1 << 40, **{**common, "has_dot_form": False}) == (
      "materialized")
  with pytest.raises(ValueError, match="Mask"):
    fused.choose("blockwise", logits_bytes=1, **{**common, "mask_is_dense": True})


def test_attention_weights_are_sown_with_a_fused_impl():
  cfg = small_config(self_attention="dense", attention_impl="blockwise")
  tokens = _tokens(SEG, 1)
  model = sj.DecoderLM(cfg)
  variables = model.init(jax.random.key(0), tokens)
  _, state = model.apply(variables, tokens, mutable=["intermediates"])
  weights = jax.tree.leaves(state["intermediates"])
  assert [w.shape for w in weights] == [(2, 2, 11, 11)] * 2


def test_prefill_blockwise_equals_materialized():
  """Left-padded prompts through the cache (q_offset, k_valid from the cache) both ways."""
  tokens = _tokens(SEG, 3)
  positions = np.array([np.arange(11) - 2, np.arange(11)], np.int32)  # row 0: 2 pad slots
  outs = {}
  for impl in ("materialized", "blockwise"):
    cfg = small_config(self_attention="dense+dot", attention_impl=impl, attention_block_size=4)
    model = sj.DecoderLM(cfg)
    variables = randomize(model.init(jax.random.key(0), tokens))
    cache = sj.decoding.init_cache(model, tokens.shape[0], 12)
    outs[impl] = np.asarray(model.apply({**variables, "cache": cache}, tokens, positions,
                                        mode="prefill", mutable=["cache"])[0])
  np.testing.assert_allclose(outs["blockwise"][:, 2:], outs["materialized"][:, 2:], rtol=1e-5,
                             atol=1e-5)
