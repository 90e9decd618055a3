"""The diagnostic tasks (experiments/diagnostics.py) are what they claim to be: each row's
answer is where the task says it is, reverse is solved by position and recall only by content,
the batches are seqio's LM features and deterministic; the probes and the recall-mechanism
tables read what the maps hold."""

import numpy as np
import pytest

from experiments import diagnostics

SPEC = diagnostics.DiagSpec()


def rows_of(task, n=256, seed=0, spec=SPEC):
  make = {"diag_reverse": diagnostics.reverse_rows, "diag_recall": diagnostics.recall_rows,
          "diag_lookup": diagnostics.lookup_rows}[task]
  return make(np.random.default_rng(seed), n, spec)


def test_reverse_answers_are_the_input_reversed():
  rows, weights = rows_of("diag_reverse")
  n = SPEC.reverse_len
  assert rows.shape == (256, 2 * n + 1) and (rows[:, n] == diagnostics.SEP).all()
  np.testing.assert_array_equal(rows[:, n + 1:], rows[:, :n][:, ::-1])
  np.testing.assert_array_equal(weights.sum(1), n)
  assert (weights[:, :n + 1] == 0).all()


def test_recall_answer_is_the_value_after_the_matching_key():
  rows, weights = rows_of("diag_recall")
  p = SPEC.recall_pairs
  for row, w in zip(rows, weights):
    keys, values = row[0:2 * p:2], row[1:2 * p:2]
    assert len(set(keys.tolist())) == p  # distinct keys: the lookup is unambiguous
    lookup = dict(zip(keys.tolist(), values.tolist()))
    slots = np.flatnonzero(w)
    assert len(slots) == SPEC.recall_queries
    for s in slots:
      assert row[s] == lookup[int(row[s - 1])]


@pytest.mark.parametrize("replacement, filler", [(False, 0), (True, 12), (False, 12)])
def test_recall_variants_answer_by_content(replacement, filler):
  """Queries without replacement are distinct keys of the row; with fillers the pairs move
  from row to row; in every variant the answer is the value right after the matching key."""
  spec = diagnostics.DiagSpec(recall_pairs=4, recall_queries=4, recall_keys=16,
                              recall_values=16, recall_replacement=replacement,
                              recall_filler=filler)
  rows, weights = rows_of("diag_recall", spec=spec)
  p, context = spec.recall_pairs, 2 * spec.recall_pairs + filler
  assert rows.shape == (256, spec.length("diag_recall"))
  key_slots = []
  for row, w in zip(rows, weights):
    is_key = (row[:context] >= diagnostics.SYM) & (row[:context] < diagnostics.SYM + 16)
    slots = np.flatnonzero(is_key)
    assert len(slots) == p and (row[:context] == diagnostics.SEP).sum() == filler
    lookup = {int(row[s]): int(row[s + 1]) for s in slots}
    assert len(lookup) == p
    asked = [int(row[s - 1]) for s in np.flatnonzero(w)]
    assert len(asked) == spec.recall_queries and set(asked) <= set(lookup)
    assert len(set(asked)) == len(asked) or replacement
    for s in np.flatnonzero(w):
      assert row[s] == lookup[int(row[s - 1])]
    key_slots.append(tuple(slots))
  assert len(set(key_slots)) > 50 if filler else set(key_slots) == {(0, 2, 4, 6)}
  if replacement:  # some row asks a key twice
    assert any(len(set(r[context::2].tolist())) < spec.recall_queries for r in rows)


def test_lookup_answer_is_the_slot_of_the_query():
  rows, weights = rows_of("diag_lookup")
  n = SPEC.lookup_len
  first_slot_id = diagnostics.SYM + SPEC.lookup_symbols
  for row, w in zip(rows, weights):
    assert len(set(row[:n].tolist())) == n
    for s in np.flatnonzero(w):
      assert row[int(row[s]) - first_slot_id] == row[s - 1]
  # No fixed answer per answer slot (what position alone could give) is right often.
  for s in np.flatnonzero(weights[0]):
    assert np.bincount(rows[:, s]).max() / len(rows) < 2 / n


def best_fixed_source_accuracy(rows, weights):
  """Accuracy of the best rule 'answer at slot t = token at fixed slot s < t' (position only)."""
  accs = []
  for t in np.flatnonzero(weights[0]):
    accs.append(max(np.mean(rows[:, s] == rows[:, t]) for s in range(t)))
  return float(np.mean(accs))


def test_reverse_is_solved_by_position_recall_is_not():
  rows, weights = rows_of("diag_reverse", n=512)
  assert best_fixed_source_accuracy(rows, weights) == 1.0
  rows, weights = rows_of("diag_recall", n=512)
  # Where the matching key sits changes per row: no fixed source slot beats ~1/P by much.
  assert best_fixed_source_accuracy(rows, weights) < 2 * diagnostics.recall_guess_level(SPEC)


def test_batches_follow_seqio_lm_features_and_are_deterministic():
  data = diagnostics.DiagnosticData()
  get = lambda split, seed: next(data.get_dataset(
      "diag_recall", split, feature_lengths={"targets": 40}, batch_size=4, seed=seed))
  a, b = get("train", 0), get("train", 0)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(get("train", 1)["decoder_target_tokens"], a["decoder_target_tokens"])
  # Every seed is scored on the same validation rows.
  np.testing.assert_array_equal(get("validation", 0)["decoder_target_tokens"],
                                get("validation", 5)["decoder_target_tokens"])
  assert (a["decoder_input_tokens"][:, 0] == 0).all()
  np.testing.assert_array_equal(a["decoder_input_tokens"][:, 1:],
                                a["decoder_target_tokens"][:, :-1])
  assert a["decoder_target_tokens"].max() < data.get_vocabulary("diag_recall").vocab_size
  evals = list(data.get_dataset("diag_reverse", "validation", feature_lengths={"targets": 40},
                                batch_size=2, repeat=False))
  assert len(evals) == SPEC.eval_batches


def test_probe_finds_no_future_leak_and_splits_accuracy_by_slot():
  import jax

  import synthesizer_jax as sj
  from experiments import probe

  spec = diagnostics.DiagSpec()
  cfg = sj.ModelConfig(vocab_size=spec.vocab_size, d_model=16, num_heads=2, head_dim=8,
                       mlp_dim=32, num_layers=1, max_len=24, dropout_rate=0.0,
                       self_attention="dense+dot")
  model = sj.DecoderLM(cfg)
  variables = model.init(jax.random.key(0), np.ones((1, 24), np.int32))
  rng = np.random.default_rng(0)
  tokens = diagnostics.lm_batch(*diagnostics.lookup_rows(rng, 2, spec), 24)
  assert probe.future_leak(model, variables, tokens["decoder_input_tokens"], rng) == 0.0
  by_slot = probe.lookup_accuracy_by_slot(model, variables, spec, rows=64)
  assert len(by_slot) == spec.lookup_len and all(0 <= a <= 100 for a in by_slot)


def test_recall_mechanism_finds_the_weight_on_the_matching_pair():
  """Synthetic maps that put all weight of head 0 on the matching value and of head 1 on the
  matching key: the table says exactly that, and nothing on the other parts."""
  from experiments import recall_mechanism

  spec = diagnostics.DiagSpec(recall_pairs=4, recall_queries=4, recall_keys=16,
                              recall_values=16, recall_filler=6)
  rows, weights = rows_of("diag_recall", n=32, spec=spec)
  n = rows.shape[1]
  w = np.zeros((32, 2, n, n))
  context = 2 * spec.recall_pairs + spec.recall_filler
  for r, s in zip(*np.nonzero(weights)):
    key = [t for t in range(context) if rows[r, t] == rows[r, s - 1]][0]
    w[r, 0, s, key + 2], w[r, 1, s, key + 1] = 1.0, 1.0
  table = recall_mechanism.slot_weights({"layers_1": w}, rows, weights, spec)["layers_1"]
  assert table["value"] == [1.0, 0.0] and table["key"] == [0.0, 1.0]
  assert table["other keys"] == table["other values"] == table["asked"] == [0.0, 0.0]


def test_recall_query_accuracy_is_per_query_index():
  from experiments import recall_mechanism

  targets = np.array([[5, 6, 7, 8], [5, 6, 7, 9]])
  weights = np.array([[0, 1, 0, 1], [0, 1, 0, 1]])
  logits = np.eye(10)[np.array([[0, 6, 0, 8], [0, 1, 0, 9]])]  # row 1 misses its 1st answer
  assert recall_mechanism.query_accuracy(logits, targets, weights) == [50.0, 100.0]
