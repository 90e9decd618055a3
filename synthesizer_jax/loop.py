"""The training loop: `train_and_evaluate(run_cfg, workdir)`.

Reads a seqio task through `synthesizer_jax.data` (or a stand-in module with the same
functions), creates or restores a sharded train state, and trains with periodic logging,
evaluation and Orbax checkpoints. A restarted run continues from the latest checkpoint,
at the same data position. Each step's metrics are read one step late (`prev`), so the
host never waits on the step it has just launched.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import jax
import numpy as np

from synthesizer_jax import checkpointing, evaluation, logging_utils, paths
from synthesizer_jax import sharding as shd
from synthesizer_jax import steps as steps_lib
from synthesizer_jax.agreement import check_processes_agree, lost_process_error
from synthesizer_jax.config import RunConfig, TrainConfig
from synthesizer_jax.preemption import Preemption
from synthesizer_jax.run import Run, check_resumable, initial_state, setup
from synthesizer_jax.workdir_lock import WorkdirInUseError, WorkdirLock


class NonFiniteError(FloatingPointError):
  """Training met a NaN or Inf loss or gradient (TrainConfig.on_nonfinite decides when)."""


class NonFiniteGuard:
  """Reads each step's `nonfinite` flag and stops or counts skips."""

  def __init__(self, cfg: TrainConfig, ckpt: checkpointing.Checkpointer, log):
    self.cfg, self.ckpt, self.log = cfg, ckpt, log
    self.in_a_row = 0
    self.skipped = 0

  def check(self, step: int, metrics: dict[str, float]) -> None:
    bad_ids = int(metrics.get("bad_token_ids", 0))
    if bad_ids:
      raise ValueError(
          f"step {step}: the batch held {bad_ids} token ids outside [0, vocab_size); the update "
          "was dropped and training stopped. The data and the model's vocabulary disagree: "
          "encode with the model's vocabulary, or set ModelConfig.vocab_size to cover it.")
    if not int(metrics["nonfinite"]):
      self.in_a_row = 0
      return
    self.in_a_row += 1
    self.skipped += 1
    loss, norm = metrics["loss"], metrics["grad_norm"]
    what = f"step {step}: loss {loss} / gradient norm {norm} is not finite; the update was dropped"
    if self.cfg.on_nonfinite == "skip" and self.in_a_row <= self.cfg.max_consecutive_skips:
      self.log(f"warning: {what} (on_nonfinite='skip'; {self.in_a_row} in a row, "
               f"{self.skipped} in this run)")
      return
    last = self.ckpt.latest_step()
    kept = f"step {last} in {self.ckpt.directory}" if last is not None else "none yet"
    reason = (f"{self.in_a_row} bad steps in a row (max_consecutive_skips="
              f"{self.cfg.max_consecutive_skips})" if self.cfg.on_nonfinite == "skip"
              else "on_nonfinite='stop'")
    raise NonFiniteError(
        f"{what} and training stopped ({reason}). Last good checkpoint: {kept}; a rerun resumes "
        "there. Fixes: lower learning_rate, longer warmup_steps, smaller clip_norm, float32, "
        "check the data near this step, or on_nonfinite='skip' to drop such updates.")


def _last_complete(ckpt: checkpointing.Checkpointer) -> str:
  try:
    step = ckpt.latest_step()
  except Exception:  # noqa: BLE001 - reporting only
    return f"unknown (see {ckpt.directory})"
  return f"step {step} in {ckpt.directory}" if step is not None else "none yet"


def _restore_or_init(run: Run, ckpt: checkpointing.Checkpointer, log):
  """(state, first data batch to read): the latest checkpoint of the workdir, or a fresh state.

  A workdir saved by another model config is refused before anything is written to it.
  """
  start = ckpt.latest_step()
  if not start:
    return initial_state(run, log), 0
  try:
    check_resumable(ckpt, start, run)
  except checkpointing.CheckpointError:
    if not run.cfg.restore_fallback:
      raise
  state, meta = ckpt.restore(run.abstract_state(), fallback=run.cfg.restore_fallback, log=log)
  if meta["step"] != start:
    check_resumable(ckpt, meta["step"], run)
  log(f"resumed from {ckpt.directory} step {meta['step']} (data position: "
      f"{meta['train_batches']} batches)")
  return state, int(meta["train_batches"])


def train_and_evaluate(config: RunConfig, workdir: paths.PathLike, *, data=None,
                       stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
  """Trains (resuming from `workdir` if it holds checkpoints), evaluates, returns eval results.

  Args:
    config: the run (`config.parse_config` of a ConfigDict, or `RunConfig.build`).
    workdir: checkpoints, metrics.jsonl, TensorBoard events, eval JSON and loss curve go here:
      a local directory or a bucket URL (gs://bucket/run). A path that exists as a file, or
      a bucket that does not exist, is refused before any set-up.
    data: the data module (default `synthesizer_jax.data`).
    stop_after: stop (with a checkpoint) after this many steps of this invocation, as a
      preemption would; used by tests and for time-boxed jobs.
    progress: show the progress bar.

  Returns:
    Eval results with "step"; or {"step", "stopped": True} when stopped early, plus
    "preempted" (signal name) and "exit_code" (128 + signal number) after SIGTERM / SIGINT.
    A signal is honoured from the start of the call to the end of the final evaluation:
    during set-up or restore the run stops before its first step (nothing new to save);
    during compilation or a step, that step is saved first; during the final evaluation
    (the last step already saved) the evaluation stops between batches and writes nothing.
    Raises NonFiniteError on a NaN/Inf step (see TrainConfig.on_nonfinite).
  """
  # First of all: a signal during set-up, restore or compilation is then a request too.
  preempt = Preemption()
  try:
    workdir = paths.check_dir(workdir)
    run = setup(config, data)
    check_processes_agree(run.run_config())
    lead = jax.process_index() == 0
    log = print if lead else (lambda *a, **k: None)
    workdir.mkdir(parents=True, exist_ok=True)
    with hold_workdir(workdir, log):
      return _train_and_evaluate(run, workdir, log, stop_after, progress, preempt)
  finally:
    preempt.restore()


def _preempted(preempt: Preemption, step: int, message: str, log) -> dict[str, Any]:
  log(f"{preempt.name} received{message}")
  return {"step": step, "stopped": True, "preempted": preempt.name,
          "exit_code": 128 + preempt.signum}


@contextlib.contextmanager
def hold_workdir(workdir: paths.PathLike, log):
  """The workdir lock, taken by process 0 for every process of the run (all refuse together)."""
  lock = WorkdirLock(workdir, enabled=jax.process_index() == 0, log=log)
  error = None
  try:
    lock.acquire()
  except WorkdirInUseError as e:
    error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    refused = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if refused and error is None:
      error = WorkdirInUseError(f"process 0 could not lock {workdir}; see its log")
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    lock.release()


def _train_and_evaluate(run: Run, workdir: paths.Path, log, stop_after: int | None, progress: bool,
                        preempt: Preemption) -> dict[str, Any]:
  cfg, config = run.cfg, run.config
  lead = jax.process_index() == 0
  ckpt = checkpointing.Checkpointer(workdir, keep=cfg.keep_checkpoints,
                                    async_save=cfg.async_checkpoints,
                                    verify=cfg.verify_checkpoints,
                                    ocdbt=cfg.checkpoint_ocdbt)
  try:
    state, start = _restore_or_init(run, ckpt, log)
  except BaseException:
    ckpt.close()
    raise
  batches = run.dataset("train", train=True, start_batch=start)
  if preempt.agreed():  # asked by every process once, before the first step and any write
    ckpt.close()
    since = f"step {start} in {ckpt.directory}" if start else "the start (no checkpoint yet)"
    return _preempted(preempt, start, f" before training started (set-up, restore or data): "
                      f"nothing was trained since {since}, so nothing new was saved. Run the "
                      "same command again to continue.", log)
  writer = logging_utils.MetricWriter(workdir, enabled=lead)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  log(f"model: {type(run.model).__name__} self_attention={run.model_cfg.self_attention}, "
      f"{n_params:,} parameters; task {cfg.task}; mesh {dict(run.mesh.shape)} rules "
      f"{config.mesh.rules}; workdir {workdir}")
  if lead:
    paths.write_text(workdir / "config.json", json.dumps(run.run_config(), indent=2))
  bar = logging_utils.Progress(start, cfg.num_train_steps, enabled=lead and progress)
  if jax.process_count() > 1:
    log(f"preemption agreed by {preempt.mode} across {jax.process_count()} processes")
  guard = NonFiniteGuard(cfg, ckpt, log)
  end = cfg.num_train_steps if stop_after is None else min(cfg.num_train_steps, start + stop_after)
  step = last_saved = last_logged = start
  stop = False
  lost = None  # LostProcessError when a process of a multi-process run is gone
  prev = None  # (step, device metrics) of the step launched before the current one

  def settle(entry, force_log: bool = False):
    """Host side of a finished step: the NaN check, then logging when due."""
    nonlocal last_logged
    at, scalars = entry[0], {k: float(v) for k, v in jax.device_get(entry[1]).items()}
    guard.check(at, scalars)
    if at % cfg.log_every == 0 or force_log:
      rate, tok_rate = bar.report(scalars["loss"])
      writer.write(at, {**scalars, "steps_per_sec": rate, "tokens_per_sec": tok_rate})
      last_logged = at

  try:
    for step in range(start + 1, end + 1):
      batch = next(batches)
      steps_lib.check_batch(batch, run.shape, run.local_batch_size, run.model_cfg.vocab_size)
      state, metrics = run.train_step(state, shd.global_batch(batch, run.mesh))
      tokens = run.shape.batch_tokens(batch, run.model_cfg.pad_id)
      bar.advance(step, float(tokens) * jax.process_count())
      if prev is not None:
        settle(prev)
      prev = (step, metrics)
      if step % cfg.eval_every == 0 and step != end:
        # Teacher-forced only, but a mixture's members also decode: their own metrics
        # (accuracy, BLEU, ROUGE) are what multi-task fine-tuning is followed by.
        results = evaluation.evaluate(run, state, predict_batches=None if run.members else 0)
        writer.write(step, results["metrics"], prefix="eval")
        bar.write(f"step {step}: eval " + ", ".join(
            f"{k} {v:.4g}" for k, v in results["metrics"].items()))
      stop = preempt.agreed()
      if step % cfg.checkpoint_every == 0 or stop:
        settle(prev)  # never save a step that is not known to be finite
        prev = None
        ckpt.save(step, state, run.run_config(), {"step": step, "train_batches": step})
        last_saved = step
      if stop:
        break
    if prev is not None:
      settle(prev, force_log=True)
    elif step > last_logged:
      writer.write(step, {k: float(v) for k, v in jax.device_get(metrics).items()})
    bar.close()
    if step != last_saved:
      ckpt.save(step, state, run.run_config(), {"step": step, "train_batches": step})
    ckpt.wait()  # durable before we report it or exit
  except Exception as err:
    if jax.process_count() > 1 and not isinstance(err, NonFiniteError):
      lost = lost_process_error(err, _last_complete(ckpt))
      if lost is not None:
        raise lost from err  # no close: an async save would wait for the lost process
    raise
  finally:
    if lost is None:
      ckpt.close()
  if stop:
    writer.close()
    return _preempted(preempt, step, f": checkpoint of step {step} saved in {ckpt.directory}; "
                      "stopping. Run the same command again to resume from it.", log)
  if step < cfg.num_train_steps:
    writer.close()
    return {"step": step, "stopped": True}
  try:
    results = evaluation.final_results(run, state, stop=preempt.agreed)
  except evaluation.Stopped as where:
    writer.close()
    return _preempted(preempt, step, f" during the final evaluation ({where}): training is "
                      f"complete and step {step} is saved in {ckpt.directory}; no results were "
                      "written. Run the same command again to evaluate it (it restores step "
                      f"{step} and trains no further), or: python eval.py --workdir {workdir}",
                      log)
  writer.write(step, results["metrics"], prefix="eval")
  writer.close()
  evaluation.write_results(workdir, step, results)
  curve = logging_utils.plot_loss_curve(workdir) if lead else None
  log("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in results["metrics"].items()))
  for key in ("sample", "sample_top_p"):
    if key in results:
      log(f"{key}: {results[key]}")
  log(f"checkpoint: {ckpt.directory}/{step}; results: "
      f"{workdir / evaluation.RESULTS_FILE}"
      + (f"; loss curve: {curve}" if curve else ""))
  return {"step": step, **results}
