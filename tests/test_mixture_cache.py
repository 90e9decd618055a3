"""A mixture through the cached (Grain) path, on fake corpora: each row is a real example of
one member, members arrive at T5's rates, `start_batch=k` is batch k of a full read, the
seed changes the draw, a member without a cache is refused by name, and the cache command
given the mixture caches every member."""

import os
import shutil

import numpy as np
import pytest
from fixtures.data import fake_debian

from synthesizer_jax import data
from synthesizer_jax.data import cache, grain_mixture, mixtures, records

pytest.importorskip("seqio")
pytest.importorskip("grain")

MIX = "offline_t5_finetune"
MEMBERS = mixtures.MIXTURES[MIX].tasks
LENGTHS = {"inputs": 24, "targets": 12}  # examples are cut: one per row
PACKED = {"inputs": 256, "targets": 128}  # several examples per row


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("mixture"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, list(MEMBERS), progress=False, cache=True)
  return path


def _key(row_inputs, row_targets):
  return tuple(row_inputs[row_inputs > 0]), tuple(row_targets[row_targets > 0])


def _owners(data_dir, lengths):
  """{(inputs, targets) of an example at `lengths`: its member}, from each member's cache."""
  out = {}
  for t in MEMBERS:
    for b in data.get_cached_dataset(t, "train", feature_lengths=lengths, batch_size=64,
                                     pack=False, shuffle=False, repeat=False, data_dir=data_dir):
      for i, tg in zip(b["encoder_input_tokens"], b["decoder_target_tokens"], strict=True):
        assert out.setdefault(_key(i, tg), t) == t, "two members share an example"
  return out


@pytest.fixture(scope="module")
def owners(data_dir):
  return _owners(data_dir, LENGTHS)


def _read(data_dir, n, **kw):
  args = dict(feature_lengths=LENGTHS, batch_size=32, pack=False, seed=0, data_dir=data_dir)
  batches = data.get_cached_dataset(MIX, "train", **{**args, **kw})
  try:
    return [next(batches) for _ in range(n)]
  finally:
    batches.close()


def test_rows_are_real_member_examples_at_t5_rates(data_dir, owners):
  rates = mixtures.rates(MIX, data_dir)
  p = np.array([rates[t] for t in MEMBERS]) / sum(rates.values())
  assert p.max() - p.min() > 0.1, p  # uneven rates, so a uniform draw would fail below
  drawn = _members(_read(data_dir, 48), owners)  # KeyError: a row is no member's example
  n = len(drawn)
  for t, share in zip(MEMBERS, p, strict=True):  # within 4 binomial sd of its rate
    assert abs(drawn.count(t) / n - share) < 4 * (share * (1 - share) / n) ** 0.5, (t, share)


@pytest.mark.parametrize("pack", [False, True])
def test_start_batch_is_batch_k_of_a_full_read(data_dir, pack, monkeypatch):
  monkeypatch.setattr(grain_mixture, "BLOCK", 40)  # the batches read cross blocks
  kw = dict(pack=pack, feature_lengths=PACKED if pack else LENGTHS, num_shards=2, shard_index=1)
  full = _read(data_dir, 6, **kw)
  resumed = _read(data_dir, 2, start_batch=4, **kw)
  for want, got in zip(full[4:], resumed, strict=True):
    assert want.keys() == got.keys()
    for k in want:
      np.testing.assert_array_equal(want[k], got[k], err_msg=k)
  if pack:
    assert full[0]["encoder_segment_ids"].max() > 1  # rows hold several examples


def test_packed_rows_are_real_member_examples(data_dir):
  owners = _owners(data_dir, PACKED)
  b = _read(data_dir, 1, pack=True, feature_lengths=PACKED)[0]
  seen = 0
  for r in range(len(b["encoder_input_tokens"])):
    for s in range(1, b["encoder_segment_ids"][r].max() + 1):
      i = np.where(b["encoder_segment_ids"][r] == s, b["encoder_input_tokens"][r], 0)
      t = np.where(b["decoder_segment_ids"][r] == s, b["decoder_target_tokens"][r], 0)
      assert _key(i, t) in owners
      seen += 1
  assert seen > len(b["encoder_input_tokens"])


def _members(batches, owners):
  return [owners[_key(i, t)] for b in batches
          for i, t in zip(b["encoder_input_tokens"], b["decoder_target_tokens"], strict=True)]


def test_another_seed_draws_another_stream(data_dir, owners):
  a, b = _read(data_dir, 2), _read(data_dir, 2, seed=1)
  assert not np.array_equal(a[1]["encoder_input_tokens"], b[1]["encoder_input_tokens"])
  assert _members(a, owners) != _members(b, owners)  # the order of members too
  again = _read(data_dir, 2)
  np.testing.assert_array_equal(a[1]["encoder_input_tokens"], again[1]["encoder_input_tokens"])


def test_a_pass_over_a_mixture_is_refused(data_dir):
  with pytest.raises(data.DataError, match="evaluate each member") as e:
    _read(data_dir, 1, shuffle=False, repeat=False)
  assert all(t in str(e.value) for t in MEMBERS)


def test_a_member_without_a_cache_is_named_and_the_command_caches_every_member(
    data_dir, tmp_path):
  copy = str(tmp_path / "data")
  shutil.copytree(data_dir, copy)
  missing = MEMBERS[-1]
  shutil.rmtree(os.path.join(records.split_dir(missing, "train", copy)))
  assert data.has_cache(MIX, data_dir) and not data.has_cache(MIX, copy)
  assert data.has_cache(MEMBERS[0], copy)
  with pytest.raises(data.DataError, match=f"Member '{missing}' of mixture") as e:
    _read(copy, 1)
  assert f"--task {missing} --data_dir {copy}" in str(e.value)
  assert cache.main(["--task", MIX, "--data_dir", copy, "--splits", "train"]) == 0
  assert data.has_cache(MIX, copy)
  first = _read(copy, 1)[0]
  np.testing.assert_array_equal(first["encoder_input_tokens"],
                                _read(data_dir, 1)[0]["encoder_input_tokens"])


def test_each_member_is_read_in_full_before_it_repeats(data_dir, monkeypatch):
  monkeypatch.setattr(grain_mixture, "BLOCK", 40)
  mixed = grain_mixture.MixedSplit(MIX, "train", data_dir, feature_lengths=LENGTHS,
                                   batch_size=64, pack=False, shuffle=True, seed=0,
                                   shard_index=0, num_shards=1, repeat=True)
  rows = {m: [] for m in range(len(MEMBERS))}
  sizes = [member.num_rows for member in mixed.members]
  k = 0
  while any(len(rows[m]) < 2 * sizes[m] for m in rows):  # two epochs of every member
    for m, r in mixed.positions(k):
      rows[m].append(r)
    k += 1
  for m, size in enumerate(sizes):  # each epoch is a permutation of the member's rows
    first, second = rows[m][:size], rows[m][size:2 * size]
    assert sorted(first) == sorted(second) == list(range(size)), MEMBERS[m]
    assert first != second  # reshuffled per epoch


def test_a_data_dir_of_caches_only_mixes_as_the_prepared_one(data_dir, tmp_path):
  """`cache --out_dir` (a bucket's layout: caches and the vocabulary, no prepared corpus):
  the rates come from the caches, and the batches are the prepared data dir's."""
  out = str(tmp_path / "caches")
  assert cache.main(["--task", MIX, "--data_dir", data_dir, "--splits", "train",
                     "--out_dir", out]) == 0
  with pytest.raises(data.DataError, match="is not prepared"):  # no corpus to count there
    mixtures.rates(MIX, out)
  for got, want in zip(_read(out, 2), _read(data_dir, 2), strict=True):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
