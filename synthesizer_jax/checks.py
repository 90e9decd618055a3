"""Input checks for the public entry points: refuse what they cannot honour, never guess.

Every error names the argument, the value (or its shape and dtype), the rule and the fix:
a `TypeError` for a value of the wrong kind, a `ValueError` for a wrong shape, dtype or range
(as `layers.check_token_ids`). Shapes and dtypes are static and are checked everywhere; the
values of arrays only when they are concrete: under jit (tracers) or for arrays spread over
processes they are skipped, so the jitted path never waits for the device.
"""

from __future__ import annotations

import math
import numbers

import jax
import numpy as np


def is_concrete(x) -> bool:
  """Whether the values of `x` can be read on this host (not a tracer, not multi-process)."""
  return not isinstance(x, jax.core.Tracer) and getattr(x, "is_fully_addressable", True)


def int_array(x, name: str, what: str = "token ids"):
  """`x` as a 2-D integer array [batch, length]; nested lists and tuples are converted.

  Args:
    x: an array (NumPy or JAX, kept as is) or nested lists of ints, [batch, length].
    name: the argument's name, for the messages.
    what: what the integers are ("token ids", "positions", ...), for the messages.

  Returns:
    The same values as an array of shape [batch, length] and integer dtype.
  """
  if x is None:
    raise TypeError(f"{name} is None: expected a [batch, length] integer array of {what}")
  if isinstance(x, (str, bytes)):
    raise TypeError(f"{name}={x!r:.40} is text: expected a [batch, length] integer array of "
                    f"{what}; encode text with the vocabulary first (or call sj.generate_text)")
  if isinstance(x, (list, tuple)):
    try:
      x = np.asarray(x)
    except ValueError:
      raise ValueError(f"{name}: rows of different lengths; pad every row to one length "
                       "([batch, length])") from None
  if not (hasattr(x, "shape") and hasattr(x, "dtype")):
    raise TypeError(f"{name} must be a [batch, length] integer array of {what} (or nested lists "
                    f"of ints), got {type(x).__name__}")
  if x.ndim != 2:
    fix = ("; wrap a single sequence as [[...]] (or x[None])" if x.ndim == 1 else "")
    raise ValueError(f"{name} has shape {tuple(x.shape)}: expected [batch, length] (2-D){fix}")
  if not np.issubdtype(x.dtype, np.integer):
    raise ValueError(f"{name} has dtype {x.dtype}: {what} must be integers; cast with "
                     ".astype(np.int32)")
  return x


def same_shape(x, name: str, ref, ref_name: str) -> None:
  """ValueError unless `x` has the shape of `ref` (one entry per token)."""
  if tuple(x.shape) != tuple(ref.shape):
    raise ValueError(f"{name} has shape {tuple(x.shape)} but {ref_name} has shape "
                     f"{tuple(ref.shape)}: they must match ([batch, length], one per token)")


def model_inputs(tokens, positions, segment_ids, prefix: str, *, max_len: int,
                 uses_positions: bool, mode: str = "train"):
  """Checked (tokens, positions, segment_ids) of one side of a model call.

  Args:
    tokens: [batch, length] int (nested lists are converted).
    positions: None or [batch, length] int: >= 0 in mode "train" (negative positions mark
      left padding only in the cached modes), < max_len when `uses_positions`.
    segment_ids: None or [batch, length] int >= 0 (0 marks padding).
    prefix: "" or "encoder_" / "decoder_": the arguments' names are prefix + "tokens", ...
    max_len: the model's max_len.
    uses_positions: whether an attention kind reading these positions has position tables.
    mode: "train", "prefill" or "decode".

  Returns:
    (tokens, positions, segment_ids), lists converted to arrays.
  """
  tokens = int_array(tokens, prefix + "tokens")
  if positions is not None:
    name = prefix + "positions"
    positions = int_array(positions, name, "positions")
    same_shape(positions, name, tokens, prefix + "tokens")
    if is_concrete(positions) and np.size(positions):
      values = np.asarray(positions)
      low, high = int(values.min()), int(values.max())
      if mode == "train" and low < 0:
        raise ValueError(f"{name} holds {low}: positions must be >= 0 (negative positions mark "
                         "left padding only in mode='prefill'/'decode'); mark padding with "
                         "segment id 0 instead")
      if uses_positions and high >= max_len:
        raise ValueError(f"{name} holds {high}, outside [0, max_len={max_len}): synthetic "
                         "attention kinds only have logits for positions 0..max_len-1; truncate "
                         "or split the sequence, or raise ModelConfig.max_len")
  if segment_ids is not None:
    name = prefix + "segment_ids"
    segment_ids = int_array(segment_ids, name, "segment ids")
    same_shape(segment_ids, name, tokens, prefix + "tokens")
    if is_concrete(segment_ids) and np.size(segment_ids) and int(np.min(segment_ids)) < 0:
      raise ValueError(f"{name} holds {int(np.min(segment_ids))}: segment ids must be >= 0 "
                       "(0 marks padding, 1, 2, ... the packed sequences)")
  return tokens, positions, segment_ids


def integer(value, name: str, low: int, high: int | None = None, rule: str = "",
            fix: str = "") -> int:
  """`value` as an int in [low, high]: TypeError for floats and bools, ValueError out of range."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{name}={value!r} must be an int ({type(value).__name__} given){fix}")
  if value < low or (high is not None and value > high):
    span = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{name}={value} must be {span}{rule}{fix}")
  return int(value)


def real(value, name: str, low: float, *, low_open: bool, high: float | None = None,
         fix: str = "") -> float:
  """`value` as a finite float >= low (> low when `low_open`) and <= high."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise TypeError(f"{name}={value!r} must be a number ({type(value).__name__} given)")
  value = float(value)
  too_low = value <= low if low_open else value < low
  if not math.isfinite(value) or too_low or (high is not None and value > high):
    span = f"{'>' if low_open else '>='} {low}" + ("" if high is None else f" and <= {high}")
    raise ValueError(f"{name}={value} must be finite and {span}{fix}")
  return value


def token_id(value, name: str, vocab_size: int, fix: str = "") -> int | None:
  """None, or an int token id in [0, vocab_size)."""
  if value is None:
    return None
  return integer(value, name, 0, vocab_size - 1,
                 f" (a token id of the model's vocabulary, vocab_size={vocab_size})", fix)
