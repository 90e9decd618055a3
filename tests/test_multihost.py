"""Two processes x 2 CPU devices on localhost train and write one Orbax checkpoint, in a local
workdir and in a bucket (the GCS emulator of `gcs_emulator.py`); a single process restores it
on another mesh and gets the same parameters and next-step loss."""

import json
import os

import fake_data
import jax
import multihost_worker
import numpy as np
import pytest
import workers
from etils import epath

from synthesizer_jax import checkpointing
from synthesizer_jax import run as run_lib
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_two_processes_then_restore_on_one(tmp_path, where, request):
  work = str(tmp_path / "run") if where == "local" else request.getfixturevalue(
      "gcs").new_path("multihost")
  data_dir = str(tmp_path / "data")
  os.makedirs(data_dir)
  # The emulator sends no generation headers, which OCDBT's manifest needs (gcs_emulator.py).
  codes, outs = workers.finish(workers.start(
      work, data_dir, {"train": {"checkpoint_ocdbt": where == "local"}}))
  for code, out in zip(codes, outs, strict=True):
    assert code == 0, out[-3000:]
  text = epath.Path(work, "metrics.jsonl").read_text()
  rows = [json.loads(line) for line in text.splitlines() if line.strip()]
  loss4 = next(r["loss"] for r in rows if r["split"] == "train" and r["step"] == 4)

  # One process, 8 devices, another mesh and rule set.
  cfg = multihost_worker.train_config(data_dir)
  mesh = shd.MeshConfig(data=2, fsdp=2, tensor=2, rules="fsdp_tp")
  run = run_lib.setup(RunConfig.build(multihost_worker.MODEL, cfg, mesh), data=fake_data)
  ckpt = checkpointing.Checkpointer(work, read_only=True)
  assert ckpt.all_steps() == [3, 4]
  state3, meta = ckpt.restore(run.abstract_state(), 3)
  state4, _ = ckpt.restore(run.abstract_state(), 4)
  ckpt.close()
  assert meta["train_batches"] == 3
  # Batch 4 as the two processes saw it: shard 0's rows, then shard 1's.
  shards = [next(fake_data.get_dataset("fake_lm", "train", feature_lengths={"targets": 16},
                                       batch_size=4, seed=cfg.seed, shard_index=i,
                                       num_shards=2, start_batch=3)) for i in range(2)]
  batch = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
  state, metrics = run.train_step(state3, shd.global_batch(batch, run.mesh))
  np.testing.assert_allclose(float(metrics["loss"]), loss4, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(state4.params),
                       strict=True):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)
