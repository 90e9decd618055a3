"""The comparison sweep (experiments/): budgets are shared by every kind, a tiny sweep (2 kinds
x 20 steps) runs end to end into a report, and the report's pairing, gates, equal-time and
late-average readings are what they say (the diagnostic tasks: test_diagnostics.py)."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from experiments import budgets, diagnostics, gates, report, report_plots, sweep

SPEC = diagnostics.DiagSpec()


@pytest.mark.parametrize("call, match", [
    (lambda: diagnostics.DiagSpec(recall_pairs=8, recall_keys=4), "recall_keys"),
    (lambda: diagnostics.DiagSpec(recall_queries=0), "recall_queries"),
    (lambda: diagnostics.DiagSpec(recall_pairs=4, recall_queries=5, recall_replacement=False),
     "without replacement"),
    (lambda: diagnostics.DiagSpec(recall_filler=-1), "recall_filler"),
    (lambda: diagnostics.DiagSpec(lookup_len=20), "lookup_symbols"),
    (lambda: diagnostics.DiagnosticData().task_info("nope"), "unknown diagnostic task"),
    (lambda: next(diagnostics.DiagnosticData().get_dataset(
        "diag_reverse", "train", feature_lengths={"targets": 8}, batch_size=1)), "targets_length"),
    (lambda: budgets.expand_tasks("lm,bogus"), "unknown sweep task"),
    (lambda: budgets.budget("lm", "huge"), "unknown size"),
    (lambda: sweep._kinds("dot,attn"), "attn"),
])
def test_bad_input_names_the_problem(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_every_kind_of_a_task_gets_one_budget():
  assert budgets.expand_tasks("diagnostics,lm,recall") == ["reverse", "lookup", "recall", "lm"]
  for size in budgets.SIZES:
    for task in filter(lambda t: budgets.has_budget(t, size), budgets.TASKS):
      model, train, _ = budgets.budget(task, size)
      lengths = [train.get(k, 0) for k in ("targets_length", "inputs_length")]
      assert max(lengths) <= model["max_len"]  # synthetic kinds can see every position
      assert model["num_heads"] * model["head_dim"] == model["d_model"]
  # Diagnostic rows fit the diagnostic budget.
  _, train, _ = budgets.budget("recall", "small")
  assert max(SPEC.length(t) for t in diagnostics.TASKS) <= train["targets_length"]
  learn = diagnostics.DiagSpec(**budgets.diag_spec("learn"))
  assert learn.length("diag_recall") <= budgets.budget("recall", "learn")[1]["targets_length"]
  assert budgets.has_budget("lm", "learn") and not budgets.has_budget("summarize", "learn")
  with pytest.raises(ValueError, match="no budget for task 'summarize' at size 'learn' yet"):
    budgets.budget("summarize", "learn")


def test_tiny_sweep_runs_and_reports(tmp_path):
  out, work = str(tmp_path / "results"), str(tmp_path / "work")
  path = sweep.sweep(["recall"], ["dot", "random"], [0], "tiny", out, workroot=work,
                     data_dir=str(tmp_path), log=lambda *a: None)
  runs = [json.loads(line) for line in open(path)]
  assert [(r["task"], r["kind"], r["seed"]) for r in runs] == [("recall", "dot", 0),
                                                                ("recall", "random", 0)]
  for r in runs:
    assert r["steps"] == 20 and r["params"] > 0 and 0 <= r["metrics"]["token_accuracy"] <= 100
    assert r["curve"]["validation"] and r["curve"]["validation"][-1][0] == 20
    assert r["curve"]["metric"] == budgets.TASKS["recall"].metric
    speeds = r["curve"]["steps_per_sec"]
    assert [s for s, _ in speeds] == [s for s, _ in r["curve"]["train_loss"]]
    assert all(v > 0 for _, v in speeds)
  # The random table is [heads, max_len, max_len] per layer on top of dot's missing q/k.
  assert runs[0]["params"] != runs[1]["params"]
  # A second call finds both runs done and trains nothing.
  sweep.sweep(["recall"], ["dot", "random"], [0], "tiny", out, workroot=work,
              data_dir=str(tmp_path), log=lambda *a: None)
  assert len(open(path).readlines()) == 2
  written = report.write_report(out)
  rows = list(open(written["csv"]))
  assert len(rows) == 3 and rows[0].startswith("task,kind,metric")
  names = {os.path.basename(p) for p in written["plots"]}
  assert {"curves_recall.png", "maps_recall.png", "random_recall.png"} <= names
  assert "| random |" in open(written["tables"]).read()
  assert "gates" not in written  # no mixture among the runs
  # A run whose checkpoint the current code cannot run (here: an empty checkpoints folder)
  # gives way to the kind's next seed instead of sinking the kind's maps.
  stale = {**runs[1], "seed": -1, "workdir": str(tmp_path / "stale")}
  os.makedirs(os.path.join(stale["workdir"], "checkpoints"))
  inputs = report_plots.example_inputs("recall", runs[1], str(tmp_path))
  found = report_plots.restorable_maps([stale, runs[1]], inputs)
  assert found is not None and found[0] is runs[1] and found[2]
  assert len(report_plots.plot_maps([stale] + runs, "recall", str(tmp_path / "maps"))) == 2


def test_report_takes_the_guessing_level_from_the_runs_spec():
  def run(spec):
    return {"task": "lookup", "kind": "random", "seed": 0, "params": 1, "steps": 1,
            "batch_size": 1, "token_budget": 1, "metrics": {"token_accuracy": 26.0},
            "curve": {"validation": [[1, 26.0]]}, "diag_spec": spec}

  four = dataclasses.asdict(diagnostics.DiagSpec(lookup_len=4))  # guessing: 1/4
  eight = dataclasses.asdict(diagnostics.DiagSpec())  # guessing: 1/8
  table4 = report.markdown_tables(report.summarize([run(four)]))
  table8 = report.markdown_tables(report.summarize([run(eight)]))
  assert "Guessing scores 25.0%" in table4 and "| near guessing |" in table4
  assert "Guessing scores 12.5%" in table8 and "| partly |" in table8


def test_report_pairs_each_kind_with_dot_by_seed():
  def run(kind, seed, ppl):
    return {"task": "lm", "kind": kind, "seed": seed, "params": 1, "steps": 1, "batch_size": 1,
            "token_budget": 1, "metrics": {"perplexity": ppl}, "curve": {"validation": []}}

  runs = [run("dot", 0, 10.0), run("dot", 1, 12.0), run("random", 0, 11.0),
          run("random", 1, 15.0), run("random", 2, 99.0)]  # seed 2: no dot run to pair with
  rows = {r["kind"]: r for r in report.summarize(runs)}
  delta = rows["random"]["delta_vs_dot"]
  assert delta["n"] == 2 and delta["mean"] == 2.0 and delta["min"] == 1.0
  assert np.isclose(delta["std"], np.sqrt(2.0))
  assert "delta_vs_dot" not in rows["dot"]
  p = stats.ttest_rel([11.0, 15.0], [10.0, 12.0]).pvalue  # scipy's paired test as reference
  assert np.isclose(delta["p"], p) and delta["outside_noise"] is False
  assert (f"| +2.00 ± 1.41 (+1.00 .. +3.00, 2 seeds; p = {p:.2f}, inside seed noise) |"
          in report.markdown_tables(list(rows.values())))


def test_paired_delta_outside_noise_when_every_seed_moves_the_same_way():
  assert report.paired_delta([3.0, 3.1, 2.9])["outside_noise"] is True
  assert report.paired_delta([3.0, -2.0, 0.5])["outside_noise"] is False
  assert report.paired_delta([1.0])["p"] is None


def test_train_override_changes_the_budget_and_is_recorded(tmp_path):
  out, work = str(tmp_path / "results"), str(tmp_path / "work")
  argv = ["--tasks", "reverse", "--kinds", "random", "--seeds", "1", "--size", "tiny",
          "--out", out, "--workroot", work, "--no-report"]
  with pytest.raises(SystemExit):  # a field TrainConfig does not have is refused up front
    sweep.main(argv + ["--train_override", '{"num_steps": 5}'])
  assert not os.path.exists(out)
  assert sweep.main(argv + ["--train_override", '{"num_train_steps": 6, "eval_every": 3}']) == 0
  (run,) = [json.loads(line) for line in open(os.path.join(out, "runs.jsonl"))]
  assert run["steps"] == 6 and run["train_override"] == {"num_train_steps": 6, "eval_every": 3}
  assert run["token_budget"] == 6 * run["batch_size"] * run["lengths"]["targets"]
  assert [step for step, _ in run["curve"]["validation"]] == [3, 6]
  assert len(run["load_average"]) == 2 and min(run["load_average"]) >= 0  # machine load noted


def test_model_override_changes_the_model_and_is_recorded(tmp_path):
  out, work = str(tmp_path / "results"), str(tmp_path / "work")
  argv = ["--tasks", "reverse", "--kinds", "random", "--seeds", "1", "--size", "tiny",
          "--out", out, "--workroot", work, "--no-report",
          "--train_override", '{"num_train_steps": 2, "eval_every": 2}']
  for bad in ('{"self_attention": "dot"}', '{"width": 8}'):  # refused up front
    with pytest.raises(SystemExit):
      sweep.main(argv + ["--model_override", bad])
  assert not os.path.exists(out)
  base = budgets.budget("reverse", "tiny")[0]
  wider = {"mlp_dim": 2 * base["mlp_dim"], "max_len": base["max_len"] + 8}
  assert sweep.main(argv + ["--model_override", json.dumps(wider)]) == 0
  (run,) = [json.loads(line) for line in open(os.path.join(out, "runs.jsonl"))]
  assert run["model_override"] == wider and run["model"] == {**base, **wider, "self_attention":
                                                              "random"}
  spec = diagnostics.DiagSpec(**run["diag_spec"])
  vocab = diagnostics.DiagnosticData(spec).get_vocabulary(run["data_task"]).vocab_size
  lengths = run["lengths"]
  plain = sweep.param_count({**base, "self_attention": "random"}, "lm", vocab, None, lengths)
  assert run["params"] == sweep.param_count(run["model"], "lm", vocab, None, lengths) > plain


def test_gpu_script_runs_one_sweep_per_kind_side_by_side(tmp_path):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / "out"
  env = {**os.environ, "KINDS": "dot random+dot", "QUEUE": "reverse 0", "SIZE": "tiny",
         "PYTHON": sys.executable, "WORKROOT": str(tmp_path / "work")}
  done = subprocess.run(["bash", os.path.join(repo, "experiments", "gpu_diagnostics.sh"),
                         str(out)], cwd=repo, env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr
  runs = [json.loads(line) for line in open(out / "runs.jsonl")]
  assert sorted((r["task"], r["kind"], r["seed"], r["size"]) for r in runs) == [
      ("reverse", "dot", 0, "tiny"), ("reverse", "random+dot", 0, "tiny")]
  assert sorted(os.listdir(out / "logs")) == ["dot.log", "random_plus_dot.log"]


def test_mixture_gates_are_read_per_layer_and_head(tmp_path):
  import flax.linen as nn
  import jax

  import synthesizer_jax as sj

  cfg = sj.ModelConfig(vocab_size=32, d_model=16, num_heads=2, head_dim=8, mlp_dim=32,
                       num_layers=2, max_len=8, self_attention="random+dot")
  params = sj.DecoderLM(cfg).init(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]
  params = jax.tree.map(np.asarray, nn.meta.unbox(params))
  logits = np.array([[2.0, 0.0], [0.0, 1.0]])  # head 0 leans to random, head 1 to dot
  params["decoder"]["layers_1"]["self_attention"]["mixture"]["gate_logits"] = logits
  found = gates.gate_weights(params)
  assert list(found) == [f"decoder/layers_{i}/self_attention/mixture" for i in (0, 1)]
  np.testing.assert_allclose(found["decoder/layers_0/self_attention/mixture"], 0.5)  # init
  e = np.exp(logits)
  np.testing.assert_allclose(found["decoder/layers_1/self_attention/mixture"],
                             e / e.sum(1, keepdims=True))
  rows = [{"task": "recall", "kind": "random+dot", "seed": s, "layer": layer,
           "components": ("random", "dot"), "weights": w.tolist()}
          for s in (0, 1) for layer, w in found.items()]
  table = gates.markdown(rows)
  assert "| decoder/layers_1/self_attention/mixture | 0.88, 0.27 | 0.12, 0.73 |" in table
  assert [os.path.basename(p) for p in gates.plot_gates(rows, str(tmp_path))] == [
      "gates_recall_random_plus_dot.png"]


def test_classify_reference_scores_a_bag_of_words_model(tmp_path):
  from experiments import classify_reference

  rng = np.random.default_rng(0)
  os.makedirs(tmp_path / "offline_classify")
  for split, n in (("train", 60), ("validation", 20), ("test", 20)):
    labels = rng.integers(0, 2, n)
    labels[: n // 4] = 1  # 1 is the majority class
    with open(tmp_path / "offline_classify" / f"{split}.tsv", "w") as f:
      for y in labels:
        word = "great tasty" if y else "awful stale"
        f.write(f"{y}\tthis food was {word} really\n")
  out = classify_reference.main(["--data_dir", str(tmp_path)])
  _, y = classify_reference.load(str(tmp_path), "validation")
  assert out["majority"]["validation"] == pytest.approx(100 * max(y.mean(), 1 - y.mean()))
  assert out["bag_of_words"]["validation"] == 100.0  # the label is in the words


def test_report_reads_example_rows_with_the_runs_own_diag_spec():
  spec = budgets.diag_spec("learn")  # 16-token recall rows; the default spec has 32
  record = {"lengths": {"targets": 16}, "diag_spec": {**dataclasses.asdict(SPEC), **spec}}
  (tokens,) = report_plots.example_inputs("recall", record, "")
  assert tokens.shape == (1, 16)


def test_equal_time_gives_the_slower_kind_fewer_steps_and_reads_its_loss_there():
  from experiments import equal_time

  def log(rate, loss_of_step):  # logged every 10 steps; the first interval is compilation
    return [{"step": s, "steps_per_sec": 0.01 if s == 10 else rate, "loss": loss_of_step(s)}
            for s in range(10, 210, 10)]

  logs = {("dot", 0): log(2.0, lambda s: 5.0 - s / 100),
          ("dot", 1): log(2.0, lambda s: 5.2 - s / 100),
          ("random", 0): log(1.0, lambda s: 4.0 - s / 200),
          ("random", 1): log(1.0, lambda s: 4.1 - s / 200)}
  rows = {r["kind"]: r for r in equal_time.compare(logs, steps=200, window=20)}
  assert rows["dot"]["budget_s"] == 100.0  # dot: 200 steps at 2 steps/s
  assert rows["random"]["steps_in_budget"] == 100.0 and rows["dot"]["steps_in_budget"] == 200.0
  assert np.allclose(rows["random"]["ppl_equal_time"], np.exp([3.5, 3.6]))
  assert np.allclose(rows["random"]["ppl_equal_steps"], np.exp([3.0, 3.1]))
  delta = rows["random"]["delta_equal_time"]
  expected = np.mean(np.exp([3.5, 3.6]) - np.exp([3.0, 3.2]))
  assert delta["n"] == 2 and np.isclose(delta["mean"], expected)
  assert ("| random | 1.000 (1.000 .. 1.000) | 0.500 | 100 |"
          in equal_time.markdown(list(rows.values()), 200))
  # The loss at a step is read off a line through the nearby logs; later ones are left out.
  bent = [{"step": s, "loss": 1.0 if s <= 100 else 9.0} for s in range(10, 210, 10)]
  assert np.isclose(equal_time.loss_at(bent, 90, window=30, last=100), 1.0)
  with pytest.raises(ValueError, match="fewer than 2 training losses"):
    equal_time.loss_at(bent, 150, window=5)


def test_equal_time_reads_a_records_curve_and_refuses_one_without_speeds():
  from experiments import equal_time

  curve = {"validation": [], "train_loss": [[25, 5.0], [50, 4.0]],
           "steps_per_sec": [[25, 0.5], [50, 1.5]]}
  assert equal_time.run_log({"curve": curve}) == [
      {"step": 25, "loss": 5.0, "steps_per_sec": 0.5}, {"step": 50, "loss": 4.0,
                                                         "steps_per_sec": 1.5}]
  old = {"kind": "dense", "seed": 2, "curve": {"validation": [], "train_loss": [[25, 5.0]]}}
  with pytest.raises(ValueError, match="dense seed 2 record has no steps/s.*rerun"):
    equal_time.run_log(old)


def test_late_average_scores_each_run_by_the_mean_of_its_last_evaluations(tmp_path):
  from experiments import late_average

  def run(kind, seed, curve):
    return {"task": "classify", "kind": kind, "seed": seed, "params": 1, "steps": 300,
            "batch_size": 1, "token_budget": 1, "metrics": {"accuracy": curve[-1]},
            "curve": {"metric": "accuracy",
                      "validation": [[100 * (i + 1), v] for i, v in enumerate(curve)]}}

  runs = [run("dot", 0, [60.0, 80.0, 82.0, 78.0]), run("dot", 1, [61.0, 79.0, 81.0, 83.0]),
          run("dense", 0, [50.0, 77.0, 79.0, 78.0]), run("dense", 1, [52.0, 75.0, 80.0, 79.0]),
          {"task": "lm", "kind": "dot", "seed": 0}]
  late = {(r["kind"], r["seed"]): r["metrics"]["accuracy"]
          for r in late_average.late_runs(runs, "classify", 3)}
  assert late == {("dot", 0): 80.0, ("dot", 1): 81.0, ("dense", 0): 78.0, ("dense", 1): 78.0}
  with open(tmp_path / "runs.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in runs[:4])
  late_average.main(["--out", str(tmp_path), "--last", "3"])
  text = (tmp_path / "late_classify.md").read_text()
  assert "last 3 evaluations (steps 200, 300, 400)" in text
  assert "| -2.50 ± 0.71 (-3.00 .. -2.00, 2 seeds;" in text  # (78-80, 78-81), paired by seed
  longer = run("dense", 2, [50.0, 77.0, 79.0, 78.0, 80.0])
  with pytest.raises(ValueError, match=r"dense seed 2 ends its evaluations at steps \[300, 400, "
                     r"500\], dot seed 0 at \[200, 300, 400\]: average runs of one budget"):
    late_average.late_runs(runs[:4] + [longer], "classify", 3)
  with pytest.raises(ValueError, match="dot seed 0 has 4 evaluations, fewer than --last 5"):
    late_average.late_runs(runs[:1], "classify", 5)
  beam = {"task": "translate", "kind": "dot", "seed": 0,
          "curve": {"metric": "loss", "validation": [[100, 5.0]] * 4}}
  with pytest.raises(ValueError, match="dot seed 0: its validation curve holds loss, not bleu"):
    late_average.late_runs(runs + [beam], "translate", 3)
  unnamed = {**runs[0], "curve": {"validation": runs[0]["curve"]["validation"]}}
  with pytest.raises(ValueError, match="holds an unnamed metric"):
    late_average.late_runs([unnamed], "classify", 3)
  with pytest.raises(ValueError, match="unknown sweep task 'clasify'; choose from"):
    late_average.late_runs(runs, "clasify", 3)
