"""The model, attention, benchmark, smoke-run and training-loop code import and train without
TensorFlow, seqio, ml_collections or clu (an accelerator host may have JAX and nothing else)."""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import sys

    # As if not installed: `import x` raises ImportError, importlib.util.find_spec gives None.
    for name in ("tensorflow", "seqio", "ml_collections", "clu", "tensorflow_datasets"):
      sys.modules[name] = None
    sys.path.insert(0, "tests")
    import fake_data
    import synthesizer_jax as sj
    from synthesizer_jax import evaluation, loop, run, shapes, steps
    from synthesizer_jax.config import MeshConfig, RunConfig, TrainConfig
    import benchmarks.attention, benchmarks.data_pipeline, benchmarks.smoke
    from synthesizer_jax import smoke, smoke_checks
    # The smoke run builds a missing cache only where TensorFlow and seqio import.
    assert not smoke_checks.importable("tensorflow", "seqio")

    cfg = TrainConfig(task="fake_lm", data_dir=sys.argv[1], batch_size=4, targets_length=16,
                      num_train_steps=2, warmup_steps=1, eval_batches=1, predict_batches=0,
                      sample_prompt="ab", async_checkpoints=False)
    model = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
                 self_attention="dense+dot")
    out = loop.train_and_evaluate(RunConfig.build(model, cfg, MeshConfig(num_devices=1)),
                                  sys.argv[1] + "/work", data=fake_data, progress=False)
    assert out["step"] == 2 and "perplexity" in out["metrics"], out
    assert not [m for m, v in sys.modules.items() if v is not None
                and m.split(".")[0] in ("tensorflow", "seqio")]
    print("trained without TensorFlow")
""")


def test_training_wing_imports_and_trains_without_tensorflow(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO}
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "trained without TensorFlow" in out.stdout
