"""Every attention kind against a NumPy version of the paper's formula, and its invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_KINDS, MIXTURES, randomize, small_config, unbox

import synthesizer_jax as sj
from synthesizer_jax.attention.core import make_mask
from synthesizer_jax.attention.positions import Positions

B, N = 2, 7
CFG = small_config()


def np_relu(x):
  return np.maximum(x, 0.0)


def np_two_layer(p, x_bqe):
  """Paper eq. 1 per head: F(x) = W2 relu(W1 x + b1) + b2 -> [b, q, h, out]."""
  hid = np_relu(np.einsum("bqe,ehf->bqhf", x_bqe, p["w1"]) + p["b1"])
  return np.einsum("bqhf,hfo->bqho", hid, p["w2"]) + p["b2"]


def np_logits(kind, p, consts, x_bqe, x_bke, pos_q, pos_k):
  """Logits [b, h, q, k] of one single kind, written from the paper's formulas."""
  if kind == "dot":
    q = np.einsum("bqe,ehd->bhqd", x_bqe, p["query"]["kernel"])
    k = np.einsum("bke,ehd->bhkd", x_bke, p["key"]["kernel"])
    return q @ np.swapaxes(k, -1, -2) / np.sqrt(CFG.head_dim)
  if kind in ("random", "fixed_random", "factorized_random"):
    if kind == "random":
      r = p["R"]
    elif kind == "fixed_random":
      r = consts["R"]
    else:
      r = p["R1"] @ np.swapaxes(p["R2"], -1, -2)  # R1 R2^T per head
    return np.stack([r[:, pos_q[b]][:, :, pos_k[b]] for b in range(len(pos_q))])
  if kind == "dense":
    table = np_two_layer(p["f"], x_bqe)  # [b, q, h, max_len]
  elif kind == "factorized_dense":
    a, b_ = CFG.factor_sizes
    h_a = np.tile(np_two_layer(p["f_a"], x_bqe), (1, 1, 1, b_))       # H_A: tile a-vector b times
    h_c = np.repeat(np_two_layer(p["f_c"], x_bqe), a, axis=-1)  # H_B: repeat entries a times
    table = h_a * h_c
  else:
    raise AssertionError(kind)
  table = np.transpose(table, (0, 2, 1, 3))
  return np.stack([table[b][:, :, pos_k[b]] for b in range(len(pos_k))])


def np_mixture_logits(kind, p, consts, *args):
  parts = sj.parse_kind(kind)
  if len(parts) == 1:
    return np_logits(kind, p.get(kind, {}), consts.get(kind, {}), *args)
  g = p["mixture"]["gate_logits"]
  w = np.exp(g - g.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  mp, mc = p["mixture"], consts.get("mixture", {})
  return sum(w[None, :, c, None, None] * np_logits(part, mp.get(part, {}), mc.get(part, {}), *args)
             for c, part in enumerate(parts))


def np_softmax(logits, mask):
  logits = np.where(mask, logits, -1e30)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _inputs(seed=0, n=N):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((B, n, CFG.d_model)).astype(np.float32)
  # Non-trivial positions (as in a packed row) so gathering by position is exercised.
  pos = np.stack([np.arange(n), np.concatenate([np.arange(3), np.arange(n - 3)])]).astype(np.int32)
  return x, pos


def _init(kind, x, pos, mask=None):
  layer = sj.Attention(CFG.attention(kind))
  variables = layer.init(jax.random.key(0), x, x, mask, pos, pos)
  return layer, variables


def _run(maybe_jit, layer, variables, x, pos, mask):
  def fn(v, x, pos, mask):
    return layer.apply(v, x, x, mask, pos, pos, mutable=["intermediates"])
  out, state = maybe_jit(fn)(variables, x, pos, mask)
  (weights,) = state["intermediates"]["attention_weights"]
  return np.asarray(out), np.asarray(weights)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_matches_numpy_formula(kind, maybe_jit):
  x, pos = _inputs()
  seg = np.array([[1] * N, [1, 1, 1] + [2] * (N - 3)])
  valid = np.ones((B, N), bool)
  mask = np.asarray(make_mask(valid, valid, seg, seg, causal=True))
  layer, variables = _init(kind, x, pos, mask)
  variables = randomize(variables)
  out, weights = _run(maybe_jit, layer, variables, x, pos, mask)

  p, consts = variables["params"], variables.get("constants", {})
  logits = np_mixture_logits(kind, p, consts, x, x, pos, pos)
  ref_w = np_softmax(logits, mask)
  v = np.einsum("bke,ehd->bkhd", x, p["value"]["kernel"])
  ref_out = np.einsum("bhqk,bkhd,hde->bqe", ref_w, v, p["out"]["kernel"])
  np.testing.assert_allclose(weights, ref_w, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["random", "fixed_random", "factorized_random"])
def test_random_family_ignores_input(kind, maybe_jit):
  x, pos = _inputs()
  layer, variables = _init(kind, x, pos)
  _, w1 = _run(maybe_jit, layer, variables, x, pos, None)
  _, w2 = _run(maybe_jit, layer, variables, x * 3.0 + 1.0, pos, None)
  np.testing.assert_array_equal(w1, w2)


@pytest.mark.parametrize("kind", ["dense", "factorized_dense"])
def test_dense_row_depends_only_on_its_token(kind, maybe_jit):
  x, pos = _inputs()
  layer, variables = _init(kind, x, pos)
  variables = randomize(variables)
  _, w = _run(maybe_jit, layer, variables, x, pos, None)
  j = 4
  x2 = x.copy()
  x2[:, j] += 1.0
  _, w2 = _run(maybe_jit, layer, variables, x2, pos, None)
  others = [i for i in range(N) if i != j]
  np.testing.assert_allclose(w2[:, :, others], w[:, :, others], rtol=1e-6, atol=1e-7)
  assert np.abs(w2[:, :, j] - w[:, :, j]).max() > 1e-4


def test_factorized_random_shapes_and_rank():
  x, pos = _inputs()
  _, variables = _init("factorized_random", x, pos)
  p = unbox(variables)["params"]["factorized_random"]
  shape = (CFG.num_heads, CFG.max_len, CFG.random_rank)
  assert p["R1"].shape == shape and p["R2"].shape == shape
  for h in range(CFG.num_heads):
    assert np.linalg.matrix_rank(p["R1"][h] @ p["R2"][h].T) == CFG.random_rank


def test_factorized_dense_shapes_and_rank():
  """Each query's max_len logits, laid out [b, a], are an outer product: rank one."""
  x, pos = _inputs()
  layer, variables = _init("factorized_dense", x, pos)
  variables = randomize(variables)
  p = variables["params"]["factorized_dense"]
  a, b_ = CFG.factor_sizes
  assert p["f_a"]["w2"].shape == (CFG.num_heads, CFG.head_dim, a)
  assert p["f_c"]["w2"].shape == (CFG.num_heads, CFG.head_dim, b_)
  full_pos = np.broadcast_to(np.arange(CFG.max_len), (B, CFG.max_len))
  source = sj.attention.make_source(CFG.attention("factorized_dense"))
  logits = source.apply({"params": p}, x, x, Positions.of(full_pos[:, :N]),
                        Positions.contiguous(CFG.max_len))
  assert logits.shape == (B, CFG.num_heads, N, CFG.max_len)
  grid = np.asarray(logits).reshape(B, CFG.num_heads, N, b_, a)
  for idx in np.ndindex(B, CFG.num_heads, N):
    assert np.linalg.matrix_rank(grid[idx], tol=1e-5) == 1


@pytest.mark.parametrize("kind", MIXTURES)
def test_mixture_is_gated_sum_of_components(kind, maybe_jit):
  """The mixture's weights equal softmax(sum_c w_c B_c) with B_c from single-kind layers."""
  x, pos = _inputs()
  layer, variables = _init(kind, x, pos)
  variables = randomize(variables, seed=3)
  _, w_mix = _run(maybe_jit, layer, variables, x, pos, None)
  gates = np.asarray(jax.nn.softmax(variables["params"]["mixture"]["gate_logits"], axis=-1))
  np.testing.assert_allclose(gates.sum(-1), 1.0, rtol=1e-6)
  total = 0.0
  for c, part in enumerate(sj.parse_kind(kind)):
    source = sj.attention.make_source(CFG.attention(part))
    p = Positions.of(pos)
    logits = source.apply({"params": variables["params"]["mixture"][part]}, x, x, p, p)
    total = total + gates[None, :, c, None, None] * np.asarray(logits)
  np.testing.assert_allclose(w_mix, np_softmax(total, np.ones_like(total, bool)), rtol=1e-4,
                             atol=1e-6)


def test_fixed_random_is_constant_not_parameter(maybe_jit):
  x, pos = _inputs()
  layer, variables = _init("fixed_random", x, pos)
  assert "fixed_random" not in variables["params"]
  r = unbox(variables)["constants"]["fixed_random"]["R"]
  assert r.shape == (CFG.num_heads, CFG.max_len, CFG.max_len)

  def loss(params, consts):
    out = layer.apply({"params": params, "constants": consts}, x, x, None, pos, pos)
    return jnp.sum(out ** 2)

  g_params, g_consts = maybe_jit(jax.grad(loss, argnums=(0, 1)))(
      variables["params"], variables["constants"])
  assert set(unbox(g_params)) == {"value", "out"}  # R is not among the trained leaves
  # R is used: its (unapplied) gradient is non-zero, so freezing it is what keeps it fixed.
  assert np.abs(unbox(g_consts)["fixed_random"]["R"]).max() > 0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_padding_keys_are_ignored(kind, maybe_jit):
  x, pos = _inputs()
  valid = np.ones((B, N), bool)
  valid[:, -2:] = False
  mask = np.asarray(make_mask(valid, valid))
  layer, variables = _init(kind, x, pos, mask)
  out, w = _run(maybe_jit, layer, variables, x, pos, mask)
  assert np.all(w[:, :, :-2, -2:] == 0.0)
  x2 = x.copy()
  x2[:, -2:] = 5.0
  out2, _ = _run(maybe_jit, layer, variables, x2, pos, mask)
  np.testing.assert_allclose(out2[:, :-2], out[:, :-2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if k != "dot"])
def test_position_beyond_max_len_is_an_error(kind):
  x, pos = _inputs()
  layer, variables = _init(kind, x, pos)
  bad = pos.copy()
  bad[0, -1] = CFG.max_len
  with pytest.raises(ValueError, match="max_len"):
    layer.apply(variables, x, x, None, bad, bad)
  # Under jit the value is unknown at trace time: the result must be NaN, never a wrong number.
  out = jax.jit(lambda v, p: layer.apply(v, x, x, None, p, p))(variables, bad)
  assert np.isnan(np.asarray(out)[0]).any()


def test_dot_has_no_length_limit():
  x = np.ones((1, CFG.max_len + 5, CFG.d_model), np.float32)
  pos = np.arange(CFG.max_len + 5)[None]
  layer, variables = _init("dot", x, pos)
  assert np.isfinite(np.asarray(layer.apply(variables, x, x, None, pos, pos))).all()
