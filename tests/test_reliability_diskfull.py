"""A checkpoint save that fills the disk: the run stops with a DiskFullError naming the
workdir and the space needed; the previous checkpoint stays restorable; the unfinished save
is removed, never resumed from; once there is space, the same command finishes the run.

On a real full filesystem (a small tmpfs, where this machine lets the test mount one) and,
everywhere, with an ENOSPC injected at Orbax's writer."""

import errno
import os
import shutil
import subprocess

import fake_data
import jax
import numpy as np
import pytest
from test_reliability import ONE, train_cfg

import synthesizer_jax as sj
from synthesizer_jax import diskfull, loop
from synthesizer_jax.config import RunConfig

# Big enough that one checkpoint (~0.5 MiB with Adam's moments) needs more than the free
# space the test leaves, which is enough for the logs.
MODEL = dict(d_model=64, num_heads=2, head_dim=32, mlp_dim=256, num_layers=2, max_len=16,
             dropout_rate=0.0, self_attention="dense")


def _check_stopped_cleanly(work, err):
  text = str(err)
  assert os.path.join(work, "checkpoints") in text and "disk is full" in text, text
  assert text.startswith("saving checkpoint step 4 to"), text  # the save that failed
  assert "step 2, is intact" in text and "MiB" in text and "keep_checkpoints=3" in text, text
  ckpt = os.path.join(work, "checkpoints")
  assert sorted(os.listdir(ckpt)) == ["2"], os.listdir(ckpt)  # the unfinished save is gone
  _, params, _ = sj.load_checkpoint(work)  # step 2 restores, checksums verified
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(params))


@pytest.fixture
def small_fs(tmp_path):
  mount = tmp_path / "fs"
  mount.mkdir()
  if os.geteuid() != 0 or shutil.which("mount") is None:
    pytest.skip("mounting a tmpfs needs root")
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                        capture_output=True, check=False)
  if done.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode()[:200]}")
  try:
    yield str(mount)
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_filesystem_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, small_fs):
  # Async saves, as train.py makes them (the injected test below saves synchronously).
  work = os.path.join(small_fs, "run")
  run = RunConfig.build(MODEL, train_cfg(tmp_path, num_train_steps=4, checkpoint_every=2,
                                         async_checkpoints=True), ONE)
  out = loop.train_and_evaluate(run, work, data=fake_data, progress=False,
                                stop_after=2)
  assert out["stopped"]
  filler = os.path.join(small_fs, "filler")
  with open(filler, "wb") as f:  # leave 64 KiB: room for the logs, not for a checkpoint
    f.write(b"\0" * (shutil.disk_usage(small_fs).free - 64 * 1024))
  with pytest.raises(diskfull.DiskFullError) as err:
    loop.train_and_evaluate(run, work, data=fake_data, progress=False)
  _check_stopped_cleanly(work, err.value)
  os.remove(filler)
  out = loop.train_and_evaluate(run, work, data=fake_data, progress=False)
  assert out["step"] == 4 and not out.get("stopped")


def test_an_injected_enospc_at_the_writer_is_named_the_same_way(tmp_path, monkeypatch):
  import orbax.checkpoint as ocp

  work = str(tmp_path / "run")
  run = RunConfig.build(MODEL, train_cfg(tmp_path, num_train_steps=4, checkpoint_every=2), ONE)
  loop.train_and_evaluate(run, work, data=fake_data, progress=False, stop_after=2)
  real_save = ocp.CheckpointManager.save

  def full_disk(self, step, *args, **kwargs):
    # What Orbax leaves when the write fails half-way: the step's temporary directory.
    partial = os.path.join(str(self.directory), f"{step}{diskfull.TMP_SUFFIX}", "state")
    os.makedirs(partial)
    with open(os.path.join(partial, "part"), "wb") as f:
      f.write(b"x" * 1000)
    raise ValueError("RESOURCE_EXHAUSTED: Failed to write 520574 bytes to file 4: No space "
                     "left on device [os_error_code='28']")

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  with pytest.raises(diskfull.DiskFullError) as err:
    loop.train_and_evaluate(run, work, data=fake_data, progress=False)
  assert err.value.errno == errno.ENOSPC
  _check_stopped_cleanly(work, err.value)
  monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
  assert loop.train_and_evaluate(run, work, data=fake_data, progress=False)["step"] == 4


def test_other_errors_are_not_called_a_full_disk():
  assert not diskfull.is_disk_full(ValueError("RESOURCE_EXHAUSTED: out of memory"))
  assert diskfull.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
  try:
    try:
      raise OSError(errno.ENOSPC, "no space")
    except OSError as inner:
      raise RuntimeError("save failed") from inner
  except RuntimeError as outer:
    assert diskfull.is_disk_full(outer)
