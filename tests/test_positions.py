"""`Positions`: contiguous positions (sliced) and the same positions as an array (gathered) read
the same table entries; out-of-range positions give NaN or a named error."""

import jax.numpy as jnp
import numpy as np
import pytest

from synthesizer_jax.attention.positions import Positions

H, L, X, N = 2, 6, 3, 4


def _tables():
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.standard_normal((H, L, X)), jnp.float32),
          jnp.asarray(rng.standard_normal((2, H, N, L)), jnp.float32))


def test_contiguous_and_explicit_read_the_same_entries():
  rows_hlx, cols_bhql = _tables()
  sliced = Positions.contiguous(N)
  gathered = Positions.of(jnp.arange(N)[None, :])
  assert sliced.is_contiguous and not gathered.is_contiguous and sliced.batch == 1
  np.testing.assert_array_equal(sliced.rows(rows_hlx), gathered.rows(rows_hlx))
  np.testing.assert_array_equal(sliced.columns(cols_bhql), gathered.columns(cols_bhql))
  np.testing.assert_array_equal(sliced.dense(), gathered.dense())


def test_explicit_positions_gather_per_row_against_numpy():
  rows_hlx, cols_bhql = _tables()
  pos = np.array([[0, 1, 2, 3], [0, 1, 0, 5]], np.int32)  # row 1 packs two segments
  p = Positions.of(jnp.asarray(pos))
  want_rows = np.stack([np.asarray(rows_hlx)[:, r] for r in pos])  # [b, h, n, x]
  np.testing.assert_array_equal(p.rows(rows_hlx), want_rows)
  want_cols = np.stack([np.asarray(cols_bhql)[b][..., pos[b]] for b in range(2)])
  np.testing.assert_array_equal(p.columns(cols_bhql), want_cols)
  assert np.asarray(Positions.of(jnp.asarray([[-1, 0, 2]])).clipped().dense()).tolist() == [
      [0, 0, 2]]


def test_out_of_range_is_nan_when_traced_and_an_error_when_concrete():
  rows_hlx, _ = _tables()
  assert np.isnan(Positions.of(jnp.asarray([[0, L]])).rows(rows_hlx)[0, :, 1]).all()
  with pytest.raises(ValueError, match=f"position {L} >= max_len={L}"):
    Positions.of(np.array([[0, L]])).check(L)
  with pytest.raises(ValueError, match=f"sequence length {L + 1} exceeds max_len={L}"):
    Positions.contiguous(L + 1).check(L)
  assert Positions.of(None, 3) == Positions.of(3) == Positions.contiguous(3)
  with pytest.raises(ValueError, match="shape \\[batch or 1, length\\]"):
    Positions.of(jnp.arange(3))
