"""The train state and the train / eval steps as pure functions of (state, batch).

Nothing here touches files, datasets or the host loop (that is `loop.py`). The steps take
and return a `TrainState` and a batch dict with seqio feature names (the shape's
`batch_features`), so they jit, shard and donate cleanly:

    shape = shapes.get("lm"); model = shape.build(model_cfg)
    state, shardings = create_train_state(model, shape, tx, lengths, mesh, rules)
    train_step = jit_train_step(model, shape, tx, cfg, mesh, rules, shardings)
    state, metrics = train_step(state, batch)

`shape` is a `shapes.ModelShape` (or its registered name); a model that is not the
shape's own model class is refused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from synthesizer_jax import shapes
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import TrainConfig
from synthesizer_jax.layers import check_token_ids
from synthesizer_jax.optim import learning_rate_schedule
from synthesizer_jax.shapes import ModelShape

Shape = ModelShape | str


def _resolve(model, shape: Shape) -> ModelShape:
  shape = shapes.get(shape)
  shape.check_model(model)
  return shape


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


def _split_variables(variables):
  params = variables["params"]
  constants = {k: v for k, v in variables.items() if k != "params"}
  return params, constants


def init_fn(model: nn.Module, shape: Shape, tx: optax.GradientTransformation,
            lengths: Mapping[str, int]):
  """rng -> fresh unboxed `TrainState` (to jit with out_shardings, or eval_shape)."""
  inputs = _resolve(model, shape).dummy_inputs(lengths)

  def init(rng):
    params, constants = _split_variables(nn.meta.unbox(model.init(rng, *inputs)))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      constants=constants)

  return init


def create_train_state(model: nn.Module, shape: Shape, tx: optax.GradientTransformation,
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
  abstract = jax.eval_shape(init_fn(model, shape, tx, lengths), jax.random.key(0))
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract, shardings)


def state_shardings(model, shape, tx, lengths, mesh, rules) -> TrainState:
  """The sharding of every leaf of the train state under `rules` (no arrays are built)."""
  inputs = _resolve(model, shape).dummy_inputs(lengths)
  boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))
  var_sh = shd.variable_shardings(boxed, mesh, rules)
  params_sh, consts_sh = _split_variables(var_sh)
  abstract_params = nn.meta.unbox(boxed)["params"]
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_sh = shd.opt_state_shardings(abstract_opt, abstract_params, params_sh, mesh)
  return TrainState(step=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
                    params=params_sh, opt_state=opt_sh, constants=consts_sh)


SUM_KEYS = ("loss", "nll", "z_loss", "correct", "weight")


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


def chunked_loss_sums(project, hidden, targets, weights, chunk: int,
                      label_smoothing: float = 0.0, z_loss: float = 0.0):
  """`loss_sums(project(hidden), ...)` computed `chunk` positions at a time.

  Only one chunk's [b, chunk, vocab] logits exist at once, in the forward pass and, through
  rematerialisation, in the backward pass: memory O(b x chunk x vocab) instead of
  O(b x length x vocab). The sums and their gradients equal the unchunked ones (up to the
  order of float32 additions). A length that `chunk` does not divide is padded with
  weight-0 positions.
  """
  b, length = targets.shape
  num = -(-length // chunk)
  pad = num * chunk - length
  if pad:
    hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
    targets, weights = (jnp.pad(x, ((0, 0), (0, pad))) for x in (targets, weights))

  def split(x):  # [b, num * chunk, ...] -> [num, b, chunk, ...]
    return x.reshape((b, num, chunk) + x.shape[2:]).swapaxes(0, 1)

  @jax.checkpoint
  def one(h, t, w):
    return loss_sums(project(h), t, w, label_smoothing, z_loss)

  def body(carry, xs):
    return jax.tree.map(jnp.add, carry, one(*xs)), None

  zero = {k: jnp.zeros((), jnp.float32) for k in SUM_KEYS}
  sums, _ = jax.lax.scan(body, zero, (split(hidden), split(targets), split(weights)))
  return sums


def _forward_sums(model, shape: ModelShape, variables, batch, cfg: TrainConfig, *,
                  deterministic: bool, rngs=None):
  """The loss sums of one batch: whole, or `cfg.loss_chunk` positions at a time."""
  chunk = cfg.loss_chunk
  if chunk and shape.vocab_outputs and batch[shape.target_feature].shape[1] > chunk:
    hidden, targets, weights = shape.forward(model, variables, batch, deterministic=deterministic,
                                             rngs=rngs, return_hidden=True)
    return chunked_loss_sums(lambda h: shape.project(model, variables, h), hidden, targets,
                             weights, chunk, cfg.label_smoothing, cfg.z_loss)
  logits, targets, weights = shape.forward(model, variables, batch, deterministic=deterministic,
                                           rngs=rngs)
  return loss_sums(logits, targets, weights, cfg.label_smoothing, cfg.z_loss)


def train_step(state: TrainState, batch, *, model, shape: ModelShape, tx, cfg: TrainConfig):
  """One optimizer step over `batch`, split into `cfg.grad_accum_steps` micro-batches.

  Gradients of the *summed* loss are accumulated and divided by the total weight
  once, so accumulation gives the gradient of the whole batch exactly.
  """
  rng = jax.random.fold_in(jax.random.key(cfg.seed), state.step)
  accum = cfg.grad_accum_steps

  def micro_loss(params, micro, micro_rng):
    variables = {"params": params, **state.constants}
    sums = _forward_sums(model, shape, variables, micro, cfg, deterministic=False,
                         rngs={"dropout": micro_rng})
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
    zero_sums = {k: jnp.zeros((), jnp.float32) for k in SUM_KEYS}
    (grads, sums), _ = jax.lax.scan(body, (zeros, zero_sums), (jnp.arange(accum), micro_bs))
  denom = jnp.maximum(sums["weight"], 1.0)
  grads = jax.tree.map(lambda g: g / denom, grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
  # A NaN/Inf anywhere in the loss or gradients shows in these two scalars; such an update is
  # dropped on device (the step counter still advances with the data), and the host decides
  # from the `nonfinite` metric whether to stop or go on (TrainConfig.on_nonfinite).
  bad_ids = _bad_token_ids(batch, model.cfg.vocab_size)
  finite = jnp.isfinite(sums["loss"]) & jnp.isfinite(grad_norm) & (bad_ids == 0)
  params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                   (params, opt_state), (state.params, state.opt_state))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  metrics = {k: sums[k] / denom for k in ("loss", "nll", "z_loss")}
  metrics.update(accuracy=sums["correct"] / denom, tokens=sums["weight"], grad_norm=grad_norm,
                 learning_rate=learning_rate_schedule(cfg)(state.step),
                 nonfinite=(~finite).astype(jnp.int32), bad_token_ids=bad_ids)
  return new_state, metrics


def _bad_token_ids(batch, vocab_size: int) -> jax.Array:
  """How many token ids of the batch lie outside [0, vocab_size) (an int32 scalar).

  The on-device twin of `check_batch`: under jit such ids embed as NaN, and the step that
  met them is dropped like a non-finite one, with this count saying why.
  """
  counts = [jnp.sum((x < 0) | (x >= vocab_size)) for k, x in batch.items()
            if k.endswith("_tokens")]
  return sum(counts, jnp.zeros((), jnp.int32)).astype(jnp.int32)


def eval_step(state: TrainState, batch, *, model, shape: ModelShape, cfg: TrainConfig):
  """Summed eval metrics of one batch (add them over batches, then divide by `weight`)."""
  variables = {"params": state.params, **state.constants}
  return _forward_sums(model, shape, variables, batch, cfg, deterministic=True)


def jit_train_step(model, shape, tx, cfg: TrainConfig, mesh, rules, shardings: TrainState):
  """`train_step` under jax.jit with state shardings, donation and the mesh + rules in scope."""
  shape = _resolve(model, shape)
  step = jax.jit(functools.partial(train_step, model=model, shape=shape, tx=tx, cfg=cfg),
                 in_shardings=(shardings, None), out_shardings=(shardings, None),
                 donate_argnums=(0,))

  def run(state, batch):
    with shd.mesh_context(mesh, rules):
      return step(state, batch)

  return run


def jit_eval_step(model, shape, cfg: TrainConfig, mesh, rules, shardings: TrainState):
  """`eval_step` under jax.jit (state not donated: training goes on with it)."""
  shape = _resolve(model, shape)
  step = jax.jit(functools.partial(eval_step, model=model, shape=shape, cfg=cfg),
                 in_shardings=(shardings, None))

  def run(state, batch):
    with shd.mesh_context(mesh, rules):
      return step(state, batch)

  return run


def check_batch(batch: Mapping[str, Any], shape: Shape, global_batch_size: int | None = None,
                vocab_size: int | None = None):
  """Clear error when a batch lacks the features of its model shape or holds token ids
  outside [0, vocab_size) (checked on the host, before the step)."""
  shape = shapes.get(shape)
  missing = [f for f in shape.batch_features if f not in batch]
  if missing:
    raise ValueError(f"batch for a {shape.name!r} model lacks features {missing}; "
                     f"it has {sorted(batch)}")
  if vocab_size is not None:
    for name in shape.batch_features:
      if name.endswith("_tokens"):
        check_token_ids(batch[name], vocab_size, f"batch feature {name!r}")
  if global_batch_size is not None:
    rows = next(iter(batch.values())).shape[0]
    if rows != global_batch_size:
      raise ValueError(f"batch has {rows} rows, expected batch_size={global_batch_size}")
