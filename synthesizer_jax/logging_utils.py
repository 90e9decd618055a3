"""Run logs: TensorBoard events + a JSONL file in the workdir, a console progress bar, loss curves.

Only process 0 writes files and draws the bar; other processes get no-op writers,
so a multi-host run leaves one copy of each log. The workdir may be a bucket (gs://): an
object cannot be appended to, so there the JSONL file is rewritten whole, at most every
`FLUSH_S` seconds and at close (a run killed without warning loses at most those seconds of
log lines; its checkpoints are unaffected). TensorBoard events are written to a local staging
folder and copied into `<workdir>/tb/` at the same times, through the same path type.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np

from synthesizer_jax import paths

METRICS_FILE = "metrics.jsonl"
FLUSH_S = 10.0  # object stores: the longest a logged line waits before it is written


class MetricWriter:
  """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard events in `<workdir>/tb/`.

  TensorBoard needs `tensorboardX`; where it is not installed (a bare GPU image, say) the
  writer logs one warning and keeps the JSONL file, which is what the report tools read.
  """

  def __init__(self, workdir: paths.PathLike, enabled: bool = True):
    self.enabled = enabled
    workdir = paths.as_path(workdir)
    self.path = workdir / METRICS_FILE
    self._tb = self._staging = None
    self._remote = paths.is_remote(workdir)
    self._text = ""  # object stores: the whole file, rewritten at each flush
    self._dirty, self._flushed = False, time.monotonic()
    if enabled:
      workdir.mkdir(parents=True, exist_ok=True)
      if self._remote and self.path.exists():
        self._text = self.path.read_text()  # a resumed run keeps the lines before it
      try:
        from tensorboardX import SummaryWriter
      except ImportError:
        logging.warning("tensorboardX is not installed: no TensorBoard events; metrics go to "
                        "%s only (pip install tensorboardX to get both)", self.path)
      else:
        self._tb_dir = workdir / "tb"
        self._staging = tempfile.mkdtemp(prefix="sj_tb_") if self._remote else None
        self._tb = SummaryWriter(self._staging or os.fspath(self._tb_dir))

  def write(self, step: int, scalars: dict[str, float], prefix: str = "train"):
    """One JSON line {"step", "split", name: value...} and one TensorBoard scalar per name."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in scalars.items() if np.ndim(v) == 0}
    row = {"step": int(step), "split": prefix, "time": time.time(), **values}
    line = json.dumps(row) + "\n"
    if self._remote:
      self._text += line
      self._dirty = True
      if prefix != "train" or time.monotonic() - self._flushed > FLUSH_S:
        try:
          self.flush()
        except Exception as e:  # noqa: BLE001 - the store's outage is the checkpoints' to report
          logging.warning("could not write %s (%s: %s); the lines are kept and written at the "
                          "next flush", self.path, type(e).__name__, str(e)[:200])
          self._flushed = time.monotonic()
    else:
      with self.path.open("a") as f:
        f.write(line)
    if self._tb is not None:
      for name, value in values.items():
        self._tb.add_scalar(f"{prefix}/{name}", value, int(step))

  def flush(self):
    """Object stores: writes the lines logged so far (local files are appended at once)."""
    if self.enabled and self._dirty:
      self.path.write_text(self._text)
      if self._tb is not None:
        self._tb.flush()
        self._copy_events()
      self._dirty, self._flushed = False, time.monotonic()

  def _copy_events(self):
    """Object stores: the staged TensorBoard event files into `<workdir>/tb/`."""
    self._tb_dir.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(self._staging):
      (self._tb_dir / name).write_bytes((paths.as_path(self._staging) / name).read_bytes())

  def write_text(self, step: int, tag: str, text: str):
    if self._tb is not None:
      self._tb.add_text(tag, text, int(step))

  def close(self):
    self.flush()
    if self._tb is not None:
      self._tb.close()
      if self._staging:
        self._copy_events()
        shutil.rmtree(self._staging, ignore_errors=True)


class Progress:
  """tqdm bar over steps showing loss, steps/s, tokens/s and the ETA (tqdm's own).

  `advance` every step (cheap, no device sync); `report` at log steps computes the
  rates over the steps since the previous report.
  """

  def __init__(self, start: int, total: int, enabled: bool = True):
    self.enabled = enabled
    self._time, self._step, self._reported_step, self._tokens = time.time(), start, start, 0.0
    self._bar = None
    if enabled:
      from tqdm import tqdm

      self._bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                  "[{elapsed}<{remaining}{postfix}]")

  def advance(self, step: int, tokens: float = 0.0):
    if self._bar is not None:
      self._bar.update(step - self._step)
    self._step = step
    self._tokens += tokens

  def report(self, loss: float | None = None) -> tuple[float, float]:
    """(steps/s, tokens/s) since the previous report; shown on the bar."""
    now = time.time()
    elapsed = max(now - self._time, 1e-9)
    rates = ((self._step - self._reported_step) / elapsed, self._tokens / elapsed)
    if self._bar is not None:
      post = {"steps/s": f"{rates[0]:.2f}", "tok/s": f"{rates[1]:,.0f}"}
      if loss is not None:
        post = {"loss": f"{loss:.3f}", **post}
      self._bar.set_postfix(post)
    self._time, self._reported_step, self._tokens = now, self._step, 0.0
    return rates

  def write(self, message: str):
    if self._bar is not None:
      self._bar.write(message)
    elif self.enabled:
      print(message)

  def close(self):
    if self._bar is not None:
      self._bar.close()


def read_metrics(workdir: paths.PathLike):
  """The JSONL log as a list of dicts (empty if absent)."""
  path = paths.as_path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(workdir: paths.PathLike, out_name: str = "loss_curve.png") -> str | None:
  """Train (and eval) loss against step from the JSONL log, saved as a PNG; returns its path.

  Returns None when the workdir has no log yet; a workdir that does not exist is an error
  (a mistyped path would otherwise look like a run that has not logged). `out_name` is a
  file name inside `workdir`.
  """
  if not isinstance(workdir, (str, os.PathLike)):
    raise TypeError(f"workdir={workdir!r:.60} must be a directory path (str)")
  if not isinstance(out_name, str) or not out_name or os.path.basename(out_name) != out_name:
    raise ValueError(f"out_name={out_name!r}: must be a file name without a directory, such as "
                     "'loss_curve.png' (it is written inside workdir)")
  workdir = paths.as_path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"workdir {workdir} does not exist: pass the "
                            "directory a run wrote (train.py --workdir)")
  rows = read_metrics(workdir)
  if not rows:
    return None
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  for split, key in (("train", "loss"), ("eval", "loss")):
    pts = sorted((r["step"], r[key]) for r in rows if r.get("split") == split and key in r)
    if pts:
      steps, values = zip(*pts, strict=False)
      ax.plot(steps, values, marker="o" if split == "eval" else None, label=f"{split} {key}")
  ax.set_xlabel("step")
  ax.set_ylabel("loss (nats / token)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  return save_png(fig, workdir / out_name)


def save_png(fig, path: paths.PathLike) -> str:
  """Writes a matplotlib figure as a PNG at `path` (local or gs://: rendered in memory, then
  written through the path type) and closes it; returns the path."""
  import matplotlib.pyplot as plt

  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=100)
  plt.close(fig)
  paths.as_path(path).write_bytes(png.getvalue())
  return os.fspath(path)
