"""Reliability: NaN/Inf steps never reach the parameters and stop (or skip) with the step named,
keeping the last good checkpoint. Preemption, atomicity and config checks: test_reliability_*.py;
docs/reliability.md lists every fault and its test."""

import json
import os

import fake_data
import jax
import numpy as np
import pytest

from synthesizer_jax import checkpointing, loop
from synthesizer_jax import run as run_lib
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig, TrainConfig

MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
             dropout_rate=0.1, self_attention="dense")
ONE = shd.MeshConfig(num_devices=1)


def train_cfg(data_dir, **kw):
  base = dict(task="fake_lm", data_dir=str(data_dir), batch_size=8, targets_length=16,
              num_train_steps=6, log_every=1, eval_every=100, checkpoint_every=2,
              eval_batches=0, predict_batches=0, learning_rate=1e-2, warmup_steps=1,
              sample_prompt="", async_checkpoints=False)
  return TrainConfig(**{**base, **kw})


class Poisoned:
  """fake_data whose train batches `bad` (0-based indices) carry a NaN/Inf loss weight."""

  TASKS = fake_data.TASKS
  task_info = staticmethod(fake_data.task_info)
  get_vocabulary = staticmethod(fake_data.get_vocabulary)

  def __init__(self, bad, value=np.nan):
    self.bad, self.value = set(bad), value

  def get_dataset(self, name, split, **kw):
    for i, batch in enumerate(fake_data.get_dataset(name, split, **kw), kw.get("start_batch", 0)):
      weights = batch["decoder_loss_weights"].astype(np.float32)
      if split == "train" and i in self.bad:
        weights[0, 0] = self.value
      yield {**batch, "decoder_loss_weights": weights}


def test_nonfinite_update_is_dropped_on_device(tmp_path):
  run = run_lib.setup(RunConfig.build(MODEL, train_cfg(tmp_path), ONE), data=fake_data)
  state = run_lib.initial_state(run, log=lambda *_: None)
  before = jax.tree.map(np.asarray, state)
  for n, value in enumerate([np.nan, np.inf, -np.inf], 1):
    batch = next(Poisoned([0], value).get_dataset(
        "fake_lm", "train", feature_lengths={"targets": 16}, batch_size=8))
    state, metrics = run.train_step(state, shd.global_batch(batch, run.mesh))
    assert int(metrics["nonfinite"]) == 1
    assert int(state.step) == n  # the step (and so the data position) still advances
    for got, want in zip(jax.tree.leaves((state.params, state.opt_state)),
                         jax.tree.leaves((before.params, before.opt_state)), strict=True):
      np.testing.assert_array_equal(np.asarray(got), want)
  clean = {**batch, "decoder_loss_weights": np.nan_to_num(batch["decoder_loss_weights"],
                                                          nan=1.0, posinf=1.0, neginf=1.0)}
  state, metrics = run.train_step(state, shd.global_batch(clean, run.mesh))
  assert int(metrics["nonfinite"]) == 0
  assert not np.array_equal(np.asarray(jax.tree.leaves(state.params)[0]),
                            jax.tree.leaves(before.params)[0])


def _saved_params(workdir):
  state, _, step = checkpointing.restore_source(str(workdir))
  return step, state["params"]


def test_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  work = tmp_path / "run"
  with pytest.raises(loop.NonFiniteError,
                     match=r"(?s)step 5: loss nan.*Last good checkpoint: step 4 in .*checkpoints"):
    loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path), ONE), str(work),
                            data=Poisoned([4]), progress=False)
  step, params = _saved_params(work)
  assert step == 4
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_skip_mode_drops_bad_updates_then_stops_after_too_many_in_a_row(tmp_path, capsys):
  cfg = train_cfg(tmp_path, on_nonfinite="skip", max_consecutive_skips=1, num_train_steps=8)
  work = tmp_path / "run"
  with pytest.raises(loop.NonFiniteError, match=r"step 6: .*2 bad steps in a row"):
    loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), str(work),
                            data=Poisoned([1, 4, 5], np.inf), progress=False)
  out = capsys.readouterr().out
  assert "warning: step 2: loss" in out and "warning: step 5:" in out
  rows = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
  flags = {r["step"]: r["nonfinite"] for r in rows if r["split"] == "train"}
  assert flags[1] == 0 and flags[2] == 1 and flags[3] == 0
  step, params = _saved_params(work)
  assert step == 4 and all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_bad_nonfinite_options():
  with pytest.raises(ValueError, match="on_nonfinite='ignore': must be one of"):
    TrainConfig(on_nonfinite="ignore")
  with pytest.raises(ValueError, match="max_consecutive_skips=0"):
    TrainConfig(max_consecutive_skips=0)


def test_mesh_that_does_not_divide_the_devices_or_the_batch(tmp_path):
  with pytest.raises(ValueError, match=r"mesh sizes \(-1, 1, 3\) do not divide 8 devices"):
    shd.mesh_shapes(shd.MeshConfig(data=-1, tensor=3), 8)
  with pytest.raises(ValueError, match=r"batch_size=12 .* must split evenly over the 8 batch"):
    run_lib.setup(RunConfig.build(MODEL, train_cfg(tmp_path, batch_size=12),
                                  shd.MeshConfig(data=8)), data=fake_data)


def test_batch_longer_than_max_len_fails_in_the_train_step(tmp_path):
  run = run_lib.setup(RunConfig.build(MODEL, train_cfg(tmp_path), ONE), data=fake_data)
  state = run_lib.initial_state(run, log=lambda *_: None)
  batch = next(fake_data.get_dataset("fake_lm", "train", feature_lengths={"targets": 20},
                                     batch_size=8, pack=False))
  with pytest.raises(ValueError, match="sequence length 20 exceeds max_len=16"):
    run.train_step(state, shd.global_batch(batch, run.mesh))
