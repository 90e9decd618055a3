"""Runs that live in a bucket, against a real GCS API (the emulator of `gcs_emulator.py`):
train, SIGTERM and resume on a gs:// workdir end bitwise where an uninterrupted local run
ends; its logs, results, plots and checkpoints are in the bucket (bucket == local disk) and
nothing lands in a local folder named `gs:`; load_checkpoint and evaluation read it back;
the workdir lock refuses a second run there."""

import json
import os
import signal

import fake_data
import jax
import numpy as np
import pytest
from etils import epath
from test_reliability import MODEL, ONE, train_cfg
from test_reliability_preemption import HERE, params_of, sigterm_mid_run

import synthesizer_jax as sj
from synthesizer_jax import evaluation, loop
from synthesizer_jax.config import RunConfig
from synthesizer_jax.workdir_lock import LOCK_FILE, WorkdirInUseError, WorkdirLock


def metric_rows(workdir):
  text = epath.Path(str(workdir), "metrics.jsonl").read_text()
  clock = ("time", "steps_per_sec", "tokens_per_sec")  # wall-clock figures differ by run
  return [{k: v for k, v in json.loads(line).items() if k not in clock}
          for line in text.splitlines() if line.strip()]


def test_sigterm_and_resume_on_a_bucket_equal_an_uninterrupted_local_run(gcs, tmp_path):
  total, wait_at = 5, 2
  work = gcs.new_path("run")
  code, out = sigterm_mid_run(work, total, wait_at)
  assert code == 128 + signal.SIGTERM, out
  assert f"checkpoint of step 3 saved in {work}/checkpoints" in out, out
  assert not os.path.exists(os.path.join(HERE, "gs:")) and not os.path.exists("gs:")
  bucket_run = epath.Path(work)
  assert (bucket_run / "config.json").exists() and params_of(work)[0] == 3
  assert not (bucket_run / LOCK_FILE).exists()  # released on the way out
  # The same command again resumes there; a local run goes through uninterrupted.
  data_dir = os.path.dirname(work)
  cfg = train_cfg(data_dir, num_train_steps=total, checkpoint_ocdbt=False)
  loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), work, data=fake_data, progress=False)
  ref = tmp_path / "ref"
  loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path, num_train_steps=total), ONE),
                          str(ref), data=fake_data, progress=False)
  (step, got), (_, want) = params_of(work), params_of(ref)
  assert step == total
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(a, b)
  # Logs and results: every line of both invocations, as on a local disk.
  assert metric_rows(work) == metric_rows(ref)
  for name in ("eval_results.json", "loss_curve.png", "config.json"):
    assert (bucket_run / name).exists(), name
  assert json.loads((bucket_run / "eval_results.json").read_text())["metrics"] == json.loads(
      (ref / "eval_results.json").read_text())["metrics"]
  assert (bucket_run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # Read back from the bucket: load_checkpoint and evaluation.
  model, variables, config = sj.load_checkpoint(work)
  _, local_vars, _ = sj.load_checkpoint(str(ref))
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(local_vars), strict=True):
    np.testing.assert_array_equal(a, b)
  assert config["task"] == "fake_lm" and type(model).__name__ == "DecoderLM"
  results = evaluation.evaluate_checkpoint(work, data=fake_data, mesh_cfg=ONE)
  saved = json.loads((bucket_run / f"eval_validation_{total}.json").read_text())
  assert saved["metrics"] == results["metrics"] and results["step"] == total


def test_the_lock_refuses_a_second_run_on_the_same_bucket_workdir(gcs):
  work = gcs.new_path("locked")
  with WorkdirLock(work) as lock:
    assert json.loads(epath.Path(work, LOCK_FILE).read_text())["pid"] == os.getpid()
    with pytest.raises(WorkdirInUseError, match=rf"{work} is in use by another training "
                       rf"process \(pid {os.getpid()}"):
      WorkdirLock(work).acquire()
    assert lock.held
  assert not epath.Path(work, LOCK_FILE).exists()
  # And through the loop: refused before anything is written.
  with WorkdirLock(work):
    with pytest.raises(WorkdirInUseError, match="in use by another training process"):
      loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(os.path.dirname(work)), ONE),
                              work, data=fake_data, progress=False)
    assert [p.name for p in epath.Path(work).iterdir()] == [LOCK_FILE]
