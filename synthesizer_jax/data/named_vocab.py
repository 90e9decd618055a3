"""A family's SentencePiece model named by a path instead of trained here, e.g. T5's public
32k model for the C4 recipe (family c4_t5):

    python -m synthesizer_jax.data.prepare --data_dir data --tasks c4_span_corruption \
        --vocab_model c4_t5=gs://t5-data/vocabs/cc_all.32000/sentencepiece.model

The model is read through `paths` (etils.epath: a local file or a gs:// object) and copied to
the family's place, <data_dir>/vocab/<family>.model, before any task is prepared, so every
task of the family, its caches and the checkpoints trained on it use it as they would a
trained one (the checkpoint records its sha256; a run of another vocabulary is refused).
It must use seqio's ids (pad 0, EOS 1, UNK 2), as T5's does; the family's extra ids
(sentinels) are added above its pieces when it is read, so it must not hold them already.
"""

from __future__ import annotations

import hashlib

from synthesizer_jax import paths
from synthesizer_jax.data import registry
from synthesizer_jax.data.registry import DataError

IDS = {"pad": 0, "eos": 1, "unk": 2}  # seqio / T5; vocab.SentencePieceVocabulary assumes them


def parse(items) -> dict[str, str]:
  """{family: path} of `FAMILY=PATH` strings (the --vocab_model flag); DataError otherwise."""
  out = {}
  for item in items or ():
    family, sep, path = item.partition("=")
    if not sep or not family or not path:
      raise DataError(f"--vocab_model {item!r}: write FAMILY=PATH, e.g. "
                      "c4_t5=gs://t5-data/vocabs/cc_all.32000/sentencepiece.model")
    out[family] = path
  return out


def families() -> list[str]:
  """Every vocabulary family of the task table."""
  return sorted({registry.spec(n).family for n in registry.TASKS})


def check_model(proto: bytes, source: str, extra_ids: int) -> int:
  """The number of pieces of SentencePiece model `proto` (read from `source`); DataError if
  it is not one, uses other special ids than seqio's, or already holds extra ids."""
  import sentencepiece as spm

  try:
    sp = spm.SentencePieceProcessor(model_proto=proto)
  except (RuntimeError, OSError) as e:
    raise DataError(f"{source} is not a SentencePiece model ({e}); name the .model file "
                    "(not the .vocab file next to it)") from None
  ids = {"pad": sp.pad_id(), "eos": sp.eos_id(), "unk": sp.unk_id()}
  if ids != IDS:
    raise DataError(f"{source} numbers its special pieces {ids}; the pipelines and models here "
                    f"use seqio's {IDS} (as T5's models do). Train it with pad_id=0 eos_id=1 "
                    "unk_id=2 bos_id=-1, or let prepare train the family's vocabulary.")
  if extra_ids and sp.piece_to_id("<extra_id_0>") != sp.unk_id():
    raise DataError(f"{source} already holds <extra_id_N> pieces; the family adds its "
                    f"{extra_ids} sentinels above the model's pieces, so name a model without "
                    "them (T5's cc_all.32000 model has none)")
  return sp.get_piece_size()


def install(family: str, source: str, data_dir: str) -> str:
  """Copies the SentencePiece model at `source` (local or gs://) to `family`'s vocabulary
  path under `data_dir` and returns that path. The same file there already is kept.

  Raises:
    DataError: an unknown family, no model at `source`, a model `check_model` refuses, or
      another vocabulary of the family already in `data_dir` (its caches and checkpoints
      would silently change meaning).
  """
  known = families()
  if family not in known:
    raise DataError(f"Unknown vocabulary family {family!r}. Families: {', '.join(known)}.")
  src = paths.as_path(source)
  if not src.is_file():
    raise DataError(f"No SentencePiece model at {source} (for the {family} vocabulary); "
                    "check the path (gs://BUCKET/... for a bucket)")
  proto = src.read_bytes()
  fam = registry.FAMILIES.get(family)
  check_model(proto, source, fam.extra_ids if fam else 0)
  dst = paths.as_path(registry.family_vocab_path(family, data_dir))
  if dst.is_file():
    have, want = (hashlib.sha256(b).hexdigest() for b in (dst.read_bytes(), proto))
    if have == want:
      return str(dst)
    raise DataError(f"{dst} already holds another {family} vocabulary (sha256 {have[:12]}...) "
                    f"than {source} ({want[:12]}...): the caches and checkpoints built on it "
                    f"would mean other pieces. Prepare into another data dir, or delete {dst} "
                    f"and the caches of the {family} tasks first.")
  dst.parent.mkdir(parents=True, exist_ok=True)
  partial = dst.parent / (dst.name + ".partial")
  partial.write_bytes(proto)
  partial.rename(dst)
  return str(dst)
