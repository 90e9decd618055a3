"""The checks of the pre-flight smoke run (`python -m synthesizer_jax.smoke`), one function each.

Every check returns `Result`s (check, shape, kind, pass / fail / n/a, the figure it judged),
never raises for a failed expectation: the smoke run prints them all in one table. The runs
are the real thing, small: `loop.train_and_evaluate` on a cached task read by Grain
(`data_pipeline="grain"`), checkpoints restored with `load_checkpoint`, generation with the
decode cache. Nothing here imports TensorFlow or seqio unless a task's cache must be built.

Layers: a top-level consumer (beside `demo`); nothing in the library imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from synthesizer_jax import data, decoding, loop, paths, shapes
from synthesizer_jax.attention import has_bias
from synthesizer_jax.config import RunConfig, TrainConfig
from synthesizer_jax.data import records
from synthesizer_jax.loading import load_checkpoint
from synthesizer_jax.logging_utils import read_metrics

#: The cached task each model shape trains on (offline corpora, built without network
#: beyond Debian's own package archive).
TASKS = {"lm": "offline_lm_prose", "encdec": "offline_translate_en_de",
         "classifier": "offline_classify"}
PREPARE_CMD = "python -m synthesizer_jax.data.prepare --data_dir {data_dir} --tasks {task} --cache"
#: Relative tolerance of fused vs materialized outputs (max |diff| / max(1, max |materialized|)).
AGREE_TOL = {"float32": 1e-4, "bfloat16": 5e-2}
#: Resumed vs uninterrupted: max |diff| of the final parameters. Bitwise on a CPU; on an
#: accelerator reductions may be ordered differently from one compile to the next.
RESUME_TOL = {"cpu": 1e-6, "accelerator": 1e-3}
#: A generated token may differ from the full forward's argmax only at a near-tie: its
#: logit within this much (relative, as AGREE_TOL) of the best one.
TIE_TOL = {"float32": 1e-4, "bfloat16": 5e-2}


@dataclasses.dataclass(frozen=True)
class Result:
  """One table row: `ok` is True (pass), False (fail) or None (n/a on this platform)."""

  check: str
  shape: str
  kind: str
  ok: bool | None
  figure: str


class SmokeError(RuntimeError):
  """The smoke run cannot start (no data and no way to build it): the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Size:
  """A smoke size: model fields, sequence length and learning rate; per model shape a batch
  size, a step count and the margin by which its loss must fall, in nats: "drop" (the first
  training loss minus the mean of the last 5) for the shapes that predict tokens, "prior" (the
  label prior's entropy minus the final validation loss) for the classifier."""

  model: dict
  length: int
  learning_rate: float
  batch: dict  # shape -> rows per step
  steps: dict  # shape -> training steps
  margins: dict  # shape -> nats


def importable(*names: str) -> bool:
  """Whether every module of `names` could be imported (without importing it)."""
  for name in names:
    try:
      if importlib.util.find_spec(name) is None:
        return False
    except (ValueError, ImportError, AttributeError):  # sys.modules[name] is None: blocked
      return False
  return True


def ensure_cache(task: str, data_dir: str, log=print) -> None:
  """The train and validation caches of `task` under `data_dir`, built when missing and
  TensorFlow and seqio are here (`data.prepare` then `data.cache_task`); SmokeError else."""
  splits = ("train", "validation")
  if all(data.has_cache(task, data_dir, s) for s in splits):
    return
  cmd = PREPARE_CMD.format(data_dir=data_dir, task=task)
  if paths.is_remote(data_dir):
    raise SmokeError(f"no cache of task {task} in {data_dir}: build it where TensorFlow and "
                     "seqio are installed, writing it there: "
                     + records.cache_cmd(task, data_dir))
  if not importable("tensorflow", "seqio"):
    raise SmokeError(f"no cache of task {task} under {data_dir} (the smoke reads it with Grain), "
                     "and this machine has no TensorFlow / seqio to build it. Build it on one "
                     f"that has (pip install -e '.[train]'):\n  {cmd}\nthen copy "
                     f"{data_dir}/records/{task} and {data_dir}/vocab here.")
  log(f"building the cache of {task} under {data_dir} (once)")
  try:
    data.prepare(data_dir, [task], progress=False)
    data.cache_task(task, data_dir, log=log)
  except data.DataError as err:
    raise SmokeError(f"could not build task {task}: {err}\nThe command: {cmd} --apt_update") \
        from err


def model_fields(size: Size, kind: str, dtype: str) -> dict:
  return {**size.model, "max_len": size.length, "self_attention": kind, "dtype": dtype,
          "dropout_rate": 0.0, "attention_impl": "auto"}


def train_config(size: Size, task: str, data_dir: str, batch: int, steps: int, lr: float,
                 ocdbt: bool = True) -> TrainConfig:
  return TrainConfig(
      task=task, data_dir=data_dir, data_pipeline="grain", batch_size=batch,
      inputs_length=size.length, targets_length=size.length, num_train_steps=steps,
      learning_rate=lr, warmup_steps=max(1, steps // 10), decay="cosine", log_every=1,
      eval_every=10 * steps, checkpoint_every=10 * steps, eval_batches=8, predict_batches=0,
      sample_prompt="", keep_checkpoints=2, checkpoint_ocdbt=ocdbt)


def train(run_cfg: RunConfig, workdir: str, stop_after: int | None = None) -> dict[str, Any]:
  """`loop.train_and_evaluate`, its console lines kept and shown only if it raises."""
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out):
      return loop.train_and_evaluate(run_cfg, workdir, stop_after=stop_after, progress=False)
  except BaseException:
    sys.stdout.write(out.getvalue()[-4000:])
    raise


def train_losses(workdir: str) -> list[float]:
  """The training loss of every logged step, in order (`<workdir>/metrics.jsonl`)."""
  return [r["loss"] for r in read_metrics(workdir) if r.get("split") == "train" and "loss" in r]


def label_entropy(task: str, data_dir: str, length: int, batch: int, batches: int) -> float:
  """Entropy (nats) of the labels of the first `batches` validation batches, the ones the
  final evaluation scores: the loss of a classifier that learned the prior only."""
  it = data.get_cached_dataset(task, "validation", feature_lengths={"inputs": length},
                               batch_size=batch, pack=False, shuffle=False, data_dir=data_dir,
                               repeat=False)
  labels = np.concatenate([b["targets"] for _, b in zip(range(batches), it, strict=False)])
  counts = np.bincount(labels[labels >= 0])
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


def loss_falls(shape: str, kind: str, losses: Sequence[float], eval_loss: float, margin: float,
               prior: float | None) -> Result:
  """The run learned: its loss fell by `margin` (or beat the label prior by it)."""
  if not losses or not all(map(math.isfinite, losses)):
    return Result("loss falls", shape, kind, False, f"non-finite or no losses: {losses[:5]}")
  if prior is not None:
    ok = eval_loss <= prior - margin
    return Result("loss falls", shape, kind, ok, f"eval loss {eval_loss:.3f} vs label prior "
                  f"{prior:.3f} (need <= {prior - margin:.3f})")
  last = float(np.mean(losses[-5:]))
  drop = losses[0] - last
  return Result("loss falls", shape, kind, drop >= margin, f"{losses[0]:.2f} -> {last:.2f} "
                f"in {len(losses)} steps (drop {drop:.2f}, need >= {margin:g})")


def evaluation(shape: str, kind: str, results: dict[str, Any]) -> Result:
  """The final evaluation returned finite metrics."""
  metrics = results.get("metrics") or {}
  ok = bool(metrics) and all(math.isfinite(v) for v in metrics.values())
  shown = ", ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:3])
  return Result("eval finite", shape, kind, ok, shown or f"no metrics: {results}")


def batch_for(task: str, data_dir: str, lengths: dict, rows: int, split: str = "train",
              pack: bool = True) -> dict[str, np.ndarray]:
  """The first batch of `split` (packed when the shape packs and `pack`), unshuffled."""
  info = data.task_info(task, data_dir)
  return next(iter(data.get_cached_dataset(
      task, split, feature_lengths=lengths, batch_size=rows,
      pack=pack and shapes.get(info.shape).packable, shuffle=False, data_dir=data_dir,
      repeat=False)))


def _scaled_diff(a, b) -> float:
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def refused(impl: str, kind: str, platform: str, dtype: str) -> str | None:
  """Why `impl` cannot compute `kind` here (a documented limit, attention/fused.py), or None."""
  if impl == "pallas" and platform == "gpu" and has_bias(kind):
    return "Pallas GPU kernel takes no bias (random family)"
  if impl == "cudnn" and dtype == "float32":
    return "cuDNN attention runs in 16-bit only"
  return None


def agreement(loaded: tuple, shape_name: str, kind: str, batch: dict, impls: Sequence[str],
              platform: str) -> list[Result]:
  """Each `impl`'s outputs on the trained parameters (`loaded`: what `load_checkpoint`
  returned for the run) vs the materialized reference."""
  model, variables, config = loaded
  shape = shapes.get(config["shape"])
  dtype = model.cfg.dtype
  tol = AGREE_TOL.get(dtype, AGREE_TOL["bfloat16"])

  def forward(impl):
    built = shape.build(model.cfg.replace(attention_impl=impl), config.get("num_classes"))
    fn = jax.jit(lambda v, b: shape.forward(built, v, b, deterministic=True)[0])
    return np.asarray(jax.device_get(fn(variables, batch)), np.float32)

  ref = forward("materialized")
  out = []
  for impl in impls:
    why = refused(impl, kind, platform, dtype)
    if why:
      out.append(Result(f"agree {impl}", shape_name, kind, None, f"n/a: {why}"))
      continue
    diff = _scaled_diff(forward(impl), ref)
    out.append(Result(f"agree {impl}", shape_name, kind, diff <= tol,
                      f"{diff:.1e} vs materialized ({dtype}, tol {tol:g})"))
  return out


def resume(shape: str, kind: str, whole: str, resumed: str, run_cfg: RunConfig,
           platform: str) -> Result:
  """Stopped halfway (a checkpoint), restored, resumed: the uninterrupted run's parameters."""
  steps = run_cfg.train.num_train_steps
  first = train(run_cfg, resumed, stop_after=steps // 2)
  if not first.get("stopped") or first["step"] != steps // 2:
    return Result("resume", shape, kind, False, f"stop_after={steps // 2} returned {first}")
  second = train(run_cfg, resumed)
  if second.get("step") != steps:
    return Result("resume", shape, kind, False, f"the resumed run ended at {second.get('step')}")
  (_, a, _), (_, b, _) = load_checkpoint(whole), load_checkpoint(resumed)
  diff = max(float(np.max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
  tol = RESUME_TOL["cpu" if platform == "cpu" else "accelerator"]
  return Result("resume", shape, kind, diff <= tol, f"max abs param diff {diff:.1e} after "
                f"{steps // 2}+{steps - steps // 2} steps vs {steps} (tol {tol:g})")


def generation(loaded: tuple, shape_name: str, kind: str, batch: dict, new_tokens: int,
               prompt_len: int) -> Result:
  """Greedy generation with the decode cache == the full forward pass's argmax, token by
  token (a different token only at a near-tie of the forward's logits), on the trained run
  (`loaded`: what `load_checkpoint` returned for it)."""
  model, variables, config = loaded
  shape = shapes.get(config["shape"])
  if "decoder_input_tokens" not in shape.batch_features:
    return Result("generate", shape_name, kind, None, "n/a: the shape generates no tokens")
  rows = 2
  if "encoder_input_tokens" in shape.batch_features:  # from T5's start token, given a source
    src = np.asarray(batch["encoder_input_tokens"][:rows])
    prompt = np.zeros((rows, 1), np.int32)
    gen = decoding.generate(model, variables, prompt, max_new_tokens=new_tokens,
                            encoder_tokens=src, eos_id=None)
    tokens = np.asarray(gen.tokens)
    dec_in = np.concatenate([prompt, tokens[:, :-1]], axis=1)
    logits = np.asarray(model.apply(variables, src, dec_in), np.float32)
  else:  # continue the first tokens of each row (seqio's start token 0 included)
    prompt = np.asarray(batch["decoder_input_tokens"][:rows, :prompt_len])
    gen = decoding.generate(model, variables, prompt, max_new_tokens=new_tokens, eos_id=None)
    tokens = np.asarray(gen.tokens)
    seq = np.concatenate([prompt, tokens], axis=1)
    logits = np.asarray(model.apply(variables, seq), np.float32)[:, prompt_len - 1:-1]
  tol = TIE_TOL.get(model.cfg.dtype, TIE_TOL["bfloat16"])
  best = logits.max(-1)
  chosen = np.take_along_axis(logits, tokens[..., None], -1)[..., 0]
  gap = (best - chosen) / np.maximum(1.0, np.abs(logits).max(-1))
  same = int((tokens == logits.argmax(-1)).sum())
  ok = bool((gap <= tol).all())
  return Result("generate", shape_name, kind, ok, f"{same}/{tokens.size} tokens = forward argmax"
                f"{'' if same == tokens.size else f', worst logit gap {gap.max():.1e}'}"
                f" (tie tol {tol:g})")


def guarded(check: str, shape: str, kind: str, fn: Callable[[], Any]) -> list[Result]:
  """fn()'s results; an exception becomes one failed row naming it."""
  try:
    out = fn()
  except (KeyboardInterrupt, SmokeError):
    raise
  except Exception as err:  # noqa: BLE001 - a crash is a failed check, reported in the table
    return [Result(check, shape, kind, False, f"{type(err).__name__}: {str(err)[:300]}")]
  return out if isinstance(out, list) else [out]
