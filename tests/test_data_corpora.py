"""Offline corpus builders: split assignment, rst cleaning, DDTP alignment, R blobs, errors."""

import bz2
import lzma
import random
import struct
import zlib

import pytest
from fixtures.data import fake_debian

from synthesizer_jax.data import corpora, debian, personachat, rlazy, sword
from synthesizer_jax.data.registry import DataError


def test_split_assignment_is_fixed_and_order_free():
  rows = [(f"key{i}", f"text {i}") for i in range(3000)]
  a = corpora.split_rows(rows, 50, 50)
  shuffled = rows[:]
  random.Random(0).shuffle(shuffled)
  b = corpora.split_rows(shuffled, 50, 50)
  assert a == b
  keys = [{r[0] for r in a[s]} for s in ("train", "validation", "test")]
  assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
  assert sum(map(len, keys)) == 3000
  assert 90 < len(keys[1]) < 220 and 90 < len(keys[2]) < 220  # ~5% each


def test_rows_sharing_a_key_share_a_split():
  rows = [(f"doc{i // 3}", f"sentence {i}") for i in range(600)]
  splits = corpora.split_rows(rows, 100, 100)
  where = {}
  for split, rs in splits.items():
    for key, _ in rs:
      assert where.setdefault(key, split) == split


def test_rst_to_text_unwraps_markup():
  rst = ("Title\n=====\n\n.. index:: single: x\n\nUse :func:`len <builtins.len>` on ``x``\n"
         "and :class:`~a.B`::\n\n   code()\n")
  assert corpora.rst_to_text(rst) == ["Title", "Use len on x and B:", "code()"]


def test_documents_respect_the_size_bound():
  docs = corpora.documents(["a" * 50] * 10, 120)
  assert [len(d) for d in docs] == [101] * 5


def test_ddtp_alignment():
  en = debian.parse_descriptions(fake_debian.translation_index("en", records=5), "en")
  de = debian.parse_descriptions(fake_debian.translation_index("de", records=5), "de")
  assert len(en) == len(de) == 5
  package, synopsis, paragraphs = next(iter(en.values()))
  assert package.startswith("pkg") and len(paragraphs) == 2
  pairs = debian.ddtp_pairs(en, de)
  assert pairs and all(fake_debian._translate(a) == b for _, a, b in pairs)
  assert len({a for _, a, _ in pairs}) == len(pairs)  # deduplicated on English
  # Five records: synopsis + four (or five) sentences each.
  assert 5 * 5 <= len(pairs) <= 5 * 6


def test_sentence_split():
  assert debian.split_sentences("One two. Three four! Über alles? ok. x") == [
      "One two.", "Three four!", "Über alles? ok. x"]


def test_missing_translation_index_says_what_to_run(tmp_path):
  with pytest.raises(DataError, match="apt-get update -o Acquire::Languages::=en"):
    debian.translation_index("de", lists_dir=str(tmp_path))


def test_missing_apt_lists_says_what_to_run(tmp_path, monkeypatch):
  monkeypatch.setattr(debian, "apt_lists_present", lambda: False)
  monkeypatch.setattr(debian, "_require_tool", lambda tool, package: tool)
  with pytest.raises(DataError, match="(?s)no package lists.*apt-get update"):
    debian.fetch_package("python3.11-doc", str(tmp_path))


def test_r_blob_decompression():
  payload = b"serialized R object" * 10
  head = struct.pack(">I", len(payload))
  raw_lzma2 = lzma.compress(payload, format=lzma.FORMAT_RAW, filters=rlazy._LZMA2_RAW)
  assert rlazy._decompress(head + b"Z" + raw_lzma2) == payload
  assert rlazy._decompress(head + b"2" + bz2.compress(payload)) == payload
  assert rlazy._decompress(head + b"0" + payload) == payload
  assert rlazy._decompress(head + zlib.compress(payload)) == payload


def test_personachat_parse():
  dialogues = personachat.parse(fake_debian.PERSONA)
  assert [len(d) for d in dialogues] == [2, 1]
  inputs, target = dialogues[0][1]
  assert inputs == ("persona: i like to ski. i have a dog. history: hi , how are you ? | "
                    "i am good , just back from skiing . | nice , where ?")
  assert target == "in the alps with my dog ."


def test_personachat_missing_files(tmp_path):
  with pytest.raises(DataError, match="train_self_original.txt"):
    personachat.split_rows(str(tmp_path))


def test_sword_ztext_reader(tmp_path):
  slots = {"ot": ["", "<milestone/>", "<chapter/>", "<w>In</w> the beginning ,", "Verse two .",
                  "<chapter/>", "Next <note>a note</note>chapter ."],
           "nt": ["", "", "<chapter/>", "Last verse ."]}
  fake_debian.write_ztext(str(tmp_path), slots, per_block=2)
  assert sword.read_testament(str(tmp_path), "ot") == slots["ot"]
  assert sword.chapters(str(tmp_path)) == [
      ("ot:3", ["In the beginning,", "Verse two."]), ("ot:6", ["Next chapter."]),
      ("nt:3", ["Last verse."])]
  with pytest.raises(DataError, match="zText"):
    sword.read_testament(str(tmp_path / "none"), "ot")


def test_prose_rows_keep_both_translations_of_a_chapter_together(tmp_path, monkeypatch):
  fake_debian.install(monkeypatch, str(tmp_path))
  monkeypatch.setattr(corpora, "LM_DOC_CHARS", 200)
  rows = corpora.prose_rows("unused")
  assert {k.split(":")[0] for k, _ in rows} == {"bible", "austen"}
  splits = corpora.split_rows(rows, 200, 200)
  for split, part in splits.items():
    kjv = {k for k, d in part if d.startswith("kjv")}
    web = {k for k, d in part if d.startswith("web")}
    assert kjv == web, split  # each chapter: both translations, same split
  assert not any("skip me" in d or "<" in d for _, d in rows)
  chapters = corpora._austen_chapters(fake_debian.austen(chapters=3)["emma"])
  assert len(chapters) == 4 and chapters[0] == ["EMMA", "By Jane Austen"]
