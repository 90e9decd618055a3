"""Builders of the offline corpora: real text from Debian packages and apt indexes.

Each builder returns rows `(group_key, fields...)`; `assign_split` sends every row to a
fixed split from a hash of its group key, so the splits never depend on row order, on
the machine or on what else the source holds, and rows sharing a key never straddle
two splits. Files are written with one row per line (tabs and newlines removed).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Sequence

from synthesizer_jax.data import debian, rlazy, sword
from synthesizer_jax.data.registry import DataError

Row = tuple[str, ...]


def bucket(key: str, buckets: int = 1000) -> int:
  """A stable pseudo-random bucket of `key` in [0, buckets)."""
  return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:8], "little") % buckets


def assign_split(key: str, validation_permille: int, test_permille: int) -> str:
  """'validation', 'test' or 'train' from a hash of key (per-mille shares)."""
  b = bucket(key)
  if b < validation_permille:
    return "validation"
  if b < validation_permille + test_permille:
    return "test"
  return "train"


def clean(text: str) -> str:
  """One line: tabs/newlines to spaces, runs of whitespace collapsed."""
  return re.sub(r"\s+", " ", text).strip()


def split_rows(rows: Sequence[Row], validation_permille: int, test_permille: int
               ) -> dict[str, list[Row]]:
  """Groups rows (key first) into the three splits, each ordered by a hash of its content.

  The hash order is a fixed shuffle, so a streaming shuffle buffer sees mixed rows.
  """
  out = {"train": [], "validation": [], "test": []}
  for row in rows:
    out[assign_split(row[0], validation_permille, test_permille)].append(row)
  for split in out:
    out[split].sort(key=lambda r: hashlib.md5("\t".join(r).encode("utf-8")).digest())
  return out


# ----------------------------------------------------------------------------------------------
# Language modelling: the CPython documentation sources.

_ROLE = re.compile(r":[\w:+.-]+:`([!~]?)([^`<]*?)\s*(?:<[^>`]*>)?`")
_LITERAL = re.compile(r"``([^`]*)``")
_UNDERLINE = re.compile(r"^\s*([=\-~*^#\"'+`.:_])\1{2,}\s*$")
_DIRECTIVE = re.compile(r"^\s*\.\. |^\s+:[\w-]+:( |$)")


def _role_text(m: re.Match) -> str:
  """What Sphinx shows for a role: its title, or the last dotted part after a "~"."""
  return m.group(2).rsplit(".", 1)[-1] if m.group(1) == "~" else m.group(2)


def rst_to_text(rst: str) -> list[str]:
  """Paragraphs of reStructuredText as plain text: markup roles unwrapped, headings'
  underlines, directive lines, labels and comments dropped; code blocks are kept."""
  paragraphs, current = [], []
  for line in rst.splitlines():
    if _UNDERLINE.match(line) or _DIRECTIVE.match(line):
      continue
    if not line.strip():
      if current:
        paragraphs.append(clean(" ".join(current)))
      current = []
      continue
    line = _LITERAL.sub(r"\1", _ROLE.sub(_role_text, line))
    current.append(line.replace("::", ":"))
  if current:
    paragraphs.append(clean(" ".join(current)))
  return [p for p in paragraphs if p and p != ":"]


def documents(paragraphs: Sequence[str], max_chars: int) -> list[str]:
  """Joins consecutive paragraphs into documents of at most ~max_chars characters."""
  docs, current, size = [], [], 0
  for p in paragraphs:
    if current and size + len(p) > max_chars:
      docs.append(" ".join(current))
      current, size = [], 0
    current.append(p)
    size += len(p) + 1
  if current:
    docs.append(" ".join(current))
  return docs


LM_DOC_CHARS = 4000  # characters per LM document (consecutive paragraphs of one file)


def python_doc_rows(cache_dir: str, max_chars: int | None = None) -> list[Row]:
  """(key, document) rows from python3.11-doc's reStructuredText sources (PSF licence)."""
  max_chars = max_chars or LM_DOC_CHARS
  root = debian.fetch_package("python3.11-doc", cache_dir)
  src = os.path.join(root, "usr/share/doc/python3.11/html/_sources")
  files = sorted(glob.glob(os.path.join(src, "**", "*.rst.txt"), recursive=True))
  if not files:
    raise DataError(f"python3.11-doc unpacked to {root} but has no *.rst.txt sources")
  rows = []
  for path in files:
    with open(path, encoding="utf-8", errors="replace") as f:
      docs = documents(rst_to_text(f.read()), max_chars)
    rel = os.path.relpath(path, src)
    rows.extend((f"{rel}#{i}", d) for i, d in enumerate(docs))
  return rows


BIBLES = (("sword-text-kjv", "engKJV2006eb"), ("sword-text-web", "engWEB2015eb"))
AUSTEN_NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
                 "sensesensibility")


def austen_novels(cache_dir: str) -> dict[str, list[str]]:
  """{novel: its lines} from r-cran-janeaustenr's R data (one string per line of text)."""
  root = debian.fetch_package("r-cran-janeaustenr", cache_dir)
  prefix = os.path.join(root, "usr/lib/R/site-library/janeaustenr/data/Rdata")
  return {n: [str(x) for x in rlazy.load_object(prefix, n)] for n in AUSTEN_NOVELS}


def _austen_chapters(lines: Sequence[str]) -> list[list[str]]:
  """Paragraphs (blank-line separated) grouped by chapter ("CHAPTER ..." lines)."""
  chapters, paragraphs, current = [], [], []
  for line in [*lines, ""]:
    if line.strip().upper().startswith("CHAPTER"):
      if current:
        paragraphs.append(clean(" ".join(current)))
      if paragraphs:
        chapters.append(paragraphs)
      paragraphs, current = [], []
    if not line.strip():
      if current:
        paragraphs.append(clean(" ".join(current)))
      current = []
    else:
      current.append(line)
  if paragraphs:
    chapters.append(paragraphs)
  return chapters


def prose_rows(cache_dir: str, max_chars: int | None = None) -> list[Row]:
  """(chapter key, document) rows: the KJV and WEB Bibles and Jane Austen's six novels.

  Both Bibles key a chapter by its versification slot, so the two translations of one
  chapter always share a split.
  """
  max_chars = max_chars or LM_DOC_CHARS
  rows = []
  for package, module in BIBLES:
    root = debian.fetch_package(package, cache_dir)
    module_dir = os.path.join(root, "usr/share/sword/modules/texts/ztext", module)
    for key, verses in sword.chapters(module_dir):
      rows.extend((f"bible:{key}", d) for d in documents(verses, max_chars))
  for novel, lines in austen_novels(cache_dir).items():
    for i, paragraphs in enumerate(_austen_chapters(lines)):
      rows.extend((f"austen:{novel}:{i}", d) for d in documents(paragraphs, max_chars))
  return rows


# ----------------------------------------------------------------------------------------------
# Translation and summarisation: Debian package descriptions (DDTP).


def translation_rows(lang: str) -> list[Row]:
  """(description md5, English, translation) sentence pairs from the DDTP indexes."""
  en = debian.parse_descriptions(debian.translation_index("en"), "en")
  other = debian.parse_descriptions(debian.translation_index(lang), lang)
  return [(k, clean(a), clean(b)) for k, a, b in debian.ddtp_pairs(en, other)]


_BOILERPLATE = re.compile(r"^This (package|is a (transitional|dummy)) ", re.I)


def summary_rows(min_words: int = 20) -> list[Row]:
  """(long description, long description, synopsis) pairs from the English index.

  Keyed (and deduplicated) on the long text, whose templated last paragraph ("This
  package contains ...") is kept: it often says what the synopsis says.
  """
  en = debian.parse_descriptions(debian.translation_index("en"), "en")
  rows, seen = [], set()
  for md5 in sorted(en):
    _, synopsis, paragraphs = en[md5]
    text = clean(" ".join(paragraphs))
    if len(text.split()) < min_words or text in seen or _BOILERPLATE.match(text):
      continue
    seen.add(text)
    rows.append((text, text, clean(synopsis)))
  return rows


# ----------------------------------------------------------------------------------------------
# Classification: Amazon fine-food reviews shipped with R's modeldata package.

FINE_FOODS_LABELS = ("other", "great")


def fine_foods_rows(cache_dir: str) -> tuple[list[Row], list[Row]]:
  """(key, label id, review) rows: the package's own training and testing sets."""
  root = debian.fetch_package("r-cran-modeldata", cache_dir)
  prefix = os.path.join(root, "usr/lib/R/site-library/modeldata/data/Rdata")
  out = []
  for obj in ("training_data", "testing_data"):
    frame = rlazy.load_object(prefix, obj)
    rows = []
    columns = (frame["product"], frame["review"], frame["score"])
    for product, review, score in zip(*columns, strict=True):
      text = clean(str(review))
      if text:
        rows.append((f"{product}|{text}", str(FINE_FOODS_LABELS.index(str(score))), text))
    out.append(rows)
  return out[0], out[1]
