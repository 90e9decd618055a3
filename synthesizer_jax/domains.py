"""Field domains: the type and range of a config field, declared next to the field.

    learning_rate: float = knob(1e-3, real(gt=0))

`check_fields(config)` runs every field's domain when the dataclass is built and raises a
TypeError (wrong type) or ValueError (out of range) that names the field, the value and
the rule: `TrainConfig.b1=1.5: must be a finite number in [0, 1)`. A domain may normalise
a value (a list of names becomes a tuple); the normalised value is what the config holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any


class FieldError(ValueError):
  """Raised by a domain; `check_fields` turns it into a message naming the field."""

  def __init__(self, rule: str, type_error: bool = False):
    super().__init__(rule)
    self.rule = rule
    self.type_error = type_error


Check = Callable[[Any], Any]  # value -> normalised value, or raises FieldError


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def integer(ge: int | None = None) -> Check:
  """An int (not a bool) >= `ge`."""
  rule = ("must be a positive integer" if ge == 1 else
          f"must be an integer >= {ge}" if ge is not None else "must be an integer")

  def check(value):
    if not _is_int(value):
      raise FieldError(f"{rule}, got {type(value).__name__}", type_error=True)
    if ge is not None and value < ge:
      raise FieldError(rule)
    return value

  return check


def real(ge: float | None = None, gt: float | None = None, le: float | None = None,
         lt: float | None = None) -> Check:
  """A finite int or float within the given bounds (NaN and infinities are refused)."""
  lo = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else "(-inf"
  hi = f"{le}]" if le is not None else f"{lt})" if lt is not None else "inf)"
  rule = f"must be in {lo}, {hi}"

  def check(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise FieldError(f"{rule}, got {type(value).__name__}", type_error=True)
    if not math.isfinite(value) or (
        (ge is not None and value < ge) or (gt is not None and value <= gt)
        or (le is not None and value > le) or (lt is not None and value >= lt)):
      raise FieldError(rule)
    return value

  return check


def one_of(*choices) -> Check:
  def check(value):
    if value not in choices:
      raise FieldError(f"must be one of {choices}")
    return value

  return check


def boolean() -> Check:
  def check(value):
    if not isinstance(value, bool):
      raise FieldError(f"must be True or False, got {type(value).__name__}", type_error=True)
    return value

  return check


def text(nonempty: bool = False) -> Check:
  def check(value):
    if not isinstance(value, str):
      raise FieldError(f"must be a string, got {type(value).__name__}", type_error=True)
    if nonempty and not value:
      raise FieldError("must be a non-empty string")
    return value

  return check


def names() -> Check:
  """A tuple of strings (a list is accepted); a bare string is refused, since iterating it
  would give its letters."""

  def check(value):
    if isinstance(value, str):
      raise FieldError(f"must be a tuple of names; write ({value!r},) for one name",
                       type_error=True)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
      raise FieldError("must be a tuple of strings", type_error=True)
    return tuple(value)

  return check


def int_pair() -> Check:
  """Two positive integers (a list is accepted and becomes a tuple)."""

  def check(value):
    if (not isinstance(value, (list, tuple)) or len(value) != 2
        or not all(_is_int(v) and v >= 1 for v in value)):
      raise FieldError("must be two positive integers (a, b)")
    return tuple(value)

  return check


def optional(inner: Check) -> Check:
  """None, or a value of `inner`'s domain."""

  def check(value):
    if value is None:
      return None
    try:
      return inner(value)
    except FieldError as err:
      raise FieldError(f"must be None or: {err.rule}", err.type_error) from None

  return check


def knob(default, domain: Check, *, factory: bool = False):
  """A dataclass field with a domain (`factory`: default is a zero-argument factory)."""
  kw = {"default_factory": default} if factory else {"default": default}
  return dataclasses.field(metadata={"domain": domain}, **kw)


class ConfigTypeError(TypeError, ValueError):
  """A config field of the wrong type (also a ValueError: every bad config value is one)."""


def check_fields(config) -> None:
  """Checks (and normalises, on a frozen dataclass too) every field that has a domain."""
  owner = type(config).__name__
  for f in dataclasses.fields(config):
    domain = f.metadata.get("domain")
    if domain is None:
      continue
    value = getattr(config, f.name)
    try:
      normalised = domain(value)
    except FieldError as err:
      error = ConfigTypeError if err.type_error else ValueError
      raise error(f"{owner}.{f.name}={value!r}: {err.rule}") from None
    if normalised is not value:
      object.__setattr__(config, f.name, normalised)


def unknown_fields(cls, values, what: str) -> None:
  """ValueError naming every key of `values` that is not a field of dataclass `cls`."""
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"unknown {what} fields {unknown}; valid fields: {sorted(known)}")
