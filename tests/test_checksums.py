"""Checkpoint integrity: per-array checksums that see any single flipped bit, do not depend on
the sharding, and make a checkpoint that decodes but differs from what was saved fail by name
(resume, load_checkpoint, the `verify` command)."""

import fake_data
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_reliability import MODEL, ONE, train_cfg

import synthesizer_jax as sj
from synthesizer_jax import checkpointing, checksums, loop
from synthesizer_jax import run as run_lib
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.int32, np.uint8, np.float16])
def test_every_single_flipped_bit_changes_the_checksum(dtype):
  rng = np.random.default_rng(0)
  x = np.asarray(rng.normal(size=(3, 5)) * 50).astype(dtype)
  base = checksums.tree_checksums({"x": x})["x"]
  bits = x.dtype.itemsize * 8
  unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]
  for flat in (0, 7, x.size - 1):
    for bit in range(bits):
      raw = x.copy().view(unsigned).reshape(-1)
      raw[flat] ^= unsigned(1 << bit)
      flipped = raw.view(x.dtype).reshape(x.shape)
      assert checksums.tree_checksums({"x": flipped})["x"] != base, (flat, bit)


def test_checksum_is_the_same_on_any_mesh():
  x = np.arange(8 * 6, dtype=np.float32).reshape(8, 6) / 7
  expected = checksums.tree_checksums({"x": x})
  for mesh_cfg in (shd.MeshConfig(data=8), shd.MeshConfig(data=2, fsdp=4)):
    mesh = shd.make_mesh(mesh_cfg)
    spec = jax.sharding.PartitionSpec(("data", "fsdp"), None)
    sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, spec))
    assert checksums.tree_checksums({"x": sharded}) == expected
  # Swapping two elements keeps their sum but not the checksum: positions are weighted.
  swapped = x.copy()
  swapped[0, 0], swapped[0, 1] = x[0, 1], x[0, 0]
  assert checksums.tree_checksums({"x": swapped}) != expected


def _tampered_workdir(tmp_path, monkeypatch):
  """Steps 1 (good) and 2, whose saved checksums are those of a state with one flipped bit:
  on restore, step 2's arrays decode fine but differ from what the checksums promise."""
  run = run_lib.setup(RunConfig.build(MODEL, train_cfg(tmp_path), ONE), data=fake_data)
  state = run_lib.initial_state(run, log=lambda *_: None)
  work = str(tmp_path / "run")
  ckpt = checkpointing.Checkpointer(work, async_save=False)
  ckpt.save(1, state, run.run_config(), {"step": 1, "train_batches": 1})
  real = checksums.tree_checksums

  def one_bit_off(tree):
    sums = real(tree)
    sums["params/embed/embedding"] ^= 1 << 9
    return sums

  monkeypatch.setattr(checkpointing, "tree_checksums", one_bit_off)
  ckpt.save(2, state, run.run_config(), {"step": 2, "train_batches": 2})
  monkeypatch.setattr(checkpointing, "tree_checksums", real)
  ckpt.close()
  return run, work


def test_a_step_that_decodes_but_differs_is_refused_by_name(tmp_path, monkeypatch, capsys):
  run, work = _tampered_workdir(tmp_path, monkeypatch)
  pattern = r"checkpoint step 2 at .*checkpoints/2 decodes, but 1 arrays differ .*params/embed"
  ckpt = checkpointing.Checkpointer(work)
  with pytest.raises(checkpointing.CheckpointError, match=pattern):
    ckpt.restore(run.abstract_state())
  _, meta = ckpt.restore(run.abstract_state(), 1)  # the good step is still there
  assert meta["step"] == 1
  ckpt.close()
  with pytest.raises(checkpointing.CheckpointError, match=pattern):
    sj.load_checkpoint(work)
  assert checkpointing.main(["verify", work]) == 1
  out = capsys.readouterr().out
  assert "step 1: ok" in out and "step 2: BAD: checkpoint step 2" in out
  unchecked = checkpointing.Checkpointer(work, verify=False)
  assert unchecked.restore(run.abstract_state())[1]["step"] == 2
  unchecked.close()


def test_resume_falls_back_past_a_step_that_differs(tmp_path, monkeypatch):
  _, work = _tampered_workdir(tmp_path, monkeypatch)
  cfg = train_cfg(tmp_path, num_train_steps=3, restore_fallback=True)
  result = loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), work, data=fake_data,
                                   progress=False)
  assert result["step"] == 3
  assert checkpointing.verify_workdir(work) == 0  # step 2 set aside, then re-saved good
