"""Faults of a run on a bucket, against the GCS emulator (`gcs_emulator.py`): the store gone
during a save stops the run with an error naming the store and the step, lists no
half-written step, and a rerun once it is back resumes from the last committed step and ends
where an uninterrupted run ends; a short outage inside the libraries' retry window is
retried and the run goes on; a bucket that does not exist, or a workdir that is a file, is
refused before the first step (train.py: in one line)."""

import os
import re
import subprocess
import sys
import threading
import time

import fake_data
import jax
import numpy as np
import pytest
from etils import epath
from test_reliability import MODEL, ONE, train_cfg
from test_reliability_preemption import params_of

from synthesizer_jax import checkpointing, loop
from synthesizer_jax.config import RunConfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKER = os.path.join(HERE, "reliability_worker.py")


class Outage:
  """fake_data that stops the emulator as train batch `at` (0-based) is fetched, once
  `committed` (a checkpoint step directory) holds Orbax's commit marker, and starts it again
  `back_after` seconds later (None: left down)."""

  TASKS = fake_data.TASKS
  task_info = staticmethod(fake_data.task_info)
  get_vocabulary = staticmethod(fake_data.get_vocabulary)

  def __init__(self, server, at, back_after=None, committed=None):
    self.server, self.at, self.back_after, self.committed = server, at, back_after, committed

  def get_dataset(self, name, split, **kw):
    for i, batch in enumerate(fake_data.get_dataset(name, split, **kw), kw.get("start_batch", 0)):
      if split == "train" and i == self.at:
        marker = self.committed and epath.Path(self.committed, "commit_success.txt")
        for _ in range(600):  # the async save of that step has finished
          if not marker or marker.exists():
            break
          time.sleep(0.1)
        self.server.stop()
        if self.back_after is not None:
          threading.Timer(self.back_after, self.server.start).start()
      yield batch


def bucket_cfg(work, **kw):
  return train_cfg(os.path.dirname(work), checkpoint_ocdbt=False, async_checkpoints=True, **kw)


def quick_gcsfs_backoff():
  """gcsfs tries each request 6 times, sleeping 0.5-1.5, 1-2, 2-3, 4-5 and 8-9 s between tries
  (gcsfs.retry.retry_request): against a store that is gone, about 17 s a request and some 50 s
  a save. After this call (in the process that trains) its sleeps are 1/20 as long; the
  requests, their failures and the count of tries are gcsfs's own, so the error the run raises
  is the one a real outage gives."""
  import asyncio
  import types

  import gcsfs.retry

  sleep = asyncio.sleep
  gcsfs.retry.asyncio = types.SimpleNamespace(sleep=lambda seconds: sleep(seconds / 20))


def test_the_store_gone_during_a_save_stops_naming_it_and_a_rerun_resumes(gcs, tmp_path, capsys):
  """Through train.py's own ending (`train.exit_code`), in a process of its own: exit 74 with
  the error, soon after the store went (Orbax's threads of the failed save once held the
  process 300 s more)."""
  work = gcs.new_path("outage")
  cfg = bucket_cfg(work, num_train_steps=6)
  # Batch 4 feeds step 5: the store goes away while step 4's async save is in flight (or, on
  # a slow machine, step 2's finalisation); the error names whichever save it hit.
  proc = subprocess.Popen(
      [sys.executable, WORKER, "store_gone", work, "4", f"{work}/checkpoints/2"],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      cwd=HERE, env={**os.environ, "PYTHONPATH": HERE})
  lines = []
  watchdog = threading.Timer(300, proc.kill)  # a worker that never asks cannot hang the suite
  watchdog.start()
  try:
    for line in proc.stdout:  # the worker asks for the outage (or ends first: its output tells)
      lines.append(line)
      if "OUTAGE" in line:  # stderr shares the pipe: a warning can land on the marker's line
        break
    gcs.stop()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    stopped = time.monotonic()
    out = "".join(lines) + proc.communicate(timeout=120)[0]
  except subprocess.TimeoutExpired:
    proc.kill()
    pytest.fail("the run still had not ended 120 s after the store went:\n"
                + "".join(lines)[-2000:] + proc.communicate()[0][-2000:])
  finally:
    watchdog.cancel()
  assert proc.returncode == 74, out[-3000:]
  assert time.monotonic() - stopped < 100, out[-3000:]  # the error itself takes ~5-30 s
  named = re.search(rf"error: saving checkpoint step (\d+) to {work}/checkpoints failed: the "
                    r"store gs://sj-test did not take it \(", out)
  assert named, out[-3000:]
  gcs.start()
  ckpt = checkpointing.Checkpointer(work, read_only=True)
  listed = sorted(ckpt.all_steps())
  ckpt.close()
  hit = int(named.group(1))
  assert hit in (2, 4) and hit not in listed and all(s < hit for s in listed), (hit, listed)
  capsys.readouterr()
  result = loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), work, data=fake_data,
                                   progress=False)
  assert result["step"] == 6
  if listed:  # resumed from the last committed step
    assert f"resumed from {work}/checkpoints step {listed[-1]}" in capsys.readouterr().out
  ref = tmp_path / "ref"
  loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path, num_train_steps=6), ONE),
                          str(ref), data=fake_data, progress=False)
  for a, b in zip(jax.tree.leaves(params_of(work)[1]), jax.tree.leaves(params_of(ref)[1]),
                  strict=True):
    np.testing.assert_array_equal(a, b)


def test_a_short_outage_is_retried_and_the_run_goes_on(gcs):
  work = gcs.new_path("blip")
  cfg = bucket_cfg(work, num_train_steps=6)
  result = loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), work,
                                   data=Outage(gcs, at=3, back_after=2.0), progress=False)
  assert result["step"] == 6 and gcs.running()
  ckpt = checkpointing.Checkpointer(work, read_only=True)
  assert sorted(ckpt.all_steps()) == [2, 4, 6]  # step 4 was saved through the outage
  ckpt.close()


def test_a_missing_bucket_is_refused_before_the_first_step(gcs):
  work = "gs://no-such-bucket-sj/run"
  with pytest.raises(FileNotFoundError, match="bucket gs://no-such-bucket-sj of .* does not "
                     "exist"):
    loop.train_and_evaluate(RunConfig.build(MODEL, bucket_cfg(work), ONE), work,
                            data=fake_data, progress=False)
  assert not epath.Path("gs://no-such-bucket-sj").exists()  # not created on the way


def test_an_s3_workdir_is_refused_naming_what_works():
  with pytest.raises(ValueError, match=r"s3://b/run: runs on s3:// are not supported yet.*"
                     r"mount the store"):
    loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg("/tmp"), ONE), "s3://b/run",
                            data=fake_data, progress=False)


@pytest.mark.parametrize("where", ["bucket", "file"])
def test_train_py_refuses_a_bad_workdir_in_one_line_before_set_up(gcs, tmp_path, where):
  if where == "file":
    work = tmp_path / "not_a_dir"
    work.write_text("notes")
    expected = f"error: workdir {work} exists and is a file, not a directory"
  else:
    work = "gs://no-such-bucket-sj/run"
    expected = "error: bucket gs://no-such-bucket-sj of gs://no-such-bucket-sj/run does not exist"
  proc = subprocess.run(
      [sys.executable, "train.py", "--config", "configs/offline_lm_prose.py", "--workdir",
       str(work), f"--config.data_dir={tmp_path / 'nodata'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
  assert "Traceback" not in proc.stderr
  assert not os.path.exists(os.path.join(ROOT, "gs:"))
  if where == "file":
    assert work.read_text() == "notes"  # nothing written before is lost
