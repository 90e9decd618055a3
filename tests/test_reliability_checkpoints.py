"""Checkpoint faults: a corrupted or truncated step fails naming the step and path, or falls back
to the newest readable step (moving the bad one aside); a workdir saved by another model config
or vocabulary is refused with the differences listed, and left untouched."""

import glob
import os

import fake_data
import pytest
from test_reliability import MODEL, ONE, train_cfg

from synthesizer_jax import checkpointing, evaluation, loading, loop
from synthesizer_jax import run as run_lib
from synthesizer_jax.config import RunConfig


def saved_workdir(tmp_path, steps=(1, 2), model=MODEL):
  """A workdir with checkpoints of a fresh state at `steps` (no training, so it is quick)."""
  run = run_lib.setup(RunConfig.build(model, train_cfg(tmp_path), ONE), data=fake_data)
  state = run_lib.initial_state(run, log=lambda *_: None)
  work = str(tmp_path / "run")
  ckpt = checkpointing.Checkpointer(work, async_save=False)
  for step in steps:
    ckpt.save(step, state, run.run_config(), {"step": step, "train_batches": step})
  ckpt.close()
  return work


def truncate_state(work, step):
  files = glob.glob(os.path.join(work, "checkpoints", str(step), "state", "**", "*"),
                    recursive=True)
  data = [f for f in files if os.path.isfile(f) and f"{os.sep}d{os.sep}" in f]
  assert data
  for path in data:
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


def snapshot(work):
  """mtime of everything in `work`, except the directory's own: the run's lock file
  (run.lock) comes and goes there while a run checks the workdir."""
  paths = glob.glob(os.path.join(work, "**"), recursive=True)
  return {p: os.path.getmtime(p) for p in paths if os.path.normpath(p) != os.path.normpath(work)}


def test_truncated_checkpoint_names_step_and_path_or_falls_back(tmp_path, capsys):
  work = saved_workdir(tmp_path)
  truncate_state(work, 2)
  step_dir = os.path.join(work, "checkpoints", "2")
  with pytest.raises(checkpointing.CheckpointError,
                     match=f"checkpoint step 2 at {step_dir} cannot be restored"):
    loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path, num_train_steps=2), ONE),
                            work, data=fake_data, progress=False)
  assert os.path.isdir(step_dir)  # nothing moved or deleted unless asked
  cfg = train_cfg(tmp_path, num_train_steps=2, restore_fallback=True)
  loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), work, data=fake_data, progress=False)
  out = capsys.readouterr().out
  assert "warning: checkpoint step 2 at" in out and "resumed from" in out and "step 1 " in out
  assert len(glob.glob(os.path.join(work, "corrupt_checkpoints", "2-*"))) == 1
  ckpt = checkpointing.Checkpointer(work, read_only=True)
  try:
    assert list(ckpt.all_steps()) == [1, 2]  # step 2 retrained from step 1 and saved anew
  finally:
    ckpt.close()
  checkpointing.restore_source(work)  # and readable


def test_corrupt_step_in_restore_source_and_eval_is_named(tmp_path):
  work = saved_workdir(tmp_path, steps=(1,))
  truncate_state(work, 1)
  with pytest.raises(checkpointing.CheckpointError, match="checkpoint step 1 at .*checkpoints/1"):
    loading.load_checkpoint(work)


@pytest.mark.parametrize("change,pattern", [
    (dict(self_attention="random"), r"model.self_attention: 'dense' in the checkpoint, 'random'"),
    (dict(num_heads=4, head_dim=4), r"model.head_dim: 8 in the checkpoint, 4 now"),
])
def test_workdir_of_another_model_config_is_refused_and_untouched(tmp_path, change, pattern):
  work = saved_workdir(tmp_path, steps=(1,))
  before = snapshot(work)
  with pytest.raises(ValueError, match=f"(?s)saved by a different run config.*{pattern}"):
    loop.train_and_evaluate(RunConfig.build({**MODEL, **change}, train_cfg(tmp_path), ONE), work,
                            data=fake_data, progress=False)
  assert snapshot(work) == before


def test_changed_vocabulary_is_refused(tmp_path):
  vocab = tmp_path / "vocab" / "fake.model"  # where fake_data's task_info says it lives
  vocab.parent.mkdir()
  vocab.write_bytes(b"pieces v1")
  work = saved_workdir(tmp_path, steps=(1,))
  vocab.write_bytes(b"pieces v2, retrained")
  with pytest.raises(ValueError, match=r"(?s)different run config.*vocabulary: .*fake.model had "
                                       r"sha256 \w+\.\.\. when saved"):
    loop.train_and_evaluate(RunConfig.build(MODEL, train_cfg(tmp_path), ONE), work, data=fake_data,
                            progress=False)
  with pytest.raises(ValueError, match="cannot be evaluated with this vocabulary"):
    evaluation.evaluate_checkpoint(work, data=fake_data, mesh_cfg=ONE)


def test_how_fields_may_change_and_older_configs_compare_by_their_legacy_values():
  """attention_impl changes how, not what: resuming with another one is fine. A config saved
  before a field existed compares as that field's legacy value (norm: rmsnorm, the layer the
  old code built), so old checkpoints load, and resume once the run asks for the same."""
  from synthesizer_jax.config import HOW_FIELDS, LEGACY_VALUES, ModelConfig

  legacy = ModelConfig(norm="rmsnorm")
  old_model = {k: v for k, v in legacy.to_dict().items() if k not in LEGACY_VALUES}
  assert ModelConfig.from_saved(old_model) == legacy
  now = {"task": "t", "model": legacy.replace(attention_impl="blockwise").to_dict()}
  assert run_lib.config_differences({"task": "t", "model": old_model}, now) == []
  new_defaults = {"task": "t", "model": ModelConfig().to_dict()}
  assert run_lib.config_differences({"task": "t", "model": old_model}, new_defaults) == [
      "model.norm: 'rmsnorm' in the checkpoint, 'layernorm' now"]
  changed = dict(now["model"], d_model=64, attention_block_size=128)
  diffs = run_lib.config_differences({"task": "t", "model": changed}, now)
  assert diffs == ["model.d_model: 64 in the checkpoint, 128 now"]
  assert set(HOW_FIELDS) <= set(LEGACY_VALUES)
