"""Reads SWORD zText Bible modules (as Debian's sword-text-* packages ship them) without libsword.

A zText module has, per testament (`ot`, `nt`), three files:
  `.bzs`  block index: (offset, compressed size, uncompressed size) as 3 little-endian uint32
  `.bzz`  the zlib-compressed blocks, concatenated
  `.bzv`  verse index: (block number uint32, offset in block uint32, size uint16) per slot
Slots follow the module's versification (KJV here): slot 0 is the module heading and 1 the
testament heading; each book and chapter has a heading slot (usually empty) before its verses.
Verse text is OSIS XML; `plain_text` drops the markup and the notes.
"""

from __future__ import annotations

import os
import re
import struct
import zlib

from synthesizer_jax.data.registry import DataError


def read_testament(module_dir: str, testament: str) -> list[str]:
  """Raw OSIS text of every slot of one testament ('ot' or 'nt'), '' for empty slots."""
  paths = [os.path.join(module_dir, f"{testament}.{ext}") for ext in ("bzs", "bzv", "bzz")]
  for path in paths:
    if not os.path.exists(path):
      raise DataError(f"Not a SWORD zText module: {path} is missing")
  blocks_index, verses_index, compressed = (open(p, "rb").read() for p in paths)
  blocks: dict[int, bytes] = {}

  def block(i: int) -> bytes:
    if i not in blocks:
      offset, size, _ = struct.unpack_from("<3I", blocks_index, 12 * i)
      blocks[i] = zlib.decompress(compressed[offset:offset + size])
    return blocks[i]

  out = []
  for k in range(len(verses_index) // 10):
    b, offset, size = struct.unpack_from("<IIH", verses_index, 10 * k)
    out.append(block(b)[offset:offset + size].decode("utf-8", "replace") if size else "")
  return out


_NOTE = re.compile(r"<note\b.*?</note>", re.S)
_TAG = re.compile(r"<[^>]+>")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?’”)])")


def plain_text(osis: str) -> str:
  """Verse text without notes and tags, on one line."""
  text = _TAG.sub("", _NOTE.sub(" ", osis))
  return _SPACE_BEFORE_PUNCT.sub(r"\1", re.sub(r"\s+", " ", text)).strip()


def chapters(module_dir: str) -> list[tuple[str, list[str]]]:
  """(slot key, verses) per run of verses between heading slots, i.e. per chapter.

  The key is the testament and the slot of the chapter's first verse, which is the same in
  every module of one versification, so two translations of a chapter share a key.
  """
  out = []
  for testament in ("ot", "nt"):
    verses, start = [], None
    for slot, osis in enumerate(read_testament(module_dir, testament)):
      text = plain_text(osis) if slot > 1 else ""
      if text:
        start = slot if start is None else start
        verses.append(text)
      elif verses:
        out.append((f"{testament}:{start}", verses))
        verses, start = [], None
    if verses:
      out.append((f"{testament}:{start}", verses))
  return out
