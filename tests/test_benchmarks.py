"""The benchmarks at a tiny size, so they cannot rot: baselines agree with the library, the
benchmark writes its JSON/CSV/plots, the smoke run trains every model shape. No timing asserts."""

import csv
import json

import jax
import numpy as np
import pytest
from helpers import randomize, small_config, unbox

import synthesizer_jax as sj
from benchmarks import attention as bench
from benchmarks import data_pipeline, smoke, variants
from experiments import gpu_cache_train
from synthesizer_jax import steps, transformer
from synthesizer_jax.data import registry


@pytest.mark.parametrize("impl", [None, "xla"])
def test_jax_dot_attention_matches_library_dot(impl):
  """Same parameter tree, same causal outputs as Attention(kind="dot")."""
  cfg = small_config().attention("dot")
  x = np.random.default_rng(0).standard_normal((2, 6, 16)).astype(np.float32)
  mask = np.tril(np.ones((6, 6), bool))[None, None]
  pos = np.arange(6)[None]
  ours = sj.Attention(cfg)
  params = ours.init(jax.random.key(0), x, x, mask, pos, pos)
  theirs = variants.JaxDotAttention(cfg, implementation=impl)
  assert (jax.tree.structure(theirs.init(jax.random.key(0), x, x, mask, pos, pos))
          == jax.tree.structure(params))
  np.testing.assert_allclose(theirs.apply(params, x, x, mask, pos, pos),
                             ours.apply(params, x, x, mask, pos, pos), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["dot_xla", "random/sliced"])
def test_model_attention_swaps_in_variant_and_restores(name):
  """A DecoderLM on the benchmark-only module gives the library's logits on the same params."""
  variant = variants.make_variant(name)
  cfg = small_config(self_attention=variant.kind)
  tokens = np.arange(1, 17, dtype=np.int32).reshape(2, 8)
  model = sj.DecoderLM(cfg)
  params = randomize(model.init(jax.random.key(0), tokens))
  expected = model.apply(params, tokens)
  with variants.model_attention(variant):
    assert transformer.Attention is not sj.Attention
    assert (jax.tree.structure(unbox(model.init(jax.random.key(0), tokens)))
            == jax.tree.structure(params))
    got = model.apply(params, tokens)
  assert transformer.Attention is sj.Attention
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["nope", "dot_jax/per_batch", "random/cached", "dense/x",
                                  "dense@flash", "dot_jax@blockwise", "random/sliced@blockwise"])
def test_bad_variant_names_are_rejected(name):
  with pytest.raises(ValueError, match="variant|unknown attention kind"):
    variants.make_variant(name)


def test_every_preset_variant_parses_and_builds_a_valid_config():
  for preset in bench.PRESETS.values():
    for name in preset.variants:
      v = variants.make_variant(name)
      preset.model_config(v.kind, max(preset.lengths), v.attention_impl)


def test_memory_bench_compares_attention_impls(tmp_path):
  """`kind@impl` variants run the library kind with that attention_impl (compile only)."""
  out = tmp_path / "mem"
  assert bench.main(["--preset", "tiny", "--variants", "dense@materialized,dense@blockwise",
                     "--lengths", "64", "--benches", "memory", "--out", str(out)]) == 0
  records = json.loads((tmp_path / "mem.json").read_text())["records"]
  temp = {(r["variant"], r["mode"]): r["mem_temp_bytes"] for r in records}
  assert set(temp) == {(v, m) for v in ("dense@materialized", "dense@blockwise")
                       for m in ("layer_fwd_bwd", "train_step")}
  assert all(v > 0 for v in temp.values())
  impls = {variants.make_variant(r["variant"]).attention_impl for r in records}
  assert impls == {"materialized", "blockwise"}


def test_benchmark_writes_results(tmp_path):
  out = tmp_path / "tiny"
  names = ["random/per_batch"]  # dot_jax is checked above; each variant costs ~5 compiles
  assert bench.main(["--preset", "tiny", "--variants", ",".join(names), "--lengths", "16",
                     "--batch-sizes", "2", "--repeats", "1", "--out", str(out)]) == 0
  payload = json.loads((tmp_path / "tiny.json").read_text())
  records = payload["records"]
  assert not [r for r in records if r.get("error")]
  for bench_name, mode in [("layer", "fwd"), ("layer", "fwd_bwd"), ("step", "train_step")]:
    got = {r["variant"]: r for r in records if r["bench"] == bench_name and r["mode"] == mode}
    assert set(got) == set(names)
    for rec in got.values():
      assert rec["time_ms"] > 0 and rec["tokens_per_s"] > 0 and rec["mem_footprint_bytes"] > 0
      assert 0.5 < rec["flops_ratio"] < 1.2, rec  # analytic vs XLA: same order of FLOPs
  batch = [r for r in records if r["bench"] == "batch"]
  assert [(r["variant"], r["batch"]) for r in batch] == [("random/per_batch", 2)]
  assert batch[0]["step_footprint_bytes"] > 0
  assert payload["meta"]["decode_cache_bytes"]["bytes"]["random"] * 2 == (
      payload["meta"]["decode_cache_bytes"]["bytes"]["dot"])
  with open(tmp_path / "tiny.csv") as f:
    assert len(list(csv.DictReader(f))) == len(records)
  for suffix in ("layer", "step", "batch"):
    assert (tmp_path / f"tiny_{suffix}.png").stat().st_size > 0


@pytest.mark.parametrize("shape", smoke.SHAPES)
def test_smoke_batches_have_the_training_features(shape):
  batch = smoke.synthetic_batch(shape, np.random.default_rng(0), 3, 8, 32)
  steps.check_batch(batch, shape, global_batch_size=3)


def test_smoke_trains_in_bf16(capsys):
  """One shape (encoder + decoder) through the project's train step; the others' steps are
  exercised by tests/test_training.py and cost a compile each here."""
  assert smoke.main(["--size", "tiny", "--steps", "2", "--shapes", "encdec"]) == 0
  assert "encdec" in capsys.readouterr().out


def test_smoke_benchmark_does_not_claim_to_check_the_machine():
  assert "not a check that a machine works" in smoke.__doc__
  assert "python -m synthesizer_jax.smoke" in smoke.__doc__


@pytest.mark.parametrize("task", registry.TASKS)
def test_task_arguments_take_every_registry_task(task):
  """The entry points that take tasks read each one at its features' lengths."""
  args = data_pipeline.parse_args(["--tasks", task])
  assert args.tasks == [task]
  assert set(args.lengths[task]) == set(registry.task_info(task).feature_keys)
  assert all(n > 0 for n in args.lengths[task].values())
  assert set(gpu_cache_train.task_spec(task)) == {"model", "train"}


def test_task_arguments_refuse_an_unknown_task(capsys):
  for parse in (data_pipeline.parse_args, gpu_cache_train.main):
    with pytest.raises(SystemExit):
      parse(["--tasks", "offline_lm_prose,nope", "--out", "unused"])
    err = capsys.readouterr().err
    assert "nope" in err and "offline_lm_prose" in err  # it names the registry's tasks
  with pytest.raises(SystemExit):
    data_pipeline.parse_args(["--tasks", ""])


def test_preemption_benchmark_runs_both_modes_on_two_processes(tmp_path):
  """Both agreement modes run on 2 processes and report their figures (no speed asserted)."""
  import json

  from benchmarks import preemption

  out = tmp_path / "p.json"
  assert preemption.main(["--steps", "3", "--size", "32", "--out", str(out)]) == 0
  rows = json.loads(out.read_text())["rows"]
  assert [r["mode"] for r in rows] == ["allgather", "sync_point"]
  for r in rows:
    assert r["steps"] == 3 and r["device_ms_per_step"] >= r["host_ms_per_step"] > 0


def test_train_step_with_loss_chunks_has_the_whole_steps_loss_and_update():
  """`--loss_chunk` measures the same training step, only with the logits in chunks."""
  p = bench.PRESETS["tiny"]
  v = variants.make_variant("dense")
  cfg = p.model_config(v.kind, 32, v.attention_impl)
  outs = []
  for chunk in (0, 12):  # 12 does not divide 32: the last chunk is padded
    step, args = bench._train_step(v, cfg, 2, 32, loss_chunk=chunk)
    with variants.model_attention(v):
      (params, _, _), loss = jax.jit(step)(*args)
      assert ("scan[" in str(jax.make_jaxpr(step)(*args))) == bool(chunk)  # the chunk loop
    outs.append((float(loss), jax.tree.leaves(params)))
  np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-5)
  for a, b in zip(outs[0][1], outs[1][1]):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
  with pytest.raises(SystemExit):
    bench.main(["--preset", "tiny", "--loss_chunk", "-1"])
