"""SentencePiece vocabularies trained by the project, one per task family, cached on disk.

Ids follow seqio/T5: 0 = pad, 1 = EOS, 2 = UNK, no BOS. Training is deterministic: the
trainer sees every line we give it (no internal sampling, whose seed SentencePiece does not
expose); large corpora are capped by size, on rows already in a fixed hash order.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable

from synthesizer_jax import paths
from synthesizer_jax.data.corpora import bucket
from synthesizer_jax.data.registry import PREPARE_CMD, DataError, extra_ids, spec, vocab_path

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
MAX_LINE_BYTES = 8192


def _lines(texts: Iterable[str], max_chars: int, keep_permille: int) -> Iterable[str]:
  """Sentence-sized lines (SentencePiece skips lines over its length limit)."""
  n = 0
  for text in texts:
    for line in _SENTENCE.split(text):
      line = line.strip()
      if not line or len(line.encode("utf-8")) > MAX_LINE_BYTES:
        continue
      if keep_permille < 1000 and bucket(line) >= keep_permille:
        continue
      yield line
      n += len(line) + 1
      if n >= max_chars:
        return


def train_vocab(texts: Iterable[str], path: str, vocab_size: int, *,
                character_coverage: float = 0.9999, max_chars: int = 6_000_000,
                keep_permille: int = 1000, required_chars: str = "") -> str:
  """Trains a unigram SentencePiece model on `texts` and writes it atomically to `path`.

  Args:
    texts: training text (documents or sentences); only the training split should be given.
    path: the `.model` file to write; a `.vocab` file is written next to it.
    vocab_size: target size; a smaller text gives a smaller vocabulary instead of failing.
    character_coverage: share of characters covered; the rest map to UNK.
    max_chars: stop after this much text (the builders give rows in a fixed hash order, so
      this is a fixed random sample; 6 MB trains in about a minute on two cores).
    keep_permille: keep a fixed hash-chosen share of the lines (for large corpora).
    required_chars: characters kept whatever their frequency (task prefixes' ":").

  Returns:
    `path`.
  """
  import sentencepiece as spm

  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
    corpus = os.path.join(tmp, "corpus.txt")
    count = 0
    with open(corpus, "w", encoding="utf-8") as f:
      for line in _lines(texts, max_chars, keep_permille):
        f.write(line + "\n")
        count += 1
    if count == 0:
      raise DataError(f"No text to train the vocabulary {path} on (empty training split?)")
    prefix = os.path.join(tmp, "sp")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=character_coverage,
        input_sentence_size=0, max_sentence_length=MAX_LINE_BYTES, hard_vocab_limit=False,
        num_threads=max(1, os.cpu_count() or 1), minloglevel=2,
        **({"required_chars": required_chars} if required_chars else {}))
    os.replace(prefix + ".vocab", path[:-len(".model")] + ".vocab")
    os.replace(prefix + ".model", path)
  return path


class SentencePieceVocabulary:
  """seqio's SentencePieceVocabulary without TensorFlow: the same ids, encode and decode.

  What `get_vocabulary` returns where seqio is not installed (training from a cache), and
  for a vocabulary in a bucket: the model is read as bytes through `paths` (etils.epath).
  `extra_ids` pieces "<extra_id_N>" are added above the model's own, numbered down from
  the last id, as seqio adds them (span corruption's sentinels).
  """

  pad_id, eos_id, unk_id = 0, 1, 2

  def __init__(self, path: str, extra_ids: int = 0):
    import sentencepiece as spm

    self.path, self.extra_ids = path, extra_ids
    proto = paths.as_path(path).read_bytes()
    if extra_ids:
      from sentencepiece import sentencepiece_model_pb2 as pb

      model = pb.ModelProto.FromString(proto)
      for i in reversed(range(extra_ids)):
        model.pieces.add(piece=f"\u2581<extra_id_{i}>", score=0.0,
                         type=pb.ModelProto.SentencePiece.USER_DEFINED)
      proto = model.SerializeToString()
    self.tokenizer = spm.SentencePieceProcessor(model_proto=proto)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.get_piece_size()

  def encode(self, s: str) -> list[int]:
    """Token ids of `s`, without EOS."""
    return self.tokenizer.encode_as_ids(s)

  def decode(self, ids) -> str:
    """The text of `ids` up through the first EOS; ids beyond the vocabulary read as UNK."""
    ids = [self.unk_id if int(i) >= self.vocab_size else int(i) for i in ids]
    if self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id) + 1]
    return self.tokenizer.decode_ids(ids)


def get_vocabulary(name: str, data_dir: str | None = None):
  """The seqio.SentencePieceVocabulary of task `name` (encode, decode, vocab_size, eos_id);
  without seqio installed, or for a vocabulary in a bucket, the `SentencePieceVocabulary`
  here (same ids and text; it reads the bucket through epath like every other run path,
  where seqio's would go through TensorFlow's own GCS client).

  Raises:
    DataError: the vocabulary was not built yet; the message gives the prepare command (or,
      for a bucket, the cache command that copies it there).
  """
  from synthesizer_jax.data.tfenv import import_seqio

  path = vocab_path(name, data_dir)
  if not paths.as_path(path).exists():
    root = os.path.dirname(os.path.dirname(path))
    fix = (f"Cache the task there, which copies its vocabulary too:\n  "
           f"python -m synthesizer_jax.data.cache --task {name} --data_dir PREPARED_DATA_DIR "
           f"--out_dir {root}" if paths.is_remote(path)
           else "Build it with:\n  " + PREPARE_CMD.format(data_dir=root, task=name))
    raise DataError(f"No vocabulary for task {name!r} (family {spec(name).family!r}) at "
                    f"{path}. {fix}")
  extra = extra_ids(name)
  if paths.is_remote(path):
    return SentencePieceVocabulary(path, extra)
  try:
    seqio = import_seqio()
  except ImportError:
    return SentencePieceVocabulary(path, extra)
  return seqio.SentencePieceVocabulary(path, extra_ids=extra)
