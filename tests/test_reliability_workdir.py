"""A workdir belongs to one run (a lock naming the process; stale locks taken over), and a
checkpoint is loaded only as what it is: a missing step lists the steps there are, and
parameters that disagree with their saved config are refused naming both."""

import json
import os
import socket
import subprocess
import sys
import time

import fake_data
import pytest
from test_reliability import MODEL, ONE, train_cfg
from test_reliability_checkpoints import saved_workdir

import synthesizer_jax as sj
from synthesizer_jax import checkpointing, evaluation, loop
from synthesizer_jax import run as run_lib
from synthesizer_jax.config import RunConfig
from synthesizer_jax.workdir_lock import LOCK_FILE, WorkdirInUseError, WorkdirLock


def write_lock(work, pid, host=None, age_s=0.0):
  os.makedirs(work, exist_ok=True)
  with open(os.path.join(work, LOCK_FILE), "w") as f:
    json.dump({"pid": pid, "host": host or socket.gethostname(), "since": time.time() - age_s,
               "beat": time.time() - age_s}, f)


def test_a_workdir_in_use_is_refused_naming_the_process(tmp_path):
  work = str(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    write_lock(work, holder.pid)
    with pytest.raises(WorkdirInUseError, match=rf"in use by another training process \(pid "
                       rf"{holder.pid} on {socket.gethostname()}"):
      loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path), ONE), work,
                              data=fake_data, progress=False)
    assert os.listdir(work) == [LOCK_FILE]  # nothing written
  finally:
    holder.kill()
    holder.wait()


def test_the_lock_is_held_while_training_and_released_after(tmp_path):
  work = str(tmp_path / "run")
  os.makedirs(work)
  with WorkdirLock(work):
    with pytest.raises(WorkdirInUseError, match=f"pid {os.getpid()}"):
      WorkdirLock(work).acquire()
  assert not os.path.exists(os.path.join(work, LOCK_FILE))
  loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path, num_train_steps=2), ONE),
                          work, data=fake_data, progress=False)
  assert not os.path.exists(os.path.join(work, LOCK_FILE))


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  work = str(tmp_path / "run")
  write_lock(work, dead.pid)
  result = loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path,
                                                                    num_train_steps=2), ONE),
                                   work, data=fake_data, progress=False)
  assert result["step"] == 2
  assert f"taking over {os.path.join(work, LOCK_FILE)}, left by pid {dead.pid}" in (
      capsys.readouterr().out)


def test_a_lock_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
  work = str(tmp_path / "run")
  write_lock(work, 1234, host="other-host-xyz")
  with pytest.raises(WorkdirInUseError, match=r"held by pid 1234 on host other-host-xyz.*delete "
                     r".*run.lock"):
    WorkdirLock(work).acquire()


def test_a_lock_another_host_stopped_refreshing_is_taken_over(tmp_path):
  """A host that died without releasing the lock (a hard preemption; the job restarts on
  another VM) leaves a lock whose beat is older than the lease: taken over, with a warning."""
  work = str(tmp_path / "run")
  write_lock(work, 1234, host="other-host-xyz", age_s=120)
  with pytest.raises(WorkdirInUseError, match="held by pid 1234"):
    WorkdirLock(work, lease_s=600).acquire()
  said = []
  lock = WorkdirLock(work, lease_s=60, log=said.append)
  lock.acquire()
  assert "has not refreshed it for 12" in said[0] and "other-host-xyz" in said[0]
  assert json.load(open(os.path.join(work, LOCK_FILE)))["pid"] == os.getpid()
  lock.release()
  assert not os.path.exists(os.path.join(work, LOCK_FILE))


def test_the_holder_keeps_its_lock_fresh(tmp_path):
  work = str(tmp_path / "run")
  os.makedirs(work)
  with WorkdirLock(work, lease_s=0.4):
    first = json.load(open(os.path.join(work, LOCK_FILE)))["beat"]
    time.sleep(0.5)
    assert json.load(open(os.path.join(work, LOCK_FILE)))["beat"] > first
    with pytest.raises(WorkdirInUseError):  # a live holder's lock is never stale
      WorkdirLock(work, lease_s=0.4).acquire()


def test_a_reader_never_sees_the_lock_half_written(tmp_path):
  """The holder's heartbeat replaces the file whole (paths.write_text): a second run checking
  the lock in between reads the holder, not an empty file it would take for a stale lock."""
  work = str(tmp_path / "run")
  os.makedirs(work)
  with WorkdirLock(work, lease_s=0.02) as lock:  # a beat every 5 ms
    first, reads, deadline = lock._read()["beat"], [], time.time() + 30
    while (len(reads) < 3000 or json.loads(reads[-1])["beat"] == first) \
        and time.time() < deadline:  # at least 3,000 reads, and beats in between
      reads.append(open(os.path.join(work, LOCK_FILE)).read())
    assert all(json.loads(r)["pid"] == os.getpid() for r in reads)
    assert json.loads(reads[-1])["beat"] > first  # it did beat while we read
  assert os.listdir(work) == []  # no temporary file left beside it


def test_an_unreadable_lock_is_taken_over_naming_why(tmp_path):
  work = str(tmp_path / "run")
  os.makedirs(work)
  with open(os.path.join(work, LOCK_FILE), "w") as f:
    f.write('{"pid": 12')  # cut short for good
  said = []
  lock = WorkdirLock(work, lease_s=60, log=said.append)
  lock.acquire()
  assert "whose contents cannot be read" in said[0], said
  assert json.load(open(os.path.join(work, LOCK_FILE)))["pid"] == os.getpid()
  lock.release()


def test_a_missing_step_lists_the_steps_there_are(tmp_path):
  work = saved_workdir(tmp_path, steps=(1, 2))
  pattern = r"no checkpoint step 7 in .*checkpoints; the steps there are \[1, 2\]"
  with pytest.raises(FileNotFoundError, match=pattern):
    sj.load_checkpoint(work, step=7)
  with pytest.raises(FileNotFoundError, match=pattern):
    evaluation.evaluate_checkpoint(work, step=7, data=fake_data, mesh_cfg=ONE)
  model, _, _ = sj.load_checkpoint(work, step=2)
  assert model.cfg.d_model == MODEL["d_model"]


def test_parameters_that_disagree_with_their_config_are_refused(tmp_path):
  run = run_lib.setup(RunConfig.build(MODEL, train_cfg(tmp_path), ONE), data=fake_data)
  # Another model config saved next to these arrays (as an edited config.json would be).
  config = run.run_config()
  config["model"]["mlp_dim"] = 48
  work = str(tmp_path / "bad")
  ckpt = checkpointing.Checkpointer(work, async_save=False)
  ckpt.save(1, run_lib.initial_state(run, log=lambda *_: None), config, {"train_batches": 1})
  ckpt.close()
  with pytest.raises(ValueError, match=r"do not match the saved model config .*mlp.*: \(16, "
                     r"32\) in the checkpoint, \(16, 48\) for the model its config describes"):
    sj.load_checkpoint(work)
