"""Config files and CLIs: every experiment config converts and validates; bad values, a missing
data directory and an unknown task fail clearly; train.py + eval.py run end to end on the
real offline corpus when it is prepared."""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import fake_data
import pytest

from synthesizer_jax import data
from synthesizer_jax import run as run_lib
from synthesizer_jax import sharding as shd
from synthesizer_jax.config import RunConfig, TrainConfig, parse_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
             self_attention="dense")


def load_config(path):
  sys.path.insert(0, REPO)
  try:
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
  finally:
    sys.path.remove(REPO)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))),
                         ids=os.path.basename)
def test_every_config_converts_and_names_a_task(path):
  config = load_config(path)
  run_cfg = parse_config(config.to_dict())
  assert run_cfg.train.task in data.TASKS + data.MIXTURES
  assert run_cfg.model_for(100).vocab_size == 100
  assert isinstance(run_cfg.mesh, shd.MeshConfig)
  if not path.endswith("base.py"):
    assert "python train.py --config configs/" in load_doc(path)
    assert "Expected result" in load_doc(path)  # measured, or why not (big_vision's habit)


def load_doc(path):
  import ast

  return ast.get_docstring(ast.parse(open(path).read()))


def test_experiment_helper_sets_size_schedule_and_refuses_unknown_fields():
  sys.path.insert(0, REPO)
  try:
    from configs import base
  finally:
    sys.path.remove(REPO)
  c = base.experiment("offline_lm", size="base", max_len=64, steps=10, warmup=2, every=5,
                      model=dict(num_layers=3), batch_size=4)
  assert (c.model.d_model, c.model.num_layers, c.model.max_len) == (512, 3, 64)
  assert (c.num_train_steps, c.warmup_steps, c.eval_every, c.checkpoint_every) == (10, 2, 5, 5)
  assert c.batch_size == 4 and c.learning_rate == base.get_config().learning_rate
  with pytest.raises(KeyError, match="'batchsize'"):
    base.experiment("offline_lm", size="small", max_len=8, steps=1, warmup=0, every=1,
                    batchsize=4)
  with pytest.raises(KeyError, match="'layers'"):
    base.experiment("offline_lm", size="small", max_len=8, steps=1, warmup=0, every=1,
                    model=dict(layers=4))


def test_override_sets_attention_kind():
  config = load_config(os.path.join(REPO, "configs", "offline_lm.py"))
  config.model.self_attention = "random"
  assert parse_config(config.to_dict()).model.self_attention == "random"


def test_unknown_fields_and_bad_values_fail_clearly(tmp_path):
  with pytest.raises(ValueError, match=r"unknown mesh config fields \['tensors'\]"):
    parse_config({"mesh": {"tensors": 2}})
  with pytest.raises(ValueError, match=r"unknown model config fields \['d_modle'\]"):
    parse_config({"model": {"d_modle": 8}})
  with pytest.raises(ValueError, match="MeshConfig.rules"):
    shd.MeshConfig(rules="zero")
  with pytest.raises(ValueError, match="ModelConfig.num_heads"):
    parse_config({"model": {**MODEL, "num_heads": 3}})
  cfg = TrainConfig(task="fake_lm", data_dir=str(tmp_path), targets_length=32)
  with pytest.raises(ValueError, match="exceed model.max_len=16"):
    run_lib.setup(RunConfig.build(MODEL, cfg), data=fake_data)


def test_unknown_task_lists_known_ones(tmp_path):
  cfg = TrainConfig(task="offline_lmm", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown task 'offline_lmm'; known tasks: .*offline_lm"):
    run_lib.setup(RunConfig.build(MODEL, cfg))


def test_missing_data_dir_says_how_to_prepare(tmp_path):
  cfg = TrainConfig(task="offline_lm", data_dir=str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="synthesizer_jax.data.prepare --data_dir"):
    run_lib.setup(RunConfig.build(MODEL, cfg))


def _prepared_data_dir():
  path = data.default_data_dir()
  ready = os.path.exists(os.path.join(path, "vocab", "offline_lm.model")) and os.path.isdir(
      os.path.join(path, "offline_lm"))
  return path if ready else None


@pytest.mark.skipif(_prepared_data_dir() is None,
                    reason="offline_lm not prepared: run `python -m synthesizer_jax.data.prepare "
                           "--data_dir data --tasks offline_lm` (or set SYNTHESIZER_DATA_DIR)")
def test_train_then_eval_cli_on_offline_corpus(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  work = str(tmp_path / "run")
  common = ["--config.model.d_model=16", "--config.model.num_heads=2",
            "--config.model.head_dim=8", "--config.model.mlp_dim=32",
            "--config.model.num_layers=1", "--config.model.max_len=32",
            "--config.targets_length=32", "--config.batch_size=4"]
  subprocess.run([sys.executable, "train.py", "--config", "configs/offline_lm.py",
                  "--workdir", work, f"--config.data_dir={_prepared_data_dir()}",
                  "--config.num_train_steps=3", "--config.log_every=1",
                  "--config.eval_batches=1", *common], cwd=REPO, env=env, check=True,
                 capture_output=True, text=True, timeout=300)
  for name in ("metrics.jsonl", "eval_results.json", "loss_curve.png", "config.json"):
    assert os.path.exists(os.path.join(work, name)), name
  assert os.listdir(os.path.join(work, "tb"))
  results = json.load(open(os.path.join(work, "eval_results.json")))
  assert results["step"] == 3 and results["metrics"]["perplexity"] > 1
  out = subprocess.run([sys.executable, "eval.py", "--workdir", work, "--eval_batches=1"],
                       cwd=REPO, env=env, check=True, capture_output=True, text=True,
                       timeout=300)
  assert json.loads(out.stdout[out.stdout.index("{"):])["metrics"]["perplexity"] > 1
  assert os.path.exists(os.path.join(work, "eval_validation_3.json"))
