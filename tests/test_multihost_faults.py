"""Two processes (2 CPU devices each, gloo): SIGTERM to one process only makes both save the
same step through JAX's coordination service and exit 143, and the restarted run ends bitwise
equal to an uninterrupted one; processes started with different configs refuse to train."""

import json
import os
import re
import signal
import time

import numpy as np
from workers import finish, start

from synthesizer_jax import checkpointing

STEPS = 30


def steps_logged(work):
  path = os.path.join(work, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for line in f if '"train"' in line)


def final_params(work):
  state, _, step = checkpointing.restore_source(work)
  assert step == STEPS
  return state["params"]


def test_sigterm_to_one_process_saves_the_same_step_on_both_and_resumes_bitwise(tmp_path):
  data_dir = str(tmp_path / "data")
  os.makedirs(data_dir)
  train = {"num_train_steps": STEPS, "checkpoint_every": 1000}
  ref = str(tmp_path / "ref")
  codes, outs = finish(start(ref, data_dir, {"train": train}))
  assert codes == [0, 0], outs[0][-3000:] + outs[1][-3000:]

  work = str(tmp_path / "run")
  procs = start(work, data_dir, {"train": train, "sleep": 0.3})
  deadline = time.time() + 300
  while steps_logged(work) < 3 and time.time() < deadline:
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)  # process 1 only
  codes, outs = finish(procs)
  assert codes == [143, 143], outs[0][-3000:] + outs[1][-3000:]
  ckpt = checkpointing.Checkpointer(work, read_only=True)
  saved = ckpt.all_steps()
  ckpt.close()
  assert len(saved) == 1 and 3 <= saved[0] < STEPS, saved
  assert f"SIGTERM received: checkpoint of step {saved[0]} saved" in outs[0]
  assert "preemption agreed by sync_point across 2 processes" in outs[0]

  codes, outs = finish(start(work, data_dir, {"train": train}))
  assert codes == [0, 0], outs[0][-3000:] + outs[1][-3000:]
  assert f"resumed from {os.path.join(work, 'checkpoints')} step {saved[0]}" in outs[0]
  got, want = _leaves(final_params(work)), _leaves(final_params(ref))
  assert [p for p, _ in got] == [p for p, _ in want]
  for (path, g), (_, w) in zip(got, want, strict=True):
    np.testing.assert_array_equal(g, w, err_msg=path)


def _leaves(tree, prefix=""):
  if isinstance(tree, dict):
    return [x for k in sorted(tree) for x in _leaves(tree[k], f"{prefix}/{k}")]
  return [(prefix, np.asarray(tree))]


def test_processes_with_different_configs_refuse_to_train(tmp_path):
  data_dir = str(tmp_path / "data")
  os.makedirs(data_dir)
  work = str(tmp_path / "run")
  procs = start(work, data_dir, per_process={0: {}, 1: {"train": {"learning_rate": 0.02}}})
  codes, outs = finish(procs)
  assert codes[0] != 0 and codes[1] != 0
  for out in outs:
    assert "train.learning_rate" in out and "process 1" in out, out[-3000:]
  assert not os.path.exists(os.path.join(work, "checkpoints")) or not os.listdir(
      os.path.join(work, "checkpoints"))


def test_a_killed_process_is_named_and_the_others_stop_in_bounded_time(tmp_path):
  data_dir = str(tmp_path / "data")
  os.makedirs(data_dir)
  work = str(tmp_path / "run")
  options = {"train": {"num_train_steps": STEPS, "checkpoint_every": 2}, "sleep": 0.3,
             "heartbeat": 5}
  procs = start(work, data_dir, options)
  deadline = time.time() + 300
  while steps_logged(work) < 5 and time.time() < deadline:
    time.sleep(0.2)
  procs[1].kill()  # SIGKILL: no handler runs, no goodbye to the coordination service
  killed = time.time()
  out = procs[0].communicate(timeout=120)[0]
  procs[1].communicate()
  assert time.time() - killed < 60, "process 0 waited too long for the lost process"
  assert procs[0].returncode != 0, out[-3000:]
  # Whichever comes first names process 1: our LostProcessError (a collective failed), or the
  # coordination service ending the process once process 1 missed its heartbeats.
  ours = "process(es) [1] stopped answering the coordination service" in out
  jax_own = re.search(r"unhealthy \(stopped sending heartbeats\):\s*1\b", out)
  assert ours or jax_own, out[-3000:]
  ckpt = checkpointing.Checkpointer(work, read_only=True)
  last = ckpt.latest_step()
  ckpt.close()
  assert last is not None and last >= 2
  if ours:
    assert procs[0].returncode == 75 and f"Last complete checkpoint: step {last} in" in out
  codes, outs = finish(start(work, data_dir, {"train": options["train"]}))
  assert codes == [0, 0], outs[0][-3000:]
  assert f"resumed from {os.path.join(work, 'checkpoints')} step {last}" in outs[0]


def test_sigterm_to_one_process_during_restore_compilation_or_final_evaluation(tmp_path):
  """Each phase outside the step loop, SIGTERM to process 1 only: both processes exit 143 at
  the same point with the message, no step is lost, nothing half-written, the rerun goes on."""
  data_dir = str(tmp_path / "data")
  os.makedirs(data_dir)
  work = str(tmp_path / "run")
  train = {"num_train_steps": 4, "checkpoint_every": 1000, "eval_batches": 2}
  root = os.path.join(work, "checkpoints")

  def both(options, code):
    codes, outs = finish(start(work, data_dir, {"train": train, **options}))
    assert codes == [code, code], outs[0][-3000:] + outs[1][-3000:]
    return outs[0]

  # Compilation of a fresh run: the step in flight (the first) is saved.
  out = both({"signal_at": "compile"}, 143)
  assert f"SIGTERM received: checkpoint of step 1 saved in {root}" in out, out[-3000:]
  assert sorted(os.listdir(root)) == ["1"]
  # Restore: nothing trained since step 1, so nothing is written.
  out = both({"signal_at": "restore"}, 143)
  assert ("SIGTERM received before training started (set-up, restore or data): nothing was "
          f"trained since step 1 in {root}") in out, out[-3000:]
  assert sorted(os.listdir(root)) == ["1"]
  # The final evaluation: training finished and its last step is saved, no results yet.
  out = both({"signal_at": "final_eval"}, 143)
  assert ("SIGTERM received during the final evaluation (before evaluation batch 0): training is "
          f"complete and step 4 is saved in {root}") in out, out[-3000:]
  assert sorted(os.listdir(root)) == ["1", "4"]
  assert not os.path.exists(os.path.join(work, "eval_results.json"))
  # The rerun trains nothing and evaluates.
  out = both({}, 0)
  assert f"resumed from {root} step 4" in out and "validation: loss" in out, out[-3000:]
  with open(os.path.join(work, "eval_results.json")) as f:
    results = json.load(f)
  # The LM references, summed over both processes (float64 gathered exactly), made it too.
  assert results["step"] == 4 and results["metrics"]["unigram_perplexity"] > 1
