"""A run's set-up: `setup(run_cfg)` checks the config against the task and devices and
builds the typed, frozen `Run` (model, mesh, optimizer, jitted steps) that the loop
(`loop.py`) and evaluation (`evaluation.py`) share; plus the run config saved beside
every checkpoint and the check that a workdir's checkpoints fit this run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import numpy as np
import optax

from synthesizer_jax import checkpointing, finetune, optim, paths, shapes, steps
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import HOW_FIELDS, LEGACY_VALUES, ModelConfig, RunConfig, TrainConfig

if TYPE_CHECKING:
  from synthesizer_jax.data.registry import TaskInfo

Batch = dict[str, np.ndarray]


def _data_module():
  from synthesizer_jax import data

  return data


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything a train or eval run needs, built once by `setup`.

  `data` is the data module (`synthesizer_jax.data`, or a stand-in with the same
  `task_info / get_dataset / get_vocabulary` functions, which tests pass in).
  """

  config: RunConfig
  model_cfg: ModelConfig  # config.model with the task vocabulary's size
  shape: shapes.ModelShape
  info: TaskInfo
  vocab: Any  # a seqio Vocabulary (encode / decode / vocab_size)
  data: Any
  model: nn.Module
  mesh: jax.sharding.Mesh
  rules: shd.Rules
  tx: optax.GradientTransformation
  shardings: steps.TrainState
  train_step: Callable[[steps.TrainState, Batch], tuple[steps.TrainState, dict]]
  eval_step: Callable[[steps.TrainState, Batch], dict]

  @property
  def cfg(self) -> TrainConfig:
    return self.config.train

  @property
  def local_batch_size(self) -> int:
    return self.cfg.batch_size // jax.process_count()

  @property
  def feature_lengths(self) -> dict[str, int]:
    return self.shape.feature_lengths(self.cfg)

  @functools.cached_property
  def vocab_sha256(self) -> str | None:
    """The vocabulary file's content hash, read once (it may be in a bucket)."""
    return _file_sha256(self.info.vocab_path)

  def run_config(self) -> dict[str, Any]:
    """The JSON saved beside every checkpoint."""
    return {"task": self.cfg.task, "shape": self.shape.name, "metric": self.info.metric,
            "num_classes": self.info.num_classes, "vocab_path": self.info.vocab_path,
            "vocab_sha256": self.vocab_sha256,
            "vocab_family": getattr(self.info, "vocab_family", None),
            "vocab_extra_ids": int(getattr(self.vocab, "extra_ids", 0) or 0),
            "model": self.model_cfg.to_dict(), "train": self.cfg.to_dict(),
            "mesh": dataclasses.asdict(self.config.mesh)}

  def dataset(self, split: str, *, train: bool, start_batch: int = 0) -> Iterator[Batch]:
    """Batches of `split` through the pipeline `cfg.data_pipeline` picks for it."""
    c = self.cfg
    pipeline = c.data_pipeline
    if pipeline == "auto":  # a stand-in data module without caches reads through seqio
      has_cache = getattr(self.data, "has_cache", None)
      pipeline = "grain" if has_cache and has_cache(c.task, c.data_dir, split) else "seqio"
    get, extra = self.data.get_dataset, {}
    if pipeline == "grain":
      get = getattr(self.data, "get_cached_dataset", None)
      if get is None:
        name = getattr(self.data, "__name__", self.data)
        raise ValueError(f"data_pipeline='grain': the data module {name} has no cached (Grain) "
                         "pipeline; use data_pipeline='seqio'")
      if train and c.data_workers:
        extra["num_workers"] = c.data_workers
    return get(
        c.task, split, feature_lengths=self.feature_lengths, batch_size=self.local_batch_size,
        pack=train and c.pack and self.shape.packable, shuffle=train, seed=c.seed,
        data_dir=c.data_dir, shard_index=jax.process_index(), num_shards=jax.process_count(),
        start_batch=start_batch, repeat=train, **extra)

  def eval_batches(self, split: str = "validation") -> Iterator[Batch]:
    return self.dataset(split, train=False)

  @functools.cached_property
  def members(self) -> tuple[Run, ...]:
    """A mixture's member tasks, each as this run on that task (same model, steps and
    shardings; its own data, metric and labels), for per-member evaluation; () for a task."""
    names = getattr(self.info, "members", ())  # a stand-in data module's TaskInfo has none
    return tuple(dataclasses.replace(
        self, config=dataclasses.replace(
            self.config, train=dataclasses.replace(self.cfg, task=t)),
        info=self.data.task_info(t, self.cfg.data_dir)) for t in names)

  def abstract_state(self) -> steps.TrainState:
    """The state's shapes with the current mesh's shardings (the restore target)."""
    return steps.abstract_state(self.model, self.shape, self.tx, self.feature_lengths,
                                self.shardings)


def setup(config: RunConfig, data=None) -> Run:
  """Checks the config against the task and devices and builds model, mesh and steps."""
  data = data or _data_module()
  cfg = config.train
  mixtures = getattr(data, "MIXTURES", ())  # stand-in data modules have none
  if cfg.task not in data.TASKS and cfg.task not in mixtures:
    raise ValueError(f"unknown task {cfg.task!r}; known tasks: {', '.join(data.TASKS)}"
                     + (f"; mixtures: {', '.join(mixtures)}" if mixtures else ""))
  if not paths.as_path(cfg.data_dir).is_dir():
    raise FileNotFoundError(
        f"data directory {paths.as_path(cfg.data_dir)} does not exist; prepare it with "
        f"`python -m synthesizer_jax.data.prepare --data_dir {cfg.data_dir}` (or `make train`)")
  check_data_dir = getattr(data, "check_data_dir", None)  # stand-in data modules have none
  if check_data_dir:  # a bucket holds caches only: refuse what cannot read it before step 1
    check_data_dir(cfg.task, cfg.data_dir, cfg.data_pipeline)
  # Every check the config alone answers comes before the vocabulary file is read (it may
  # be in a bucket): the task's lengths against max_len, the batch against the mesh.
  info = data.task_info(cfg.task, cfg.data_dir)
  shape = shapes.get(info.shape)
  lengths = shape.feature_lengths(cfg)
  if shapes.uses_positions(shape, config.model) and max(lengths.values()) > config.model.max_len:
    raise ValueError(
        f"feature lengths {lengths} exceed model.max_len={config.model.max_len}, the longest "
        f"sequence synthetic attention {shape.attention_kinds(config.model)} can handle; "
        "raise max_len")
  mesh = shd.make_mesh(config.mesh)
  shards = shd.batch_shards(mesh)
  micro = cfg.batch_size // cfg.grad_accum_steps
  if micro % shards or cfg.batch_size % jax.process_count():
    raise ValueError(f"batch_size={cfg.batch_size} / grad_accum_steps={cfg.grad_accum_steps} = "
                     f"{micro} rows must split evenly over the {shards} batch shards (data x "
                     f"fsdp) of the mesh and the {jax.process_count()} processes")
  # Then the model for the task's vocabulary, and the steps that train it on the mesh.
  vocab = data.get_vocabulary(cfg.task, cfg.data_dir)
  model_cfg = config.model_for(vocab.vocab_size)
  rules = shd.RULE_SETS[config.mesh.rules]
  model = shape.build(model_cfg, info.num_classes)
  tx = optim.make_optimizer(cfg)
  shardings = steps.state_shardings(model, shape, tx, lengths, mesh, rules)
  return Run(config=config, model_cfg=model_cfg, shape=shape, info=info, vocab=vocab,
             data=data, model=model, mesh=mesh, rules=rules, tx=tx, shardings=shardings,
             train_step=steps.jit_train_step(model, shape, tx, cfg, mesh, rules, shardings),
             eval_step=steps.jit_eval_step(model, shape, cfg, mesh, rules, shardings))


def initial_state(run: Run, log=print) -> steps.TrainState:
  """Fresh state, optionally with arrays taken from another run (`cfg.init_from`,
  `finetune.load_source`)."""
  state, _ = steps.create_train_state(run.model, run.shape, run.tx, run.feature_lengths,
                                      run.mesh, run.rules, seed=run.cfg.seed)
  if run.cfg.init_from:
    params, constants = finetune.load_source(state, run.cfg, run.run_config(), log)
    # Fresh optimizer state for the new parameters (fine-tuning starts its own schedule).
    opt_state = jax.jit(run.tx.init, out_shardings=run.shardings.opt_state)(params)
    state = state.replace(params=params, constants=constants, opt_state=opt_state)
  return state


def _file_sha256(path: str | None) -> str | None:
  """Content hash of a vocabulary file (None when there is no such file)."""
  if not path or not paths.as_path(path).is_file():
    return None
  return hashlib.sha256(paths.as_path(path).read_bytes()).hexdigest()


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
  vocab = finetune.vocabulary_difference(saved, current)
  if vocab:
    diffs.append(f"vocabulary: {vocab} (token ids would mean other pieces)")
  old_model = {**LEGACY_VALUES, **saved.get("model", {})}
  new_model = current.get("model", {})
  for key in sorted((set(old_model) | set(new_model)) - set(HOW_FIELDS)):
    if _plain(old_model.get(key)) != _plain(new_model.get(key)):
      diffs.append(f"model.{key}: {old_model.get(key)!r} in the checkpoint, "
                   f"{new_model.get(key)!r} now")
  return diffs


def check_resumable(ckpt: checkpointing.Checkpointer, step: int, run: Run) -> None:
  """Refuses (ValueError listing every difference) a workdir saved by another model config."""
  diffs = config_differences(ckpt.config(step), run.run_config())
  if diffs:
    raise ValueError(
        f"{ckpt.step_path(step)} was saved by a different run config, so this run cannot "
        "resume from it; nothing in the workdir was changed. Differences:\n  "
        + "\n  ".join(diffs) + "\nUse another --workdir, or set these back to the "
        "checkpoint's values.")
