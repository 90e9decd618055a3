"""Optax optimizers and learning-rate schedules of a `TrainConfig`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from synthesizer_jax.config import TrainConfig


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
