"""The pre-flight smoke run (`python -m synthesizer_jax.smoke`) at its tiny size, on the offline
tasks built from the fake Debian sources: it passes on a working install, fails (exit 1, a FAIL
row) when a run cannot learn, refuses to start without data, and runs in a bucket."""

import os

import pytest
from fixtures.data import fake_debian

from synthesizer_jax import data, paths, smoke
from synthesizer_jax import smoke_checks as checks

pytest.importorskip("seqio")  # to prepare and cache the data in this process
pytest.importorskip("grain")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("smoke_data"))
  path = os.path.join(root, "data")
  tasks = list(checks.TASKS.values())
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data.prepare(path, tasks, progress=False)
  for name in tasks:
    data.cache_task(name, path, log=lambda *a: None)
  return path


def _rows(out: str) -> dict[tuple[str, str, str], str]:
  """{(check, shape, kind): result} of the final table."""
  rows = {}
  for line in out.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("| ") and len(cells) >= 5 and cells[3] in ("pass", "FAIL", "n/a"):
      rows[tuple(cells[:3])] = cells[3]
  return rows


def _passes_every_check(out: str, shapes, kind: str) -> None:
  rows = _rows(out)
  for shape in shapes:
    for check in ("loss falls", "eval finite", "agree auto", "agree blockwise", "resume"):
      assert rows[(check, shape, kind)] == "pass", (check, shape, out[-3000:])
    want = "n/a" if shape == "classifier" else "pass"
    assert rows[("generate", shape, kind)] == want, (shape, out[-3000:])


# The shapes are split over two tests (so two workers can take them): the LM in a bucket,
# the encoder-decoder and the classifier on local disk.
def test_the_lm_passes_every_check_in_a_bucket(data_dir, gcs, capsys):
  kind = "random+dot"
  workdir = gcs.new_path("smoke")
  # The emulator sends no generation headers, which OCDBT's manifest updates need.
  code = smoke.main(["--size", "tiny", "--data_dir", data_dir, "--kinds", kind, "--shapes", "lm",
                     "--workdir", workdir, "--no_ocdbt"])
  out = capsys.readouterr().out
  assert code == 0, out[-3000:]
  _passes_every_check(out, ["lm"], kind)
  # Every run lives in the bucket, in a fresh folder per invocation.
  (run,) = list(paths.as_path(workdir).iterdir())
  assert run.name.startswith("smoke_")
  assert (run / "lm" / "random_plus_dot" / "metrics.jsonl").exists()
  assert (run / "lm" / "random_plus_dot_resumed" / "config.json").exists()


def test_the_other_shapes_pass_every_check(data_dir, tmp_path, capsys):
  kind = "random+dot"
  code = smoke.main(["--size", "tiny", "--data_dir", data_dir, "--kinds", kind,
                     "--shapes", "encdec,classifier", "--workdir", str(tmp_path)])
  out = capsys.readouterr().out
  assert code == 0, out[-3000:]
  _passes_every_check(out, ["encdec", "classifier"], kind)
  (run,) = list(tmp_path.iterdir())
  for shape in ("encdec", "classifier"):
    assert (run / shape / "random_plus_dot" / "metrics.jsonl").exists()


def test_a_run_that_cannot_learn_fails(data_dir, capsys):
  # A learning rate of (almost) 0: the run trains, saves and evaluates, but cannot learn.
  code = smoke.main(["--size", "tiny", "--data_dir", data_dir, "--shapes", "classifier",
                     "--kinds", "dot", "--learning_rate", "1e-9"])
  out = capsys.readouterr().out
  assert code == 1, out[-3000:]
  rows = _rows(out)
  assert rows[("loss falls", "classifier", "dot")] == "FAIL"
  assert rows[("eval finite", "classifier", "dot")] == rows[("resume", "classifier", "dot")] \
      == "pass"
  assert "1 FAIL" in out


def test_without_data_or_tensorflow_it_names_the_command(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(checks, "importable", lambda *names: False)
  empty = str(tmp_path / "nothing")
  assert smoke.main(["--size", "tiny", "--data_dir", empty, "--shapes", "encdec"]) == 2
  err = capsys.readouterr().err
  assert (f"python -m synthesizer_jax.data.prepare --data_dir {empty} --tasks "
          "offline_translate_en_de --cache") in err


def test_loss_falls_judges_by_the_margin():
  assert checks.loss_falls("lm", "dot", [9.0] + [7.0] * 9, 7.0, 1.0, None).ok
  assert not checks.loss_falls("lm", "dot", [9.0] + [8.5] * 9, 8.5, 1.0, None).ok
  assert not checks.loss_falls("lm", "dot", [9.0, float("nan")], 7.0, 1.0, None).ok
  # The classifier: below the label prior's entropy by the margin, whatever its first loss.
  assert checks.loss_falls("classifier", "dot", [0.7, 0.5], 0.50, 0.04, 0.6).ok
  assert not checks.loss_falls("classifier", "dot", [1.0, 0.5], 0.58, 0.04, 0.6).ok


def _tiny_lm():
  """A random DecoderLM standing in for a restored checkpoint, and a batch."""
  import jax
  import numpy as np

  import synthesizer_jax as sj

  cfg = sj.ModelConfig(vocab_size=32, d_model=16, num_heads=2, head_dim=8, mlp_dim=32,
                       num_layers=1, max_len=16, self_attention="random+dot", dropout_rate=0.0)
  model = sj.DecoderLM(cfg)
  tokens = np.random.default_rng(0).integers(1, 32, (2, 12)).astype(np.int32)
  variables = model.init(jax.random.key(0), tokens)
  loaded = (model, variables, {"shape": "lm", "num_classes": None})  # as load_checkpoint gives
  return loaded, {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens,
                  "decoder_loss_weights": np.ones(tokens.shape, np.float32)}


def test_agreement_fails_when_a_fused_impl_is_wrong(monkeypatch):
  from synthesizer_jax.attention import fused

  loaded, batch = _tiny_lm()
  rows = checks.agreement(loaded, "lm", "random+dot", batch, ("auto", "blockwise"), "cpu")
  assert [r.ok for r in rows] == [True, True], rows
  right = fused.blockwise_attention
  monkeypatch.setattr(fused, "blockwise_attention", lambda *a, **k: 0.5 * right(*a, **k))
  rows = checks.agreement(loaded, "lm", "random+dot", batch, ("auto", "blockwise"), "cpu")
  assert [r.ok for r in rows] == [True, False], rows


def test_generation_fails_when_the_cache_disagrees_with_the_forward_pass(monkeypatch):
  import numpy as np

  loaded, batch = _tiny_lm()
  assert checks.generation(loaded, "lm", "random+dot", batch, new_tokens=4, prompt_len=4).ok
  right = checks.decoding.generate

  def off_by_one(*args, **kw):  # a decode cache that shifts every token
    out = right(*args, **kw)
    return out._replace(tokens=(np.asarray(out.tokens) + 1) % 32)

  monkeypatch.setattr(checks.decoding, "generate", off_by_one)
  row = checks.generation(loaded, "lm", "random+dot", batch, new_tokens=4, prompt_len=4)
  assert row.ok is False and "8/8 tokens" not in row.figure, row


@pytest.mark.parametrize("bad", ["0", "-1e-3", "nan"])
def test_a_learning_rate_that_is_not_positive_is_refused(bad, capsys):
  with pytest.raises(SystemExit) as stopped:
    smoke.parse_args([f"--learning_rate={bad}"])
  assert stopped.value.code == 2
  assert "--learning_rate must be > 0" in capsys.readouterr().err
