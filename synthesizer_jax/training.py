"""Train state, Optax optimizers and schedules, and the train / eval steps as pure functions.

Nothing here touches files or datasets: `trainer.py` runs the loop. The steps take
and return a `TrainState` and a batch dict with seqio feature names (see
`FEATURES`), so they jit, shard and donate cleanly:

    state, shardings = create_train_state(model, "lm", tx, cfg, mesh, rules, lengths)
    train_step = jit_train_step(model, "lm", tx, cfg, mesh, rules, shardings)
    state, metrics = train_step(state, batch)

Model shapes: "lm" (`DecoderLM`), "encdec" (`EncoderDecoder`), "classifier"
(`EncoderClassifier`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from synthesizer_jax import sharding as shd
from synthesizer_jax.layers import check_token_ids

SHAPES = ("lm", "encdec", "classifier")
OPTIMIZERS = ("adamw", "adafactor")
DECAYS = ("rsqrt", "cosine", "linear", "constant")
NONFINITE_ACTIONS = ("stop", "skip")

FEATURES = {
    "lm": ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights"),
    "encdec": ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
               "decoder_loss_weights"),
    "classifier": ("encoder_input_tokens", "targets"),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything about a run except the model (that is `ModelConfig`) and the mesh.

  Lengths: `targets_length` is the decoder length (LM and enc-dec);
  `inputs_length` the encoder length (enc-dec and classifier).
  """

  task: str = "offline_lm"
  data_dir: str = "data"
  batch_size: int = 32
  inputs_length: int = 128
  targets_length: int = 128
  pack: bool = True
  num_train_steps: int = 1000
  optimizer: str = "adamw"
  learning_rate: float = 1e-3
  warmup_steps: int = 100
  decay: str = "rsqrt"
  min_learning_rate_fraction: float = 0.1
  weight_decay: float = 0.01
  b1: float = 0.9
  b2: float = 0.98
  clip_norm: float = 1.0
  label_smoothing: float = 0.0
  z_loss: float = 0.0
  grad_accum_steps: int = 1
  seed: int = 0
  log_every: int = 50
  eval_every: int = 500
  eval_batches: int = 20
  predict_batches: int = 2
  max_decode_len: int = 0  # 0: targets_length
  # Seq2seq predictions for BLEU / ROUGE: beam search with GNMT length penalty, as the paper.
  decode_method: str = "beam"  # or "greedy"
  num_beams: int = 4
  length_penalty: float = 0.6
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  async_checkpoints: bool = True
  init_from: str = ""  # workdir or checkpoint step dir to take parameters from (fine-tuning)
  init_params: tuple[str, ...] = ()  # path prefixes ("encoder", "embed") to take; () = all shared
  sample_prompt: str = "The "
  # A NaN/Inf loss or gradient never reaches the parameters: "stop" raises NonFiniteError
  # naming the step (the last good checkpoint is kept), "skip" drops that update and goes on,
  # stopping after `max_consecutive_skips` bad steps in a row.
  on_nonfinite: str = "stop"
  max_consecutive_skips: int = 10
  # Resume from the newest readable checkpoint when the latest one is corrupted (it is moved
  # to <workdir>/corrupt_checkpoints/); False raises CheckpointError naming the step instead.
  restore_fallback: bool = False

  def __post_init__(self):
    def fail(field, why):
      raise ValueError(f"TrainConfig.{field}={getattr(self, field)!r}: {why}")

    for name in ("batch_size", "inputs_length", "targets_length", "num_train_steps",
                 "grad_accum_steps", "log_every", "eval_every", "checkpoint_every",
                 "keep_checkpoints"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        fail(name, "must be a positive integer")
    for name in ("warmup_steps", "eval_batches", "predict_batches", "max_decode_len"):
      if getattr(self, name) < 0:
        fail(name, "must be >= 0")
    if self.decode_method not in ("beam", "greedy"):
      fail("decode_method", "must be 'beam' or 'greedy'")
    if not isinstance(self.num_beams, int) or self.num_beams < 1:
      fail("num_beams", "must be a positive integer")
    if self.length_penalty < 0:
      fail("length_penalty", "must be >= 0 (0: no length normalisation)")
    if self.optimizer not in OPTIMIZERS:
      fail("optimizer", f"must be one of {OPTIMIZERS}")
    if self.decay not in DECAYS:
      fail("decay", f"must be one of {DECAYS}")
    if self.on_nonfinite not in NONFINITE_ACTIONS:
      fail("on_nonfinite", f"must be one of {NONFINITE_ACTIONS}")
    if not isinstance(self.max_consecutive_skips, int) or self.max_consecutive_skips < 1:
      fail("max_consecutive_skips", "must be a positive integer")
    if not self.learning_rate > 0:
      fail("learning_rate", "must be > 0")
    if not 0 <= self.label_smoothing < 1:
      fail("label_smoothing", "must be in [0, 1)")
    for name in ("z_loss", "weight_decay", "clip_norm"):
      if getattr(self, name) < 0:
        fail(name, "must be >= 0 (0 turns it off)")
    if not 0 <= self.min_learning_rate_fraction <= 1:
      fail("min_learning_rate_fraction", "must be in [0, 1]")
    if self.batch_size % self.grad_accum_steps:
      fail("batch_size", f"must be a multiple of grad_accum_steps={self.grad_accum_steps}")
    if not self.task:
      fail("task", "must name a task (see synthesizer_jax.data.TASKS)")
    object.__setattr__(self, "init_params", tuple(self.init_params))

  @property
  def decode_len(self) -> int:
    return self.max_decode_len or self.targets_length

  def feature_lengths(self, shape: str) -> dict[str, int]:
    """seqio task feature lengths for a model shape."""
    if shape == "lm":
      return {"targets": self.targets_length}
    if shape == "encdec":
      return {"inputs": self.inputs_length, "targets": self.targets_length}
    return {"inputs": self.inputs_length}

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
    """Builds from a plain mapping (e.g. `ConfigDict.to_dict()`); unknown keys are an error."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
      raise ValueError(f"unknown TrainConfig fields {unknown}; valid fields: {sorted(fields)}")
    return cls(**values)


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then rsqrt, cosine, linear or constant decay."""
  peak, warmup, total = cfg.learning_rate, cfg.warmup_steps, cfg.num_train_steps
  floor = peak * cfg.min_learning_rate_fraction

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = peak * jnp.minimum(1.0, (step + 1) / max(warmup, 1))
    after = jnp.maximum(step - warmup, 0.0)
    span = max(total - warmup, 1)
    frac = jnp.minimum(after / span, 1.0)
    if cfg.decay == "rsqrt":
      decayed = peak * jnp.sqrt(max(warmup, 1) / jnp.maximum(step, max(warmup, 1)))
    elif cfg.decay == "cosine":
      decayed = floor + (peak - floor) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
    elif cfg.decay == "linear":
      decayed = peak + (floor - peak) * frac
    else:
      decayed = jnp.full_like(step, peak)
    return jnp.where(step < warmup, warm, decayed)

  return schedule


def _decay_mask(params):
  """Weight decay on matrices only (not on norms' scales, biases or gate logits)."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW or Adafactor on the schedule."""
  schedule = learning_rate_schedule(cfg)
  parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
  if cfg.optimizer == "adamw":
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay,
                             mask=_decay_mask))
  else:
    parts.append(optax.adafactor(schedule, weight_decay_rate=cfg.weight_decay or None,
                                 weight_decay_mask=_decay_mask))
  return optax.chain(*parts)


@flax.struct.dataclass
class TrainState:
  """All that a run carries between steps (and checkpoints): a pure pytree.

  `constants` holds non-trained variables (fixed_random tables); the dropout rng
  is derived from `seed` and `step`, so it needs no slot here.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  constants: Any


def dummy_inputs(shape: str, lengths: Mapping[str, int], batch: int = 1):
  """Model inputs of the right shapes for `init`."""
  if shape == "lm":
    return (jnp.ones((batch, lengths["targets"]), jnp.int32),)
  if shape == "encdec":
    return (jnp.ones((batch, lengths["inputs"]), jnp.int32),
            jnp.ones((batch, lengths["targets"]), jnp.int32))
  return (jnp.ones((batch, lengths["inputs"]), jnp.int32),)


def _split_variables(variables):
  params = variables["params"]
  constants = {k: v for k, v in variables.items() if k != "params"}
  return params, constants


def init_fn(model: nn.Module, shape: str, tx: optax.GradientTransformation,
            lengths: Mapping[str, int]):
  """rng -> fresh unboxed `TrainState` (to jit with out_shardings, or eval_shape)."""
  inputs = dummy_inputs(shape, lengths)

  def init(rng):
    params, constants = _split_variables(nn.meta.unbox(model.init(rng, *inputs)))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      constants=constants)

  return init


def create_train_state(model: nn.Module, shape: str, tx: optax.GradientTransformation,
                       lengths: Mapping[str, int], mesh, rules, seed: int = 0):
  """A freshly initialised `TrainState`, created already sharded on `mesh`.

  Returns:
    (state, shardings): shardings is a `TrainState` of `NamedSharding`s, one per leaf.
  """
  shardings = state_shardings(model, shape, tx, lengths, mesh, rules)
  state = jax.jit(init_fn(model, shape, tx, lengths), out_shardings=shardings)(
      jax.random.key(seed))
  return state, shardings


def abstract_state(model, shape, tx, lengths, shardings):
  """ShapeDtypeStructs of the train state carrying `shardings` (a restore target)."""
  shapes = jax.eval_shape(init_fn(model, shape, tx, lengths), jax.random.key(0))
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      shapes, shardings)


def state_shardings(model, shape, tx, lengths, mesh, rules) -> TrainState:
  """The sharding of every leaf of the train state under `rules` (no arrays are built)."""
  inputs = dummy_inputs(shape, lengths)
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))
  var_sh = shd.variable_shardings(boxed, mesh, rules)
  params_sh, consts_sh = _split_variables(var_sh)
  abstract_params = nn.meta.unbox(boxed)["params"]
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_sh = shd.opt_state_shardings(abstract_opt, abstract_params, params_sh, mesh)
  return TrainState(step=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
                    params=params_sh, opt_state=opt_sh, constants=consts_sh)


def forward(model, shape: str, variables, batch, *, deterministic: bool, rngs=None):
  """Model logits and their (targets, weights): [b, l, V], [b, l], [b, l] or [b, C], [b], [b]."""
  kw = dict(deterministic=deterministic, rngs=rngs)
  if shape == "lm":
    logits = model.apply(variables, batch["decoder_input_tokens"],
                         batch.get("decoder_positions"), batch.get("decoder_segment_ids"), **kw)
    return logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"]
  if shape == "encdec":
    logits = model.apply(variables, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                         batch.get("encoder_positions"), batch.get("decoder_positions"),
                         batch.get("encoder_segment_ids"), batch.get("decoder_segment_ids"), **kw)
    return logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"]
  logits = model.apply(variables, batch["encoder_input_tokens"], **kw)
  targets = batch["targets"]
  # -1 marks an unlabelled example (a test split); padded eval rows carry weight 0 too.
  weights = (targets >= 0).astype(jnp.float32)
  if "example_weights" in batch:
    weights = weights * batch["example_weights"]
  return logits, jnp.maximum(targets, 0), weights


def loss_sums(logits, targets, weights, label_smoothing: float = 0.0, z_loss: float = 0.0):
  """Weighted sums over tokens (or examples): the mean of each is sum / `weight`.

  Label smoothing spreads `label_smoothing` uniformly over the other classes; the
  z-loss adds z_loss * logsumexp(logits)^2, keeping the softmax normaliser near 1.

  Returns:
    dict with loss (smoothed CE + z-loss), nll (plain CE), z_loss, correct, weight.
  """
  logits = logits.astype(jnp.float32)
  weights = weights.astype(jnp.float32)
  num_classes = logits.shape[-1]
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_p = logits - log_z[..., None]
  nll = -jnp.take_along_axis(log_p, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  if label_smoothing > 0:
    off = label_smoothing / max(num_classes - 1, 1)
    on = 1.0 - label_smoothing
    # Subtract the entropy of the smoothed target so a perfect model scores 0.
    floor = -(on * jnp.log(on) + (num_classes - 1) * off * jnp.log(off + 1e-20))
    smooth = on * nll - off * (log_p.sum(-1) + nll) - floor
  else:
    smooth = nll
  z = z_loss * jnp.square(log_z)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return {"loss": ((smooth + z) * weights).sum(), "nll": (nll * weights).sum(),
          "z_loss": (z * weights).sum(), "correct": (correct * weights).sum(),
          "weight": weights.sum()}


def train_step(state: TrainState, batch, *, model, shape: str, tx, cfg: TrainConfig):
  """One optimizer step over `batch`, split into `cfg.grad_accum_steps` micro-batches.

  Gradients of the *summed* loss are accumulated and divided by the total weight
  once, so accumulation gives the gradient of the whole batch exactly.
  """
  rng = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
  accum = cfg.grad_accum_steps

  def micro_loss(params, micro, micro_rng):
    variables = {"params": params, **state.constants}
    logits, targets, weights = forward(model, shape, variables, micro, deterministic=False,
                                       rngs={"dropout": micro_rng})
    sums = loss_sums(logits, targets, weights, cfg.label_smoothing, cfg.z_loss)
    return sums["loss"], sums

  grad_fn = jax.grad(micro_loss, has_aux=True)
  if accum == 1:
    grads, sums = grad_fn(state.params, batch, rng)
  else:
    # [b, ...] -> [accum, b / accum, ...] taking every accum-th row, so each device keeps its rows.
    micro_bs = jax.tree.map(
        lambda x: x.reshape((x.shape[0] // accum, accum) + x.shape[1:]).swapaxes(0, 1), batch)

    def body(carry, xs):
      i, micro = xs
      g, s = grad_fn(state.params, micro, jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, carry, (g, s)), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    zero_sums = {k: jnp.zeros((), jnp.float32) for k in
                 ("loss", "nll", "z_loss", "correct", "weight")}
    (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums), (jnp.arange(accum), micro_bs))
  denom = jnp.maximum(sums["weight"], 1.0)
  grads = jax.tree.map(lambda g: g / denom, grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
  # A NaN/Inf anywhere in the loss or gradients shows in these two scalars; such an update is
  # dropped on device (the step counter still advances with the data), and the host decides
  # from the `nonfinite` metric whether to stop or go on (TrainConfig.on_nonfinite).
  finite = jnp.isfinite(sums["loss"]) & jnp.isfinite(grad_norm)
  params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                   (params, opt_state), (state.params, state.opt_state))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  metrics = {k: sums[k] / denom for k in ("loss", "nll", "z_loss")}
  metrics.update(accuracy=sums["correct"] / denom, tokens=sums["weight"], grad_norm=grad_norm,
                 learning_rate=learning_rate_schedule(cfg)(state.step),
                 nonfinite=(~finite).astype(jnp.int32))
  return new_state, metrics


def eval_step(state: TrainState, batch, *, model, shape: str, cfg: TrainConfig):
  """Summed eval metrics of one batch (add them over batches, then divide by `weight`)."""
  variables = {"params": state.params, **state.constants}
  logits, targets, weights = forward(model, shape, variables, batch, deterministic=True)
  return loss_sums(logits, targets, weights, cfg.label_smoothing, cfg.z_loss)


def jit_train_step(model, shape, tx, cfg: TrainConfig, mesh, rules, shardings: TrainState):
  """`train_step` under jax.jit with state shardings, donation and the mesh + rules in scope."""
  step = jax.jit(functools.partial(train_step, model=model, shape=shape, tx=tx, cfg=cfg),
                 in_shardings=(shardings, None), out_shardings=(shardings, None),
                 donate_argnums=(0,))

  def run(state, batch):
    with shd.mesh_context(mesh, rules):
      return step(state, batch)

  return run


def jit_eval_step(model, shape, cfg: TrainConfig, mesh, rules, shardings: TrainState):
  """`eval_step` under jax.jit (state not donated: training goes on with it)."""
  step = jax.jit(functools.partial(eval_step, model=model, shape=shape, cfg=cfg),
                 in_shardings=(shardings, None))

  def run(state, batch):
    with shd.mesh_context(mesh, rules):
      return step(state, batch)

  return run


def batch_tokens(batch: Mapping[str, Any], shape: str, pad_id: int = 0) -> int:
  """Tokens a training step learns from: scored target tokens (lm, encdec), or the
  classifier's non-padding input tokens (its targets are class labels, 0 included)."""
  if shape == "classifier":
    return int(np.sum(np.asarray(batch["encoder_input_tokens"]) != pad_id))
  return int(np.sum(np.asarray(batch["decoder_loss_weights"]) > 0))


def check_batch(batch: Mapping[str, Any], shape: str, global_batch_size: int | None = None,
                vocab_size: int | None = None):
  """Clear error when a batch lacks the features of its model shape or holds token ids
  outside [0, vocab_size) (checked on the host, before the step)."""
  missing = [f for f in FEATURES[shape] if f not in batch]
  if missing:
    raise ValueError(f"batch for a {shape!r} model lacks features {missing}; "
                     f"it has {sorted(batch)}")
  if vocab_size is not None:
    for name in FEATURES[shape]:
      if name.endswith("_tokens"):
        check_token_ids(batch[name], vocab_size, f"batch feature {name!r}")
  if global_batch_size is not None:
    rows = next(iter(batch.values())).shape[0]
    if rows != global_batch_size:
      raise ValueError(f"batch has {rows} rows, expected batch_size={global_batch_size}")
