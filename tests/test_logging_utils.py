"""Run logs: the JSONL metrics file is written with or without TensorBoard installed."""

import json
import logging
import os
import sys

import pytest

from synthesizer_jax import logging_utils


@pytest.mark.parametrize("tensorboard", [True, False])
def test_metric_writer_writes_jsonl(tmp_path, monkeypatch, caplog, tensorboard):
  if not tensorboard:  # a bare GPU image: tensorboardX cannot be imported
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
  with caplog.at_level(logging.WARNING):
    writer = logging_utils.MetricWriter(str(tmp_path))
    writer.write(3, {"loss": 1.5, "vector": [1.0, 2.0]})
    writer.write(4, {"perplexity": 7.0}, prefix="eval")
    writer.write_text(4, "sample", "hello")
    writer.close()
  with open(tmp_path / logging_utils.METRICS_FILE) as f:
    rows = [json.loads(line) for line in f]
  assert [(r["step"], r["split"]) for r in rows] == [(3, "train"), (4, "eval")]
  assert rows[0]["loss"] == 1.5 and "vector" not in rows[0]
  assert rows[1]["perplexity"] == 7.0
  assert os.path.isdir(tmp_path / "tb") == tensorboard
  assert ("tensorboardX is not installed" in caplog.text) == (not tensorboard)


def test_disabled_writer_writes_nothing(tmp_path):
  writer = logging_utils.MetricWriter(str(tmp_path / "run"), enabled=False)
  writer.write(1, {"loss": 1.0})
  writer.write_text(1, "sample", "x")
  writer.close()
  assert not os.path.exists(tmp_path / "run")
