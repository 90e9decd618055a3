"""The training loop: `train_and_evaluate(model_fields, train_cfg, mesh_cfg, workdir)`.

Reads a seqio task through `synthesizer_jax.data` (or any object with the same
`task_info / get_dataset / get_vocabulary` functions, which tests pass in),
builds the model for the task's shape, creates or restores a sharded train state,
and trains with periodic logging, evaluation and Orbax checkpoints. A restarted
run continues from the latest checkpoint, at the same data position.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from synthesizer_jax import attention as registry
from synthesizer_jax import checkpointing, evaluation, logging_utils, training
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import HOW_FIELDS, LEGACY_VALUES, ModelConfig
from synthesizer_jax.transformer import DecoderLM, EncoderClassifier, EncoderDecoder

RESULTS_FILE = "eval_results.json"


def _data_module():
  from synthesizer_jax import data

  return data


def build_model(shape: str, cfg: ModelConfig, num_classes: int | None = None):
  if shape == "lm":
    return DecoderLM(cfg)
  if shape == "encdec":
    return EncoderDecoder(cfg)
  if shape == "classifier":
    return EncoderClassifier(cfg, num_classes=num_classes)
  raise ValueError(f"unknown model shape {shape!r}; expected one of {training.SHAPES}")


def model_config(fields: Mapping[str, Any], vocab_size: int) -> ModelConfig:
  """ModelConfig from config fields; vocab_size 0 (or absent) takes the task vocabulary's."""
  fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(fields).items()}
  known = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"unknown model config fields {unknown}; valid fields: {sorted(known)}")
  if not fields.get("vocab_size"):
    fields["vocab_size"] = vocab_size
  elif fields["vocab_size"] < vocab_size:
    raise ValueError(f"model.vocab_size={fields['vocab_size']} is smaller than the task "
                     f"vocabulary ({vocab_size}); set it to 0 to use the vocabulary's size")
  return ModelConfig(**fields)


def _file_sha256(path: str | None) -> str | None:
  """Content hash of a vocabulary file (None when there is no such file)."""
  if not path or not os.path.isfile(path):
    return None
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _plain(value):
  return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """What makes a checkpoint's run config unfit for this run: model, task, vocabulary.

  Training settings (learning rate, steps, batch size, mesh) and how the model computes
  (config.HOW_FIELDS: the attention implementation) may change between runs.
  The vocabulary is compared by content hash when both sides have one, else by path.
  """
  diffs = [f"{key}: {saved.get(key)!r} in the checkpoint, {current.get(key)!r} now"
           for key in ("task", "shape", "num_classes") if saved.get(key) != current.get(key)]
  old_vocab, new_vocab = saved.get("vocab_sha256"), current.get("vocab_sha256")
  if old_vocab and new_vocab:
    if old_vocab != new_vocab:
      diffs.append(f"vocabulary: {saved.get('vocab_path')} had sha256 {old_vocab[:12]}... when "
                   f"saved, {current.get('vocab_path')} has {new_vocab[:12]}... now (token ids "
                   "would mean other pieces)")
  elif saved.get("vocab_path") != current.get("vocab_path"):
    diffs.append(f"vocab_path: {saved.get('vocab_path')!r} in the checkpoint, "
                 f"{current.get('vocab_path')!r} now")
  old_model = {**LEGACY_VALUES, **saved.get("model", {})}
  new_model = current.get("model", {})
  for key in sorted((set(old_model) | set(new_model)) - set(HOW_FIELDS)):
    if _plain(old_model.get(key)) != _plain(new_model.get(key)):
      diffs.append(f"model.{key}: {old_model.get(key)!r} in the checkpoint, "
                   f"{new_model.get(key)!r} now")
  return diffs


def check_resumable(ckpt: checkpointing.Checkpointer, step: int, run: Run):
  """Refuses (ValueError listing every difference) a workdir saved by another model config."""
  diffs = config_differences(ckpt.config(step), run.run_config())
  if diffs:
    raise ValueError(
        f"{ckpt.step_path(step)} was saved by a different run config, so this run cannot "
        "resume from it; nothing in the workdir was changed. Differences:\n  "
        + "\n  ".join(diffs) + "\nUse another --workdir, or set these back to the "
        "checkpoint's values.")


@dataclasses.dataclass
class Run:
  """Everything a train or eval run needs, built once by `setup`."""

  cfg: training.TrainConfig
  mesh_cfg: shd.MeshConfig
  model_cfg: ModelConfig
  shape: str
  info: Any
  vocab: Any
  data: Any
  model: Any
  mesh: Any
  rules: Any
  tx: Any
  shardings: Any
  train_step: Any
  eval_step: Any

  @property
  def local_batch_size(self) -> int:
    return self.cfg.batch_size // jax.process_count()

  def run_config(self) -> dict[str, Any]:
    """The JSON saved beside every checkpoint."""
    return {"task": self.cfg.task, "shape": self.shape, "metric": self.info.metric,
            "num_classes": self.info.num_classes, "vocab_path": self.info.vocab_path,
            "vocab_sha256": _file_sha256(self.info.vocab_path),
            "model": self.model_cfg.to_dict(), "train": self.cfg.to_dict(),
            "mesh": dataclasses.asdict(self.mesh_cfg)}

  def dataset(self, split: str, *, train: bool, start_batch: int = 0):
    c = self.cfg
    return self.data.get_dataset(
        c.task, split, feature_lengths=c.feature_lengths(self.shape),
        batch_size=self.local_batch_size, pack=train and c.pack and self.shape != "classifier",
        shuffle=train, seed=c.seed, data_dir=c.data_dir, shard_index=jax.process_index(),
        num_shards=jax.process_count(), start_batch=start_batch, repeat=train)

  def eval_batches(self, split: str = "validation"):
    return self.dataset(split, train=False)

  def abstract_state(self):
    """The state's shapes with the current mesh's shardings (the restore target)."""
    return training.abstract_state(self.model, self.shape, self.tx,
                                   self.cfg.feature_lengths(self.shape), self.shardings)


def setup(model_fields: Mapping[str, Any], cfg: training.TrainConfig,
          mesh_cfg: shd.MeshConfig | None = None, data=None) -> Run:
  """Checks the config against the task and devices and builds model, mesh and steps."""
  data = data or _data_module()
  mesh_cfg = mesh_cfg or shd.MeshConfig()
  if cfg.task not in data.TASKS:
    raise ValueError(f"unknown task {cfg.task!r}; known tasks: {', '.join(data.TASKS)}")
  if not os.path.isdir(cfg.data_dir):
    raise FileNotFoundError(
        f"data directory {os.path.abspath(cfg.data_dir)} does not exist; prepare it with "
        f"`python -m synthesizer_jax.data.prepare --data_dir {cfg.data_dir}` (or `make train`)")
  info = data.task_info(cfg.task, cfg.data_dir)
  vocab = data.get_vocabulary(cfg.task, cfg.data_dir)
  model_cfg = model_config(model_fields, vocab.vocab_size)
  shape = info.shape
  lengths = cfg.feature_lengths(shape)
  kinds = [model_cfg.self_attention] + ([model_cfg.cross_attention] if shape == "encdec" else [])
  if any(registry.uses_positions(k) for k in kinds) and max(lengths.values()) > model_cfg.max_len:
    raise ValueError(f"feature lengths {lengths} exceed model.max_len={model_cfg.max_len}, the "
                     f"longest sequence synthetic attention {kinds} can handle; raise max_len")
  mesh = shd.make_mesh(mesh_cfg)
  shards = shd.batch_shards(mesh)
  micro = cfg.batch_size // cfg.grad_accum_steps
  if micro % shards or cfg.batch_size % jax.process_count():
    raise ValueError(f"batch_size={cfg.batch_size} / grad_accum_steps={cfg.grad_accum_steps} = "
                     f"{micro} rows must split evenly over the {shards} batch shards (data x "
                     f"fsdp) of the mesh and the {jax.process_count()} processes")
  rules = shd.RULE_SETS[mesh_cfg.rules]
  model = build_model(shape, model_cfg, info.num_classes)
  tx = training.make_optimizer(cfg)
  shardings = training.state_shardings(model, shape, tx, lengths, mesh, rules)
  return Run(cfg=cfg, mesh_cfg=mesh_cfg, model_cfg=model_cfg, shape=shape, info=info, vocab=vocab,
             data=data, model=model, mesh=mesh, rules=rules, tx=tx, shardings=shardings,
             train_step=training.jit_train_step(model, shape, tx, cfg, mesh, rules, shardings),
             eval_step=training.jit_eval_step(model, shape, cfg, mesh, rules, shardings))


def initial_state(run: Run, log=print):
  """Fresh state, optionally with parameters taken from another run (`cfg.init_from`)."""
  lengths = run.cfg.feature_lengths(run.shape)
  state, _ = training.create_train_state(run.model, run.shape, run.tx, lengths, run.mesh,
                                         run.rules, seed=run.cfg.seed)
  if run.cfg.init_from:
    source, _, step = checkpointing.restore_source(run.cfg.init_from)
    params, loaded = checkpointing.merge_params(
        state.params, source["params"], run.cfg.init_params,
        source_name=f"{run.cfg.init_from} (step {step})")
    # Fresh optimizer state for the new parameters (fine-tuning starts its own schedule).
    opt_state = jax.jit(run.tx.init, out_shardings=run.shardings.opt_state)(params)
    state = state.replace(params=params, opt_state=opt_state)
    log(f"initialised {len(loaded)} parameter arrays from {run.cfg.init_from} (step {step})")
  return state


class _Preemption:
  """Turns SIGTERM and SIGINT into a flag, so the loop saves the current step before exiting.

  A second signal while that save is pending stops at once (KeyboardInterrupt), leaving the
  previous checkpoint. The handler only sets the flag: printing from it could re-enter a write.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = None
    self._old = {}
    for sig in self.SIGNALS:
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""

  def agreed(self) -> bool:
    """Whether any process was signalled: every process must save the same step together."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.int32(self.signum or 0))
    if not self.requested and np.any(flags):
      self.signum = int(np.max(flags))
    return bool(np.any(flags))

  def _handle(self, signum, frame):
    if self.signum is not None:
      self.restore()
      raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
    self.signum = signum

  def restore(self):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}


class NonFiniteError(FloatingPointError):
  """Training met a NaN or Inf loss or gradient (TrainConfig.on_nonfinite decides when)."""


class _NonFiniteGuard:
  """Reads each step's `nonfinite` flag (one step late) and stops or counts skips."""

  def __init__(self, cfg: training.TrainConfig, ckpt, log):
    self.cfg, self.ckpt, self.log = cfg, ckpt, log
    self.in_a_row = 0
    self.skipped = 0

  def check(self, step: int, metrics) -> None:
    if not int(metrics["nonfinite"]):
      self.in_a_row = 0
      return
    self.in_a_row += 1
    self.skipped += 1
    loss, norm = float(metrics["loss"]), float(metrics["grad_norm"])
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


def _scalars(metrics) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def write_results(workdir: str, step: int, results: dict[str, Any], name: str = RESULTS_FILE):
  if jax.process_index() == 0:
    with open(os.path.join(workdir, name), "w") as f:
      json.dump({"step": int(step), **results}, f, indent=2)


def train_and_evaluate(model_fields: Mapping[str, Any], cfg: training.TrainConfig,
                       mesh_cfg: shd.MeshConfig, workdir: str, *, data=None,
                       stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
  """Trains (resuming from `workdir` if it holds checkpoints), evaluates, returns eval results.

  Args:
    model_fields: ModelConfig fields (vocab_size 0 = the task vocabulary's size).
    cfg: the run's TrainConfig.
    mesh_cfg: mesh shape and sharding rule set.
    workdir: checkpoints, metrics.jsonl, TensorBoard events, eval JSON and loss curve go here.
    data: the data module (default `synthesizer_jax.data`).
    stop_after: stop (with a checkpoint) after this many steps of this invocation, as a
      preemption would; used by tests and for time-boxed jobs.
    progress: show the progress bar.

  Returns:
    Eval results with "step"; or {"step", "stopped": True} when stopped early, plus
    "preempted" (signal name) and "exit_code" (128 + signal number) after SIGTERM / SIGINT,
    which save the current step first. Raises NonFiniteError on a NaN/Inf step
    (see TrainConfig.on_nonfinite).
  """
  run = setup(model_fields, cfg, mesh_cfg, data)
  lead = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  log = print if lead else (lambda *a, **k: None)
  ckpt = checkpointing.Checkpointer(workdir, keep=cfg.keep_checkpoints,
                                    async_save=cfg.async_checkpoints)
  start = ckpt.latest_step() or 0
  try:
    if start:  # checked before anything is written to the workdir
      try:
        check_resumable(ckpt, start, run)
      except checkpointing.CheckpointError:
        if not cfg.restore_fallback:
          raise
      state, meta = ckpt.restore(run.abstract_state(), fallback=cfg.restore_fallback, log=log)
      if meta["step"] != start:
        check_resumable(ckpt, meta["step"], run)
      log(f"resumed from {ckpt.directory} step {meta['step']} (data position: "
          f"{meta['train_batches']} batches)")
      start = int(meta["train_batches"])
    else:
      state = initial_state(run, log)
  except BaseException:
    ckpt.close()
    raise
  writer = logging_utils.MetricWriter(workdir, enabled=lead)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  log(f"model: {type(run.model).__name__} self_attention={run.model_cfg.self_attention}, "
      f"{n_params:,} parameters; task {cfg.task}; mesh {dict(run.mesh.shape)} rules "
      f"{mesh_cfg.rules}; workdir {workdir}")
  with open(os.path.join(workdir, "config.json"), "w") if lead else open(os.devnull, "w") as f:
    json.dump(run.run_config(), f, indent=2)

  batches = run.dataset("train", train=True, start_batch=start)
  bar = logging_utils.Progress(start, cfg.num_train_steps, enabled=lead and progress)
  preempt = _Preemption()
  end = cfg.num_train_steps if stop_after is None else min(cfg.num_train_steps, start + stop_after)
  pending = None
  guard = _NonFiniteGuard(cfg, ckpt, log)
  unchecked = None  # (step, metrics) whose nonfinite flag is read after the next step launches
  step = last_saved = start

  def flush(entry):
    scalars = _scalars(entry[1])
    rate, tok_rate = bar.report(scalars["loss"])
    writer.write(entry[0], {**scalars, "steps_per_sec": rate, "tokens_per_sec": tok_rate})

  try:
    for step in range(start + 1, end + 1):
      batch = next(batches)
      training.check_batch(batch, run.shape, run.local_batch_size, run.model_cfg.vocab_size)
      state, metrics = run.train_step(state, shd.global_batch(batch, run.mesh))
      tokens = training.batch_tokens(batch, run.shape, run.model_cfg.pad_id)
      bar.advance(step, float(tokens) * jax.process_count())
      if unchecked is not None:
        guard.check(*unchecked)
      unchecked = (step, metrics)
      # Metrics are fetched one step late, so the host never waits on the step just launched.
      if pending is not None:
        flush(pending)
        pending = None
      if step % cfg.log_every == 0:
        pending = (step, metrics)
      if step % cfg.eval_every == 0 and step != end:
        results = evaluation.evaluate(run, state, predict_batches=0)
        writer.write(step, results["metrics"], prefix="eval")
        bar.write(f"step {step}: eval " + ", ".join(
            f"{k} {v:.4g}" for k, v in results["metrics"].items()))
      stop = preempt.agreed()
      if step % cfg.checkpoint_every == 0 or stop:
        guard.check(*unchecked)  # never save a step that is not known to be finite
        unchecked = None
        ckpt.save(step, state, run.run_config(), {"step": step, "train_batches": step})
        last_saved = step
      if stop:
        break
    if unchecked is not None:
      guard.check(*unchecked)
    if pending is not None:
      flush(pending)
    elif step > start:
      writer.write(step, _scalars(metrics))
    bar.close()
    if step != last_saved:
      ckpt.save(step, state, run.run_config(), {"step": step, "train_batches": step})
    ckpt.wait()  # durable before we report it or exit
  finally:
    preempt.restore()
    ckpt.close()
  if preempt.requested:
    writer.close()
    log(f"{preempt.name} received: checkpoint of step {step} saved in {ckpt.directory}; "
        "stopping. Run the same command again to resume from it.")
    return {"step": step, "stopped": True, "preempted": preempt.name,
            "exit_code": 128 + preempt.signum}
  if step < cfg.num_train_steps:
    writer.close()
    return {"step": step, "stopped": True}
  results = evaluation.evaluate(run, state)
  if run.shape == "lm" and cfg.sample_prompt:  # every process: the params are global arrays
    variables = {"params": state.params, **state.constants}
    results["sample"] = evaluation.sample_lm(run.model, variables, run.vocab, cfg.sample_prompt,
                                             cfg.targets_length)
  writer.write(step, results["metrics"], prefix="eval")
  writer.close()
  write_results(workdir, step, results)
  curve = logging_utils.plot_loss_curve(workdir) if lead else None
  m = results["metrics"]
  log("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
  if "sample" in results:
    log(f"sample: {results['sample']}")
  log(f"checkpoint: {ckpt.directory}/{step}; results: {os.path.join(workdir, RESULTS_FILE)}"
      + (f"; loss curve: {curve}" if curve else ""))
  return {"step": step, **results}


def from_config(config: Mapping[str, Any]):
  """(model_fields, TrainConfig, MeshConfig) from a nested mapping (a ConfigDict's to_dict()).

  Top-level keys are TrainConfig fields, plus `model` (ModelConfig fields) and `mesh`
  (MeshConfig fields). Unknown keys raise ValueError naming them.
  """
  values = dict(config)
  model_fields = dict(values.pop("model", {}))
  mesh_values = dict(values.pop("mesh", {}))
  known = {f.name for f in dataclasses.fields(shd.MeshConfig)}
  unknown = sorted(set(mesh_values) - known)
  if unknown:
    raise ValueError(f"unknown mesh config fields {unknown}; valid fields: {sorted(known)}")
  return model_fields, training.TrainConfig.from_dict(values), shd.MeshConfig(**mesh_values)


def evaluate_checkpoint(workdir: str, *, step: int | None = None, split: str = "validation",
                        overrides: Mapping[str, Any] | None = None, data=None,
                        mesh_cfg: shd.MeshConfig | None = None) -> dict[str, Any]:
  """Restores a train.py checkpoint onto this machine's devices and evaluates it.

  Args:
    workdir: the run's workdir.
    step: checkpoint step (default: latest).
    split: dataset split to score.
    overrides: TrainConfig fields to change (data_dir, eval_batches, predict_batches, ...).
    mesh_cfg: mesh to restore onto (default: all local devices, the run's rule set).

  Returns:
    {"step", "metrics", "examples"}; also written to `<workdir>/eval_<split>_<step>.json`.
  """
  ckpt = checkpointing.Checkpointer(workdir, read_only=True)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first with train.py")
    saved = ckpt.config(step)
    cfg = training.TrainConfig.from_dict({**saved["train"], **dict(overrides or {})})
    mesh_cfg = mesh_cfg or shd.MeshConfig(rules=saved["mesh"]["rules"])
    run = setup(saved["model"], cfg, mesh_cfg, data)
    changed = [d for d in config_differences(saved, run.run_config())
               if d.startswith("vocabulary")]
    if changed:
      raise ValueError(f"{ckpt.step_path(step)} cannot be evaluated with this vocabulary: "
                       f"{changed[0]}. Point data_dir at the data the run was trained on.")
    state, _ = ckpt.restore(run.abstract_state(), step)
  finally:
    ckpt.close()
  results = evaluation.evaluate(run, state, split)
  if run.shape == "lm" and cfg.sample_prompt:
    variables = {"params": state.params, **state.constants}
    results["sample"] = evaluation.sample_lm(run.model, variables, run.vocab, cfg.sample_prompt,
                                             cfg.targets_length)
  write_results(workdir, step, results, name=f"eval_{split}_{step}.json")
  return {"step": step, **results}
