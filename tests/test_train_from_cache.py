"""Training from a task cache with data_pipeline="grain" on a host without TensorFlow, seqio
or tensorflow-datasets: it trains, evaluates, and a resumed run ends with the bitwise
parameters of an uninterrupted one."""

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest
from fixtures.data import fake_debian

from synthesizer_jax import data
from synthesizer_jax.run import Run

pytest.importorskip("seqio")  # to prepare and cache the data in this process
pytest.importorskip("grain")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, sys

    # As if not installed: `import x` raises ImportError.
    for name in ("tensorflow", "seqio", "tensorflow_datasets"):
      sys.modules[name] = None
    import jax
    import numpy as np
    import synthesizer_jax as sj
    from synthesizer_jax import loop
    from synthesizer_jax.config import MeshConfig, RunConfig, TrainConfig

    data_dir, work = sys.argv[1], sys.argv[2]
    cfg = TrainConfig(task="offline_lm", data_dir=data_dir, batch_size=4, targets_length=16,
                      num_train_steps=4, warmup_steps=1, eval_batches=1, predict_batches=0,
                      checkpoint_every=2, log_every=1, sample_prompt="The",
                      async_checkpoints=False, data_pipeline="grain")
    model = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
                 self_attention="dense+dot")
    run_cfg = RunConfig.build(model, cfg, MeshConfig(num_devices=1))
    train = lambda w, **kw: loop.train_and_evaluate(run_cfg, w, progress=False, **kw)
    out = train(work + "/whole")
    assert out["step"] == 4 and np.isfinite(out["metrics"]["perplexity"]), out
    refs = [out["metrics"][k] for k in ("unigram_perplexity", "bits_per_byte", "bytes_per_token")]
    assert np.all(np.isfinite(refs)) and min(refs) > 0, out["metrics"]
    assert out["sample"].startswith("The") and out["sample_top_p"].startswith("The"), out
    with open(work + "/whole/metrics.jsonl") as f:
      losses = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    assert len(losses) >= 4 and np.all(np.isfinite(losses)), losses
    assert train(work + "/resumed", stop_after=2)["stopped"]
    assert train(work + "/resumed")["step"] == 4
    (_, a, _), (_, b, _) = (sj.load_checkpoint(work + w) for w in ("/whole", "/resumed"))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      assert np.array_equal(np.asarray(x), np.asarray(y))
    loaded = [m for m, v in sys.modules.items() if v is not None
              and m.split(".")[0] in ("tensorflow", "seqio", "tensorflow_datasets")]
    assert not loaded, loaded
    print("trained from the cache without TensorFlow")
""")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("train_cache"))
  path = os.path.join(root, "data")
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, ["offline_lm"], progress=False)
  data.cache_task("offline_lm", path, log=lambda *a: None)
  return path


def test_trains_and_resumes_from_the_cache_without_tensorflow(data_dir, tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
  out = subprocess.run([sys.executable, "-c", SCRIPT, data_dir, str(tmp_path)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "trained from the cache without TensorFlow" in out.stdout


def _fake_run(pipeline, data_module):
  cfg = types.SimpleNamespace(data_pipeline=pipeline, task="offline_lm", data_dir="D", pack=True,
                              seed=0, data_workers=2)
  return types.SimpleNamespace(cfg=cfg, data=data_module, feature_lengths={"targets": 8},
                               local_batch_size=2, shape=types.SimpleNamespace(packable=True))


def test_run_dataset_picks_the_pipeline():
  calls = []
  module = types.SimpleNamespace(
      __name__="stand_in", has_cache=lambda task, data_dir, split: split == "train",
      get_dataset=lambda *a, **k: calls.append(("seqio", k.get("num_workers"))),
      get_cached_dataset=lambda *a, **k: calls.append(("grain", k.get("num_workers"))))
  for pipeline, split in (("auto", "train"), ("auto", "validation"), ("seqio", "train"),
                          ("grain", "validation")):
    Run.dataset(_fake_run(pipeline, module), split, train=split == "train")
  # data_workers reaches Grain's training reads only.
  assert calls == [("grain", 2), ("seqio", None), ("seqio", None), ("grain", None)]
  plain = types.SimpleNamespace(__name__="plain", get_dataset=lambda *a, **k: "seqio")
  assert Run.dataset(_fake_run("auto", plain), "train", train=True) == "seqio"
  with pytest.raises(ValueError, match="data module plain has no cached"):
    Run.dataset(_fake_run("grain", plain), "train", train=True)


def test_gpu_cache_train_script_runs_without_tensorflow(data_dir, tmp_path):
  # experiments/gpu_cache_train.py as the GPU host runs it (no TF, seqio, TFDS or
  # ml_collections), tiny and for a few seconds: it trains, stops on its timer, evaluates.
  script = textwrap.dedent("""
      import sys
      for name in ("tensorflow", "seqio", "tensorflow_datasets", "ml_collections"):
        sys.modules[name] = None
      from experiments import gpu_cache_train
      sys.exit(gpu_cache_train.main(sys.argv[1:]))
  """)
  out = tmp_path / "out"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
  done = subprocess.run([sys.executable, "-c", script, "--data_dir", data_dir, "--out", str(out),
                         "--workroot", str(tmp_path / "work"), "--tasks", "offline_lm",
                         "--kinds", "dense", "--seconds", "3", "--size", "tiny",
                         "--dtype", "float32"], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  (record,) = [json.loads(line) for line in open(out / "cache_train.jsonl")]
  assert record["steps"] >= 1 and record["tf_or_seqio_imported"] == []
  assert record["metrics"]["perplexity"] > 1 and "unigram_perplexity" in record["metrics"]
