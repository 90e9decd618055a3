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
import signal_phases
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
    if word in line:  # stderr shares the pipe: a warning can land on the marker's line
      return lines
  raise AssertionError(f"worker exited before printing {word}:\n{''.join(lines)}")


def sigterm_mid_run(workdir, total, wait_at):
  """Starts a training worker, SIGTERMs it while train batch `wait_at` is fetched; returns
  (exit code, output)."""
  proc = start_worker("train", workdir, total, wait_at)
  try:
    wait_for(proc, "WAITING")
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
  finally:
    proc.kill()
  return proc.returncode, out


def params_of(workdir):
  state, _, step = checkpointing.restore_source(str(workdir))
  return step, state["params"]


def test_sigterm_saves_current_step_and_resume_equals_uninterrupted(tmp_path):
  total, wait_at = 5, 2  # the signal arrives while step 3 is being fetched
  code, out = sigterm_mid_run(tmp_path / "run", total, wait_at)
  assert code == 128 + signal.SIGTERM, out
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
  # Python's own SIGINT handler to start from: an earlier test in this pytest worker may have
  # left another one (one full run found SIG_IGN), and restore() must put back what it found.
  found = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    preempt = preemption.Preemption()
    try:
      os.kill(os.getpid(), signal.SIGINT)
      assert preempt.requested and preempt.name == "SIGINT" and preempt.agreed()
      with pytest.raises(KeyboardInterrupt, match="second SIGTERM: stopped without saving"):
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
      preempt.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, found)


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


def _run(tmp_path, work, stop_after=None, **changes):
  cfg = train_cfg(tmp_path, **{"num_train_steps": 4, **changes})
  return loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), str(work), data=fake_data,
                                 stop_after=stop_after, progress=False)


def test_sigterm_during_restore_stops_before_training_and_writes_nothing(tmp_path, monkeypatch,
                                                                         capsys):
  work = tmp_path / "run"
  assert _run(tmp_path, work, checkpoint_every=1, stop_after=2) == {"step": 2, "stopped": True}
  before = {p: os.stat(p).st_mtime_ns for p in map(str, work.rglob("*")) if os.path.isfile(p)}
  signal_phases.arrange("restore", patch=monkeypatch.setattr)
  result = _run(tmp_path, work, checkpoint_every=1)
  after = {p: os.stat(p).st_mtime_ns for p in map(str, work.rglob("*")) if os.path.isfile(p)}
  assert after == before  # no file written or touched: config.json, metrics, events
  assert result == {"step": 2, "stopped": True, "preempted": "SIGTERM", "exit_code": 143}
  root = checkpointing.checkpoint_root(str(work))
  assert ("SIGTERM received before training started (set-up, restore or data): nothing was "
          f"trained since step 2 in {root}") in capsys.readouterr().out
  assert sorted(os.listdir(root)) == ["1", "2"]  # no new step, no temporary directory
  monkeypatch.undo()
  assert _run(tmp_path, work, checkpoint_every=1)["step"] == 4


def test_sigterm_during_compilation_saves_the_first_step(tmp_path, monkeypatch, capsys):
  work = tmp_path / "run"
  signal_phases.arrange("compile", patch=monkeypatch.setattr)
  result = _run(tmp_path, work)
  assert result == {"step": 1, "stopped": True, "preempted": "SIGTERM", "exit_code": 143}
  assert "SIGTERM received: checkpoint of step 1 saved in" in capsys.readouterr().out
  assert params_of(work)[0] == 1


def test_sigterm_during_final_evaluation_keeps_the_last_step_and_evaluates_on_rerun(
    tmp_path, monkeypatch, capsys):
  work = tmp_path / "run"
  signal_phases.arrange("final_eval", patch=monkeypatch.setattr)
  result = _run(tmp_path, work, eval_batches=2)
  assert result == {"step": 4, "stopped": True, "preempted": "SIGTERM", "exit_code": 143}
  out = capsys.readouterr().out
  assert ("SIGTERM received during the final evaluation (before evaluation batch 0): training "
          "is complete and step 4 is saved") in out and "eval.py --workdir" in out, out
  assert params_of(work)[0] == 4
  assert not os.path.exists(work / "eval_results.json")
  monkeypatch.undo()
  again = _run(tmp_path, work, eval_batches=2)
  assert again["step"] == 4 and "perplexity" in again["metrics"]
  assert "resumed from" in capsys.readouterr().out and (work / "eval_results.json").exists()
