"""Orbax checkpoints: one CheckpointManager per workdir, restore onto any mesh, fine-tune loading.

Layout: `<workdir>/checkpoints/<step>/{state,config,meta}`: `state` is the
`TrainState` pytree, `config` the JSON of the run (model and train configs, task,
vocabulary path), `meta` the data position. Orbax writes each step to a temporary
directory and renames it when complete, so a half-written step is never restored; a save
that fills the disk raises `diskfull.DiskFullError` with what to free (`diskfull.py`); a
save to a bucket that fails (the store unreachable past its retries) raises `StoreError`
naming the store, the step and the last complete step. Every path is a `paths.Path`
(etils.epath), so the workdir may be local or gs://.

Restore always targets an abstract state whose leaves carry the *current*
mesh's shardings, so a checkpoint written on 8 devices restores on 1 and back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from synthesizer_jax import paths
from synthesizer_jax.checksums import mismatches, tree_checksums
from synthesizer_jax.diskfull import disk_full_error

CHECKPOINT_DIR = "checkpoints"
SET_ASIDE_DIR = "corrupt_checkpoints"  # unreadable steps are moved here on a fallback restore
STORE_ERROR_LIST_S = 10.0  # how long a failed save to a bucket waits to name the last step


class CheckpointError(RuntimeError):
  """A checkpoint step that cannot be read: corrupted, truncated, or saved by another model."""


class StoreError(OSError):
  """A save to object storage failed (the store unreachable or refusing past its retries)."""


def _unreadable(step: int, path: str, error: Exception) -> CheckpointError:
  first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
  return CheckpointError(
      f"checkpoint step {step} at {path} cannot be restored ({type(error).__name__}: {first}). "
      "Its files are corrupted or truncated, or it was saved by a different model. Restore an "
      "earlier step (step=..., or TrainConfig.restore_fallback=True to take the newest readable "
      f"one and move this one to {SET_ASIDE_DIR}/), or delete it.")


def verify_checksums(state, meta: dict[str, Any], step: int, path: str) -> int:
  """CheckpointError naming the arrays whose bits differ from what was saved; returns how many
  arrays were checked (0 for checkpoints saved before checksums were recorded)."""
  expected = meta.get("checksums")
  if not expected:
    return 0
  bad = mismatches(state, expected)
  if bad:
    raise CheckpointError(
        f"checkpoint step {step} at {path} decodes, but {len(bad)} arrays differ from what was "
        f"saved (a flipped bit on disk or in a copy): {', '.join(bad[:3])}. Restore an earlier "
        f"step (step=..., or TrainConfig.restore_fallback=True to take the newest good one and "
        f"move this one to {SET_ASIDE_DIR}/), or delete it.")
  return len(expected)


def abstract_like(tree, shardings):
  """ShapeDtypeStructs of `tree` carrying `shardings` (the restore target)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def checkpoint_root(workdir: paths.PathLike) -> paths.Path:
  return paths.as_path(workdir) / CHECKPOINT_DIR


class Checkpointer:
  """Saves and restores `TrainState`s of one workdir (async saves, keep the newest N)."""

  def __init__(self, workdir: paths.PathLike, *, keep: int = 3, async_save: bool = True,
               read_only: bool = False, verify: bool = True, ocdbt: bool = True):
    self.verify, self.keep = verify, keep
    self._state_bytes = 0
    self._failed = False
    self._saving: int | None = None  # the step of the save last started
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep, enable_async_checkpointing=async_save,
        create=not read_only)
    self.directory = checkpoint_root(workdir)
    handlers = {"state": ocp.StandardCheckpointHandler(use_ocdbt=ocdbt),
                "config": ocp.JsonCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> Sequence[int]:
    return self.manager.all_steps()

  def save(self, step: int, state, config: dict[str, Any], meta: dict[str, Any],
           force: bool = True) -> bool:
    """Starts an (async) save of `state` with the run config and data position beside it.

    `meta` also records a checksum of every array (`checksums.tree_checksums`, computed on
    device), which `restore` verifies.
    """
    meta = {**meta, "checksums": tree_checksums(state)}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              config=ocp.args.JsonSave(config),
                              meta=ocp.args.JsonSave(meta))
    self._state_bytes = sum(x.nbytes for x in jax.tree.leaves(state) if hasattr(x, "nbytes"))
    with self._disk_errors():  # a failed async save surfaces at the next save
      started = self.manager.save(step, args=args, force=force)
    self._saving = step
    return started

  @contextlib.contextmanager
  def _disk_errors(self):
    """Re-raises a save's ENOSPC as `DiskFullError` naming the workdir, the space needed and
    the last complete step (after removing the unfinished save)."""
    try:
      yield
    except Exception as e:
      error = None
      if paths.is_remote(self.directory):
        error = self._store_error(e)
      elif jax.process_index() == 0:
        error = disk_full_error(e, str(self.directory), last_complete=self._last_complete(),
                                keep=self.keep, state_bytes=self._state_bytes)
      if error is None:
        raise
      self._failed = True
      raise error from e

  def _store_error(self, error: Exception) -> StoreError:
    """The failed save named by store, step and last complete step (steps never half-listed:
    Orbax lists a step only once its commit marker is written)."""
    try:
      last = paths.within(STORE_ERROR_LIST_S, self._last_complete)
      kept = (f"the last complete checkpoint is step {last}, which a rerun resumes from"
              if last is not None else "no checkpoint was complete yet")
    except Exception:  # noqa: BLE001 - the store may still be down
      kept = "the store could not be listed to find the last complete step"
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    which = f"checkpoint step {self._saving}" if self._saving is not None else "a checkpoint"
    return StoreError(
        f"saving {which} to {self.directory} failed: the store {paths.bucket_of(self.directory)} "
        f"did not take it ({type(error).__name__}: {first}); {kept}. Check that the store is "
        "reachable, then run the same command again.")

  def _last_complete(self) -> int | None:
    self.manager.reload()
    return self.manager.latest_step()

  def step_path(self, step: int) -> paths.Path:
    return self.directory / str(step)

  def require_step(self, step: int) -> None:
    """FileNotFoundError listing the steps there are, when `step` is not one of them."""
    steps = sorted(self.all_steps())
    if step not in steps:
      there = f"the steps there are {steps}" if steps else "it holds no checkpoint yet"
      raise FileNotFoundError(f"no checkpoint step {step} in {self.directory}; {there}. Pass "
                              "one of them, or no step for the latest")

  def restore(self, target, step: int | None = None, *, fallback: bool = False,
              log=print) -> tuple[Any, dict[str, Any]]:
    """(state, meta) of `step` (default: latest), placed like the abstract `target`.

    An unreadable step, or one whose arrays do not match the checksums saved with them
    (checked unless `verify=False`), raises CheckpointError naming the step and its path. With
    `fallback` (and no explicit `step`), unreadable steps are instead moved to
    `<workdir>/corrupt_checkpoints/` (never deleted) and the newest readable step is
    restored; meta["step"] says which.
    """
    if step is not None:
      self.require_step(step)
    steps = sorted(self.all_steps(), reverse=True) if step is None else [step]
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    for candidate in steps:
      try:
        out = self.manager.restore(candidate, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        if self.verify:
          verify_checksums(out.state, dict(out.meta), candidate, self.step_path(candidate))
      except Exception as e:  # Orbax / TensorStore raise many types for bad files
        error = e if isinstance(e, CheckpointError) else _unreadable(
            candidate, self.step_path(candidate), e)
        if not fallback or step is not None:
          raise error from e
        log(f"warning: {error}")
        self._set_aside(candidate, log)
        continue
      return out.state, {"step": candidate, **dict(out.meta)}
    raise CheckpointError(f"no step in {self.directory} could be restored (tried {steps}); "
                          f"the unreadable ones are in {SET_ASIDE_DIR}/ beside it")

  def _set_aside(self, step: int, log):
    """Moves an unreadable step out of the manager's sight, so new saves can reuse its number."""
    if jax.process_index() == 0:
      aside = self.directory.parent / SET_ASIDE_DIR
      aside.mkdir(parents=True, exist_ok=True)
      dest = aside / f"{step}-{int(time.time())}"
      self.step_path(step).rename(dest)
      log(f"moved unreadable step {step} to {dest}")
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
    self.manager.reload()

  def config(self, step: int | None = None) -> dict[str, Any]:
    """The run config JSON saved with `step` (default: latest)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    self.require_step(step)
    try:
      return dict(self.manager.restore(step, args=ocp.args.Composite(
          config=ocp.args.JsonRestore())).config)
    except Exception as e:  # Orbax raises many types for bad files
      raise _unreadable(step, self.step_path(step), e) from e

  def wait(self):
    with self._disk_errors():
      self.manager.wait_until_finished()

  def close(self):
    try:
      with self._disk_errors():
        self.manager.close()
    except Exception:
      if not self._failed:  # a disk-full error was raised already: do not raise it twice
        raise


def _locate(path: paths.PathLike) -> tuple[paths.Path, int | None]:
  """(workdir, step) for a workdir, its checkpoints/ dir or one step dir inside it."""
  path = paths.as_path(path)
  paths.check_bucket(path)
  if not path.exists():
    raise FileNotFoundError(f"checkpoint path {path} does not exist")
  if path.name.isdigit() and path.parent.name == CHECKPOINT_DIR:
    return path.parent.parent, int(path.name)
  if path.name == CHECKPOINT_DIR:
    return path.parent, None
  if not (path / CHECKPOINT_DIR).is_dir():
    raise FileNotFoundError(f"{path} holds no {CHECKPOINT_DIR}/ directory; pass a workdir of "
                            "train.py or one of its checkpoints/<step> directories")
  return path, None


def restore_source(path: paths.PathLike, step: int | None = None, *, verify: bool = True):
  """(state tree as plain dicts / lists of NumPy arrays, config, step) of any checkpoint.

  Needs no knowledge of the source run's optimizer: the target is built from the
  checkpoint's own metadata and placed on one local device. The arrays are checked
  against the checksums saved with them (`verify`).
  """
  workdir, located_step = _locate(path)
  ckpt = Checkpointer(workdir, read_only=True)
  try:
    step = step if step is not None else located_step
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint steps in {ckpt.directory}")
    ckpt.require_step(step)
    try:
      meta = ckpt.manager.item_metadata(step)
      device = jax.local_devices()[0]
      single = jax.sharding.SingleDeviceSharding(device)
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=single),
                            meta.state.tree if hasattr(meta.state, "tree") else meta.state)
      out = ckpt.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), config=ocp.args.JsonRestore(),
          meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax / TensorStore raise many types for bad files
      raise _unreadable(step, ckpt.step_path(step), e) from e
    if verify:
      verify_checksums(out.state, dict(out.meta), step, ckpt.step_path(step))
    return jax.tree.map(np.asarray, out.state), dict(out.config), step
  finally:
    ckpt.close()


def verify_workdir(workdir: paths.PathLike, log=print) -> int:
  """Restores and checks every step of `workdir`; returns the number of bad steps."""
  ckpt = Checkpointer(workdir, read_only=True)
  steps = sorted(ckpt.all_steps())
  ckpt.close()
  if not steps:
    raise FileNotFoundError(f"no checkpoint steps in {checkpoint_root(workdir)}")
  bad = 0
  for step in steps:
    try:
      restore_source(workdir, step)
    except CheckpointError as e:
      bad += 1
      log(f"step {step}: BAD: {e}")
    else:
      log(f"step {step}: ok")
  return bad


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m synthesizer_jax.checkpointing verify WORKDIR`: exit 1 if any step is bad."""
  import argparse

  parser = argparse.ArgumentParser(prog="python -m synthesizer_jax.checkpointing",
                                   description="Check every checkpoint step of a workdir: "
                                   "readable, and every array equal to its saved checksum.")
  parser.add_argument("command", choices=["verify"])
  parser.add_argument("workdir")
  args = parser.parse_args(argv)
  return 1 if verify_workdir(args.workdir) else 0


if __name__ == "__main__":
  import sys

  sys.exit(main())
