"""Preemption: SIGTERM to a real training process saves the current step and exits non-zero;
the resumed run ends with exactly the parameters of an uninterrupted run. SIGINT the same;
a second signal stops at once. SIGKILL during an async save never leaves a step restore would
pick up half-written."""

import os
import signal
import subprocess
import sys

import fake_data
import jax
import numpy as np
import pytest
from test_reliability import MODEL, ONE, train_cfg

from synthesizer_jax import checkpointing, loop, preemption
from synthesizer_jax.config import RunConfig

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "reliability_worker.py")


def start_worker(*args):
  return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=HERE,
                          env={**os.environ, "PYTHONPATH": HERE})


def wait_for(proc, word):
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if line.strip() == word:
      return lines
  raise AssertionError(f"worker exited before printing {word}:\n{''.join(lines)}")


def params_of(workdir):
  state, _, step = checkpointing.restore_source(str(workdir))
  return step, state["params"]


def test_sigterm_saves_current_step_and_resume_equals_uninterrupted(tmp_path):
  total, wait_at = 5, 2  # the signal arrives while step 3 is being fetched
  proc = start_worker("train", tmp_path / "run", total, wait_at)
  try:
    wait_for(proc, "WAITING")
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
  finally:
    proc.kill()
  assert proc.returncode == 128 + signal.SIGTERM, out
  assert "SIGTERM received: checkpoint of step 3 saved in" in out, out
  assert params_of(tmp_path / "run")[0] == 3
  # The next run with the same workdir resumes at step 3 and finishes.
  cfg = train_cfg(tmp_path, num_train_steps=total)
  loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), str(tmp_path / "run"), data=fake_data,
                          progress=False)
  loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), str(tmp_path / "ref"), data=fake_data,
                          progress=False)
  (step, got), (_, want) = params_of(tmp_path / "run"), params_of(tmp_path / "ref")
  assert step == total
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_array_equal(a, b)  # bitwise on CPU: same data order, same dropout rng


def test_sigint_is_a_preemption_and_a_second_signal_stops_at_once():
  preempt = preemption.Preemption()
  try:
    os.kill(os.getpid(), signal.SIGINT)
    assert preempt.requested and preempt.name == "SIGINT" and preempt.agreed(1)
    with pytest.raises(KeyboardInterrupt, match="second SIGTERM: stopped without saving"):
      os.kill(os.getpid(), signal.SIGTERM)
  finally:
    preempt.restore()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigkill_during_async_save_never_exposes_a_half_written_step(tmp_path):
  work = tmp_path / "run"
  proc = start_worker("hang_in_save", work)
  try:
    wait_for(proc, "SAVING")
  finally:
    proc.kill()
    proc.wait()
  root = checkpointing.checkpoint_root(str(work))
  leftovers = [d for d in os.listdir(root) if d != "1"]
  assert leftovers and all(not d.isdigit() for d in leftovers), leftovers  # step 2's temp dir
  ckpt = checkpointing.Checkpointer(str(work))
  try:
    assert ckpt.latest_step() == 1 and list(ckpt.all_steps()) == [1]
  finally:
    ckpt.close()
  # A restarted run resumes from step 1 and writes step 2 for real.
  cfg = train_cfg(tmp_path, num_train_steps=2, checkpoint_every=1)
  loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), str(work), data=fake_data,
                          progress=False)
  assert params_of(work)[0] == 2
