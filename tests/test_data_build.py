"""`prepare` on fake sources: fixed disjoint splits, idempotence, vocabularies, errors."""

import json
import os

import pytest
import sentencepiece as spm
from fixtures.data import fake_debian

from synthesizer_jax import data
from synthesizer_jax.data import build, corpora

TASKS = ("offline_lm", "offline_lm_prose", "offline_translate_en_de", "offline_summarize",
         "offline_classify", "offline_classify_text")


def _lines(path):
  with open(path, encoding="utf-8") as f:
    return f.read().splitlines()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("build"))
  with pytest.MonkeyPatch.context() as mp:
    fake_debian.install(mp, root)
    data_dir = os.path.join(root, "data")
    metas = data.prepare(data_dir, TASKS, progress=False)
  return data_dir, metas


def test_splits_are_written_disjoint_and_counted(built):
  data_dir, metas = built
  for name in TASKS:
    ext = "txt" if data.task_info(name, data_dir).shape == "lm" else "tsv"
    lines = {s: _lines(os.path.join(data_dir, name, f"{s}.{ext}"))
             for s in ("train", "validation", "test")}
    for split, rows in lines.items():
      assert rows, (name, split)
      assert metas[name]["splits"][split]["examples"] == len(rows)
    assert not set(lines["train"]) & (set(lines["validation"]) | set(lines["test"])), name
    assert not set(lines["validation"]) & set(lines["test"]), name


def test_rows_have_the_right_fields(built):
  data_dir, _ = built
  pairs = [r.split("\t") for r in _lines(os.path.join(data_dir, "offline_translate_en_de",
                                                       "train.tsv"))]
  assert all(len(p) == 2 and fake_debian._translate(p[0]) == p[1] for p in pairs)
  labelled = [r.split("\t") for r in _lines(os.path.join(data_dir, "offline_classify",
                                                         "test.tsv"))]
  assert len(labelled) == 60 and {p[0] for p in labelled} == {"0", "1"}
  docs = _lines(os.path.join(data_dir, "offline_lm", "train.txt"))
  assert not any(":func:" in d or ".. index" in d or "=====" in d for d in docs)


def test_vocabulary_ids_follow_t5(built):
  data_dir, metas = built
  sp = spm.SentencePieceProcessor(model_file=data.task_info("offline_lm", data_dir).vocab_path)
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  assert metas["offline_lm"]["vocab_size"] == sp.get_piece_size()
  text = "The quick river runs under the stone house."
  assert sp.decode(sp.encode(text)) == text


def test_prepare_is_idempotent(built, monkeypatch):
  data_dir, metas = built
  stamps = {n: os.path.getmtime(os.path.join(data_dir, n, "meta.json")) for n in TASKS}

  def boom(*args, **kwargs):
    raise AssertionError("rebuilt a prepared task")

  monkeypatch.setattr(build, "_rows", boom)
  monkeypatch.setattr(build, "train_vocab", boom)
  again = data.prepare(data_dir, TASKS, progress=False)
  assert again == json.loads(json.dumps(metas))
  assert stamps == {n: os.path.getmtime(os.path.join(data_dir, n, "meta.json")) for n in TASKS}


def test_rebuild_gives_the_same_splits_and_vocabulary(built, tmp_path, monkeypatch):
  data_dir, _ = built
  fake_debian.install(monkeypatch, str(tmp_path))
  other = os.path.join(str(tmp_path), "data")
  data.prepare(other, ["offline_translate_en_de"], progress=False)
  for split in ("train", "validation", "test"):
    assert (_lines(os.path.join(data_dir, "offline_translate_en_de", f"{split}.tsv"))
            == _lines(os.path.join(other, "offline_translate_en_de", f"{split}.tsv")))
  # The vocabulary is deterministic too (the files differ only in the temp paths they record).
  paths = [data.task_info("offline_translate_en_de", d).vocab_path for d in (data_dir, other)]
  models = [spm.SentencePieceProcessor(model_file=p) for p in paths]
  pieces = [[(m.id_to_piece(i), m.get_score(i)) for i in range(m.get_piece_size())]
            for m in models]
  assert pieces[0] == pieces[1]


def test_review_text_task_is_the_classifier_splits_without_labels_in_one_vocabulary(
    built, tmp_path, monkeypatch):
  data_dir, _ = built
  for split in ("train", "validation", "test"):
    labelled = _lines(os.path.join(data_dir, "offline_classify", f"{split}.tsv"))
    text = _lines(os.path.join(data_dir, "offline_classify_text", f"{split}.txt"))
    assert text == [row.split("\t", 1)[1] for row in labelled]
  paths = {data.task_info(n, data_dir).vocab_path for n in ("offline_classify",
                                                           "offline_classify_text")}
  assert len(paths) == 1
  # Built first, the text task makes the vocabulary the classifier would have made.
  fake_debian.install(monkeypatch, str(tmp_path))
  other = os.path.join(str(tmp_path), "data")
  coverage, train_vocab = [], build.train_vocab
  monkeypatch.setattr(build, "train_vocab", lambda *a, **kw: (
      coverage.append(kw["character_coverage"]), train_vocab(*a, **kw)))
  data.prepare(other, ["offline_classify_text"], progress=False)
  assert coverage == [0.9999]  # the classifier's setting, not the LM corpora's 1.0
  models = [spm.SentencePieceProcessor(model_file=data.task_info("offline_classify", d).vocab_path)
            for d in (data_dir, other)]
  pieces = [[(m.id_to_piece(i), m.get_score(i)) for i in range(m.get_piece_size())]
            for m in models]
  assert pieces[0] == pieces[1]


def test_empty_split_is_an_error(tmp_path, monkeypatch):
  monkeypatch.setattr(corpora, "fine_foods_rows", lambda cache: (fake_debian.reviews(3, 0), []))
  with pytest.raises(data.DataError, match="empty 'test' split"):
    data.prepare(str(tmp_path), ["offline_classify"], progress=False)


def test_unknown_task_fails_before_any_work(tmp_path):
  with pytest.raises(data.DataError, match="Unknown task 'nope'"):
    data.prepare(str(tmp_path / "d"), ["offline_lm", "nope"], progress=False)
  assert not os.path.exists(tmp_path / "d")


def test_cli_reports_errors(tmp_path, capsys):
  assert build.main(["--data_dir", str(tmp_path), "--tasks", "nope"]) == 2
  assert "Unknown task 'nope'" in capsys.readouterr().err


def test_personachat_from_local_files(tmp_path):
  fake_debian.write_personachat(str(tmp_path))
  meta = data.prepare(str(tmp_path), ["personachat"], progress=False)["personachat"]
  counts = {s: v["examples"] for s, v in meta["splits"].items()}
  assert counts["train"] == 20 * 3 and counts["validation"] + counts["test"] == 10 * 3


def test_apt_update_leaves_out_the_parts_that_turn_languages_off(tmp_path, monkeypatch):
  from synthesizer_jax.data import debian

  parts = tmp_path / "apt.conf.d"
  parts.mkdir()
  (parts / "docker-no-languages").write_text('# no translations\nAcquire::Languages "none";\n')
  (parts / "99proxy").write_text('Acquire::Check-Valid-Until "false";\n')
  config = debian._config_without_languages_none(str(tmp_path / "tmp"), str(parts))
  kept = str(tmp_path / "tmp" / "apt.conf.d")
  assert open(config).read() == f'Dir::Etc::Parts "{kept}";\n'
  assert sorted(os.listdir(kept)) == ["99proxy"]
  (parts / "docker-no-languages").unlink()
  assert debian._config_without_languages_none(str(tmp_path / "tmp2"), str(parts)) is None
  # update_apt_lists runs apt-get with that APT_CONFIG when the indexes are missing.
  (parts / "docker-no-languages").write_text('Acquire::Languages "none";\n')
  calls = []
  monkeypatch.setattr(debian, "APT_CONF_PARTS", str(parts))
  monkeypatch.setattr(debian, "_require_tool", lambda tool, package: tool)
  monkeypatch.setattr(debian.os, "geteuid", lambda: 0)
  monkeypatch.setattr(debian.subprocess, "run", lambda cmd, check, env: calls.append(
      (cmd, open(env["APT_CONFIG"]).read())))
  debian.update_apt_lists(str(tmp_path / "lists"))
  ((cmd, conf),) = calls
  assert cmd[:2] == ["apt-get", "update"] and "Acquire::Languages::=de" in cmd
  assert conf.startswith('Dir::Etc::Parts "')
