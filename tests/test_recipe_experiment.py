"""Issue 29's experiment driver (experiments/recipe.py, recipe_report.py): each stage runs the
config it names at its budget, a fine-tuning starts from the pre-training step it is recorded
against, a longer pre-training budget continues the same run, and the report's paired
figures are those of the records."""

import json

import numpy as np
import pytest

from experiments import recipe, recipe_report
from synthesizer_jax.config import TrainConfig
from synthesizer_jax.optim import learning_rate_schedule


def _flags(argv):
  return dict(a[len("--config."):].split("=", 1) for a in argv if a.startswith("--config."))


def test_each_stage_runs_its_config_at_its_budget():
  pre = recipe.command("pretrain", "random+dot", 2, "w", "d", 2000)
  assert pre[pre.index("--config") + 1] == recipe.CONFIGS["pretrain"]
  flags = _flags(pre)
  assert flags["num_train_steps"] == "2000" and flags["seed"] == "2"
  assert flags["model.self_attention"] == "random+dot" and "init_from" not in flags
  assert pre[pre.index("--workdir") + 1] == "w/pretrain/random_dot/seed2"

  ft = recipe.command("finetune", "random+dot", 2, "w", "d", 2000)
  flags = _flags(ft)
  assert flags["num_train_steps"] == str(recipe.FINETUNE["num_train_steps"])
  assert flags["init_from"] == "w/pretrain/random_dot/seed2/checkpoints/2000"
  assert ft[ft.index("--workdir") + 1] == "w/finetune/random_dot/seed2_from2000"

  scratch = recipe.command("scratch", "random+dot", 2, "w", "d", 2000)
  flags = _flags(scratch)
  assert flags["init_from"] == "" and flags["seed"] == "2"
  assert _flags(ft).keys() == flags.keys()  # same fine-tuning otherwise


def test_workers_take_only_the_cores_the_driver_may_use(tmp_path, monkeypatch):
  # Two drivers under `taskset -c 0` and `taskset -c 1` must not pin runs to the same core.
  monkeypatch.setattr(recipe.os, "sched_getaffinity", lambda pid: {1})
  runner = recipe.Runner(str(tmp_path), "w", "d", workers=2, pretrain_steps=1000)
  assert [runner.cores.get_nowait() for _ in range(2)] == [1, 1]
  monkeypatch.setattr(recipe.os, "sched_getaffinity", lambda pid: {0, 1})
  runner = recipe.Runner(str(tmp_path), "w", "d", workers=2, pretrain_steps=1000)
  assert sorted(runner.cores.get_nowait() for _ in range(2)) == [0, 1]


def test_two_drivers_share_one_list_of_runs(tmp_path, monkeypatch):
  wdir = str(tmp_path / "w" / "scratch" / "dot" / "seed0")
  assert recipe.claim(wdir) == wdir + ".claim"
  assert recipe.claim(wdir) is None  # held by a live driver (this process)
  ran = []
  runner = recipe.Runner(str(tmp_path / "out"), str(tmp_path / "w"), "d", workers=1,
                         pretrain_steps=1000)
  runner.done.add(("pretrain", "dot", 0, 1000))
  monkeypatch.setattr(runner, "_run", lambda *job: ran.append(job))
  monkeypatch.setattr(runner, "_is_done", lambda *job: False)
  runner.stage("scratch", "dot", 0)
  assert ran == []  # the other driver's run is left to it
  with open(wdir + ".claim", "w") as f:
    f.write("999999999")  # a driver that has died
  runner.stage("scratch", "dot", 0)
  assert ran == [("scratch", "dot", 0, 0)] and not (tmp_path / "w" / "scratch" / "dot" /
                                                    "seed0.claim").exists()


def test_a_longer_pretraining_budget_continues_the_same_schedule():
  """The extension claim: rsqrt's rate at a step does not depend on num_train_steps."""
  short, long = (learning_rate_schedule(TrainConfig(
      num_train_steps=n, warmup_steps=recipe.PRETRAIN["warmup_steps"], decay="rsqrt",
      learning_rate=1e-3)) for n in (1000, 3000))
  steps = np.arange(0, 1001, 50)
  np.testing.assert_array_equal(np.asarray(short(steps)), np.asarray(long(steps)))


def _run(stage, kind, seed, loss, steps=1000, nll=None):
  """A record; a fine-tuning's members each at `nll`, its label-smoothed loss elsewhere."""
  budget = 0 if stage == "scratch" else steps
  final = {"loss": loss, "token_accuracy": 30.0}
  if nll is not None:
    final |= {f"{m}/nll": nll for m in recipe_report.MEMBERS}
    final |= {f"{m}/{v}": 50.0 for m, v in recipe_report.MEMBER_METRICS.items()}
  run = {"stage": stage, "kind": kind, "seed": seed, "steps": steps, "pretrain_steps": budget,
         "final": final, "curve": [{"step": steps, **final}], "train_loss": []}
  if stage == "pretrain":
    run["span"] = {"content_loss": loss + 1, "content_accuracy": 10 * seed,
                   "structure_accuracy": 90.0}
  return run


def test_the_report_pairs_by_seed_and_keeps_one_budget(tmp_path):
  runs = []
  for seed, (dot, rnd) in enumerate([(4.0, 4.3), (4.2, 4.4), (4.1, 4.5)]):
    # Fine-tunings: the tables read the members' NLL, not eval/loss (here 7.0 for every run).
    runs += [_run("pretrain", "dot", seed, dot), _run("pretrain", "random", seed, rnd),
             _run("pretrain", "dot", seed, 9.0, steps=500),  # another budget: left out
             _run("finetune", "dot", seed, 7.0, nll=3.0 + seed / 10),
             _run("finetune", "random", seed, 7.0, nll=3.5),
             _run("scratch", "dot", seed, 7.0, nll=3.2 + seed / 10),
             _run("scratch", "random", seed, 7.0, nll=3.9)]
  (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
  text = recipe_report.markdown(recipe_report.load(str(tmp_path)), None, 1000)
  assert "Pre-training budget: 1000 steps." in text
  random_row = next(line for line in text.splitlines() if line.startswith("| random |"))
  diffs = [0.3, 0.2, 0.4]  # random minus dot by seed
  assert f"+{np.mean(diffs):.3f} ± {np.std(diffs, ddof=1):.3f}" in random_row
  assert f"{np.mean([4.3 / 4.0, 4.4 / 4.2, 4.5 / 4.1]):.3f}" in random_row
  assert f"{1.965 / 1.865:.3f}" in random_row  # the paper's ratio beside ours
  # masked pieces: loss, accuracy (10 x seed) over the seeds
  assert f"| {np.mean([5.3, 5.4, 5.5]):.3f} ± {np.std([5.3, 5.4, 5.5], ddof=1):.3f} | " \
         f"10.000 ± 10.000 | 90.000 ± 0.000 |" in random_row
  dot_ft = next(line for line in text.splitlines()
                if line.startswith("| dot | mean member nll |"))
  assert "-0.200 ± 0.000" in dot_ft  # pre-trained minus scratch, every seed
  gap = next(line for line in text.splitlines() if line.startswith("| random | +"))
  # minus dot: pre-trained 0.5, 0.4, 0.3; from scratch 0.7, 0.6, 0.5; narrowed by 0.2 each
  assert gap.count("0.400") == 1 and "+0.600" in gap and "+0.200 ± 0.000" in gap
  with pytest.raises(StopIteration):  # the 500-step records are in no table
    next(line for line in text.splitlines() if "9.000" in line)


@pytest.mark.parametrize("argv,message", [
    (["run", "--seeds", "0"], "--seeds must be at least 1, not 0"),
    (["run", "--workers", "0"], "--workers must be at least 1, not 0"),
    (["run", "--pretrain_steps", "-5"], "--pretrain_steps must be at least 1, not -5"),
    (["run", "--stages", "pretrain,bogus"], "a comma list of pretrain, finetune, scratch"),
])
def test_bad_options_are_refused_naming_them(argv, message, capsys):
  with pytest.raises(SystemExit):
    recipe.main(argv)
  assert message in capsys.readouterr().err


def test_an_unknown_kind_is_refused_before_any_run(tmp_path):
  with pytest.raises(ValueError, match="unknown attention kind 'attn'"):
    recipe.main(["run", "--kinds", "dot,attn", "--out", str(tmp_path)])
  assert not (tmp_path / "runs.jsonl").exists()


def test_the_structure_is_the_vocabularys_extra_ids_and_eos():
  class Vocab:
    vocab_size, extra_ids, eos_id = 20, 5, 1

  targets = np.array([0, 1, 2, 14, 15, 19])
  np.testing.assert_array_equal(recipe_report._structure(targets, Vocab),
                                [False, True, False, False, True, True])


def test_a_finetuning_pilot_is_recorded_and_tabled(tmp_path):
  wdir, out = tmp_path / "ft", tmp_path / "out"
  wdir.mkdir()
  train = {"learning_rate": 5e-4, "warmup_steps": 50, "decay": "rsqrt", "batch_size": 16,
           "num_train_steps": 500, "init_from": "", "seed": 2}
  (wdir / "config.json").write_text(json.dumps(
      {"task": "offline_t5_finetune", "model": {"self_attention": "dot", "dropout_rate": 0.1},
       "train": train}))
  final = {"loss": 4.2, **{f"{m}/nll": 1.0 + i for i, m in enumerate(recipe_report.MEMBERS)},
           **{f"{m}/{v}": 10.0 * (i + 1)
              for i, (m, v) in enumerate(recipe_report.MEMBER_METRICS.items())}}
  early = {"loss": 4.9, **{f"{m}/nll": 5.0 + i for i, m in enumerate(recipe_report.MEMBERS)}}
  (wdir / "metrics.jsonl").write_text(
      json.dumps({"step": 250, "split": "eval", **early}) + "\n"
      + json.dumps({"step": 500, "split": "train", "loss": 4.5}) + "\n")
  (wdir / "eval_results.json").write_text(json.dumps({"step": 500, "metrics": final}))
  rec = recipe.record_pilot(str(wdir), str(out), "data")
  assert rec["stage"] == "finetune_pilot" and rec["seed"] == 2 and "span" not in rec
  text = recipe_report.markdown(recipe_report.load(str(out)))
  row = next(line for line in text.splitlines() if line.startswith("| dot from scratch |"))
  # the mean member NLL by step (5, 6, 7 at step 250; 1, 2, 3 at the end), then each member's
  assert row == "| dot from scratch | 6.000 | 2.000 | 1.000, 10.0 | 2.000, 20.0 | 3.000, 30.0 |"
