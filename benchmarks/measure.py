"""Timing, memory and FLOP measurements of one compiled JAX program, and the machine description.

`measure(fn, args)` compiles `fn` once (ahead of time, so the compile is not timed), reads XLA's
cost and memory analyses, runs it `warmup` times, then times `repeats` runs with
`block_until_ready` and keeps the median. Failures (out of memory, unsupported implementation)
become an `error` string in the result instead of ending the sweep.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

# Dense bf16 peak FLOP/s per chip, for MFU (vendor data sheets; SXM parts).
PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
}


def peak_flops(device: jax.Device) -> float | None:
  """Dense bf16 peak of `device` from PEAK_BF16_FLOPS (None when unknown, e.g. a CPU)."""
  kind = getattr(device, "device_kind", "")
  for name, flops in PEAK_BF16_FLOPS.items():
    if name.lower() in kind.lower():
      return flops
  return None


def _first(analysis):
  """cost_analysis() is a dict on new JAX and a one-element list on older versions."""
  if isinstance(analysis, (list, tuple)):
    return analysis[0] if analysis else {}
  return analysis or {}


def compiled_stats(compiled) -> dict[str, Any]:
  """XLA's FLOP count and memory plan of a compiled program (bytes; None when not reported)."""
  out: dict[str, Any] = {}
  try:
    out["xla_flops"] = float(_first(compiled.cost_analysis()).get("flops", float("nan")))
  except Exception:  # noqa: BLE001  (some backends do not implement the analysis)
    out["xla_flops"] = None
  try:
    mem = compiled.memory_analysis()
  except Exception:  # noqa: BLE001
    mem = None
  if mem is not None:
    arg, res = mem.argument_size_in_bytes, mem.output_size_in_bytes
    temp, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
    out.update(mem_argument_bytes=int(arg), mem_output_bytes=int(res), mem_temp_bytes=int(temp),
               mem_alias_bytes=int(alias),
               # Arguments + outputs + XLA's temporary buffers (reused across the program), less
               # donated buffers. The backend's own peak_memory_in_bytes is kept too, but on CPU
               # it leaves out most temporaries, so the footprint is what the tables compare.
               mem_footprint_bytes=int(arg + res + temp - alias),
               mem_xla_peak_bytes=int(getattr(mem, "peak_memory_in_bytes", 0) or 0))
  return out


def device_memory(device: jax.Device | None = None) -> dict[str, Any]:
  """The device allocator's own counters (GPU/TPU); empty on CPU, where memory_stats() is None."""
  device = device or jax.devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # noqa: BLE001
    stats = None
  if not stats:
    return {}
  return {"device_bytes_in_use": stats.get("bytes_in_use"),
          "device_peak_bytes": stats.get("peak_bytes_in_use")}


def measure(fn: Callable, args: Sequence[Any], *, repeats: int = 5, warmup: int = 1,
            carry: bool = False, donate: Sequence[int] = (), run: bool = True) -> dict[str, Any]:
  """Compiles and times `fn(*args)`.

  Args:
    fn: a function of arrays (pytrees); it is wrapped in `jax.jit`.
    args: its arguments.
    repeats: timed runs; the result's `time_ms` is their median.
    warmup: untimed runs after compilation.
    carry: `fn` returns its own first argument updated (a train step returning the new state);
      each run is then fed the previous run's output, so donated buffers stay valid.
    donate: argument indices donated to the program.
    run: False compiles only (memory and FLOPs, no timing).

  Returns:
    {"time_ms", "times_ms", "compile_s", "xla_flops", "mem_*_bytes", "device_*"}, or the keys
    known so far plus "error" when compiling or running failed.
  """
  out: dict[str, Any] = {}
  try:
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=tuple(donate)).lower(*args).compile()
    out["compile_s"] = time.perf_counter() - start
    out.update(compiled_stats(compiled))
    if not run:
      return out
    args = list(args)
    times = []
    for i in range(warmup + repeats):
      start = time.perf_counter()
      result = compiled(*args)
      jax.block_until_ready(result)
      if i >= warmup:
        times.append((time.perf_counter() - start) * 1e3)
      if carry:
        args[0] = result[0] if isinstance(result, tuple) else result
    out["times_ms"] = [round(t, 3) for t in times]
    out["time_ms"] = statistics.median(times)
    out.update(device_memory())
  except Exception as err:  # noqa: BLE001  (record OOM / unsupported and keep sweeping)
    out["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
  return out


def _cpu_model() -> str:
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    for line in text.splitlines():
      if line.startswith("Model name:"):
        return line.split(":", 1)[1].strip()
  except Exception:  # noqa: BLE001
    pass
  return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
  """Where and with what the benchmark ran: devices, CPU, versions, date."""
  import flax
  import numpy as np
  import optax

  device = jax.devices()[0]
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "backend": jax.default_backend(),
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "cpu": _cpu_model(),
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": getattr(jax.lib, "__version__", None) or jax.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "numpy": np.__version__,
      "peak_flops": peak_flops(device),
  }
