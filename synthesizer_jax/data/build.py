"""Builds the data directory: corpora, fixed splits and vocabularies. Idempotent.

The command line is `synthesizer_jax/data/prepare.py`:

    python -m synthesizer_jax.data.prepare --data_dir data            # the offline tasks
    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_lm glue_sst2

Offline tasks fetch Debian packages into <data_dir>/cache and write <data_dir>/<task>/
{train,validation,test}.{txt,tsv} and meta.json (written last: a task with a meta.json is
done and is skipped next time). TFDS tasks need their TFDS data in <data_dir>/tfds and get
only a vocabulary here. Every vocabulary goes to <data_dir>/vocab/<family>.model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence

from synthesizer_jax.data import corpora, debian, mixtures, named_vocab, personachat, registry
from synthesizer_jax.data.registry import OFFLINE_TASKS, DataError, spec
from synthesizer_jax.data.tasks import META, is_prepared, split_file
from synthesizer_jax.data.vocab import train_vocab

BUILD_VERSION = 1

SOURCES = {
    "offline_lm": ("Debian python3.11-doc: _sources/**/*.rst.txt", "PSF-2.0"),
    "offline_lm_prose": ("Debian sword-text-kjv, sword-text-web (zText modules), "
                         "r-cran-janeaustenr (R data)", "public domain texts"),
    "offline_translate_en_de": ("Debian DDTP: apt Translation-en + Translation-de",
                                "descriptions of DFSG-free packages; DDTP translations"),
    "offline_translate_en_fr": ("Debian DDTP: apt Translation-en + Translation-fr",
                                "descriptions of DFSG-free packages; DDTP translations"),
    "offline_summarize": ("Debian apt Translation-en (long description -> synopsis)",
                          "descriptions of DFSG-free packages"),
    "offline_classify": ("Debian r-cran-modeldata: small_fine_foods (training/testing_data)",
                         "MIT (package); reviews from SNAP Amazon Fine Foods"),
    "offline_classify_text": ("offline_classify's reviews (labels dropped)",
                              "MIT (package); reviews from SNAP Amazon Fine Foods"),
    "personachat": ("local ParlAI *_self_original.txt files", "see the files' source"),
}


def _rows(name: str, data_dir: str) -> dict[str, list[tuple]]:
  """The task's rows (key, fields...) per split."""
  cache = os.path.join(data_dir, "cache")
  if name == "offline_lm":
    return corpora.split_rows(corpora.python_doc_rows(cache), 20, 20)
  if name == "offline_lm_prose":
    return corpora.split_rows(corpora.prose_rows(cache), 20, 20)
  if name.startswith("offline_translate_en_"):
    return corpora.split_rows(corpora.translation_rows(name[-2:]), 25, 25)
  if name == "offline_summarize":
    return corpora.split_rows(corpora.summary_rows(), 20, 20)
  if name in ("offline_classify", "offline_classify_text"):
    train, test = corpora.fine_foods_rows(cache)
    splits = corpora.split_rows(train, 100, 0)
    splits["test"] = corpora.split_rows(test, 0, 0)["train"]
    if name == "offline_classify_text":  # (key, label, text) -> (key, text)
      return {split: [(row[0], row[2]) for row in rows] for split, rows in splits.items()}
    return splits
  if name == "personachat":
    return personachat.split_rows(os.path.join(registry.task_dir(name, data_dir), "raw"))
  raise DataError(f"Task {name!r} has no offline builder")


def _write_splits(name: str, data_dir: str, splits: dict[str, list[tuple]]) -> dict:
  """Writes the split files (fields after the key, tab-separated) and returns their stats."""
  stats = {}
  for split, rows in splits.items():
    if not rows:
      raise DataError(f"Building {name!r} gave an empty {split!r} split; the source is too "
                      "small or missing.")
    path = split_file(name, split, data_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".partial", "w", encoding="utf-8") as f:
      for row in rows:
        f.write("\t".join(row[1:]) + "\n")
    os.replace(path + ".partial", path)
    stats[split] = {"examples": len(rows), "bytes": os.path.getsize(path)}
  return stats


def _vocab_text(name: str, train_rows: Sequence[tuple]) -> Iterable[str]:
  """Training-split text for the vocabulary (every text field; not the class labels)."""
  first = 2 if "label" in registry.layout(name).offline_columns else 1
  for row in train_rows:
    yield from row[first:]


def _split_texts(name: str, data_dir: str, split: str = "train") -> Iterable[str]:
  """The text fields of a prepared split file of an offline task (not its class labels)."""
  columns = registry.layout(name).offline_columns
  text = [i for i, c in enumerate(columns) if c != "label"] if not registry.layout(
      name).chunked else [0]
  with open(split_file(name, split, data_dir), encoding="utf-8") as f:
    for line in f:
      fields = line.rstrip("\n").split("\t")
      yield from (fields[i] for i in text if i < len(fields))


def _family_vocab(family: str, data_dir: str, path: str, max_examples: int = 200_000) -> None:
  """Trains a `registry.FAMILIES` vocabulary on its tasks' training text (offline ones
  prepared first, TFDS ones read from TFDS), an equal share of the size cap each, so no one
  corpus crowds the others out, and on its members' prefixes, field names and label words,
  which the model must be able to read."""
  fam = registry.FAMILIES[family]
  share = 6_000_000 // len(fam.texts)
  for name in fam.texts:
    if spec(name).source != "tfds":
      prepare_task(name, data_dir)

  members = [spec(n) for n in registry.TASKS if spec(n).family == family]
  words = [t for m in members for t in (m.prefix, *m.label_names, *(f"{f}:" for f in m.fields))
           if t]

  def texts():
    yield from words
    for name in fam.texts:
      size = 0
      for text in (_tfds_texts(name, data_dir, max_examples) if spec(name).source == "tfds"
                   else _split_texts(name, data_dir)):
        yield text
        size += len(text) + 1
        if size >= share:
          break

  train_vocab(texts(), path, fam.vocab_size, character_coverage=fam.character_coverage,
              required_chars="".join(sorted(set("".join(words)) - {" "})))


def _tfds_texts(name: str, data_dir: str, max_examples: int) -> Iterable[str]:
  """Text fields of the training split(s) of a TFDS task family, for its vocabulary."""
  from synthesizer_jax.data.tfenv import import_tfds

  tfds = import_tfds()
  s = spec(name)
  members = [n for n in registry.TASKS if spec(n).family == s.family and "train" in
             dict(spec(n).split_map)] if s.family == "glue" else [name]
  seen = set()
  for member in members:
    ms = spec(member)
    if ms.tfds_name in seen:
      continue
    seen.add(ms.tfds_name)
    try:
      ds = tfds.load(ms.tfds_name, split="train", data_dir=registry.tfds_dir(data_dir),
                     download=False)
    except Exception as e:  # noqa: BLE001 - TFDS raises several types for a missing dataset
      raise DataError(
          f"TFDS dataset {ms.tfds_name} is not available in {registry.tfds_dir(data_dir)} "
          f"({type(e).__name__}). Download it on a machine with network access "
          f"(`tfds build {ms.tfds_name.split(':')[0]} --data_dir DIR`) and copy DIR there, "
          "or set TFDS_DATA_DIR.") from e
    keys = ms.fields or tuple(k for k in (ms.inputs_key, ms.targets_key) if k)
    for ex in ds.take(max_examples).as_numpy_iterator():
      for k in keys:
        yield ex[k].decode("utf-8", "replace")


STAGES = ("read sources", "write splits", "train vocabulary")


def prepare_task(name: str, data_dir: str, max_vocab_examples: int = 200_000,
                 on_stage=lambda stage: None) -> dict:
  """Builds one task (and its family's vocabulary) if not built yet; returns its meta.

  `on_stage(stage)` is called as each of `STAGES` starts (for a progress bar).
  """
  s = spec(name)
  tdir = registry.task_dir(name, data_dir)
  vpath = registry.vocab_path(name, data_dir)
  meta_path = os.path.join(tdir, META)
  if s.corpus:  # another task's files, in this task's family vocabulary
    meta = prepare_task(s.corpus, data_dir, on_stage=on_stage)
    if not os.path.exists(vpath):
      _family_vocab(s.family, data_dir, vpath)
    return {**meta, "task": name, "vocab": os.path.relpath(vpath, data_dir),
            "vocab_size": _vocab_size(vpath)}
  if is_prepared(name, data_dir):
    if s.source == "tfds":
      return {"task": name, "vocab": vpath}
    with open(meta_path) as f:
      meta = json.load(f)
    if meta.get("version") == BUILD_VERSION:
      return meta
  if s.source == "tfds":
    on_stage(STAGES[2])
    if s.family in registry.FAMILIES:
      _family_vocab(s.family, data_dir, vpath, max_vocab_examples)
    else:
      train_vocab(_tfds_texts(name, data_dir, max_vocab_examples), vpath, s.vocab_size)
    return {"task": name, "vocab": vpath}
  on_stage(STAGES[0])
  splits = _rows(name, data_dir)
  on_stage(STAGES[1])
  stats = _write_splits(name, data_dir, splits)
  on_stage(STAGES[2])
  if not os.path.exists(vpath) and s.family in registry.FAMILIES:
    _family_vocab(s.family, data_dir, vpath)
  elif not os.path.exists(vpath):
    # A family's vocabulary is the same whichever member builds it first: the settings of the
    # task the family is named after (offline_classify_text builds offline_classify's).
    owner = s.family if s.family in registry.TASKS else name
    coverage = 1.0 if registry.layout(owner).chunked else 0.9999
    train_vocab(_vocab_text(name, splits["train"]), vpath, s.vocab_size,
                character_coverage=coverage)
  source, licence = SOURCES[name]
  meta = {"version": BUILD_VERSION, "task": name, "source": source, "licence": licence,
          "splits": stats, "vocab": os.path.relpath(vpath, data_dir),
          "vocab_size": _vocab_size(vpath)}
  with open(meta_path + ".partial", "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(meta_path + ".partial", meta_path)
  return meta


def _vocab_size(path: str) -> int:
  import sentencepiece as spm

  return spm.SentencePieceProcessor(model_file=path).get_piece_size()


def prepare(data_dir: str | None = None, tasks: Sequence[str] | None = None,
            progress: bool = True, apt_update: bool = False, cache: bool = False,
            vocab_models: Mapping[str, str] | None = None) -> dict[str, dict]:
  """Builds `tasks` (default: every offline task; a mixture: each of its members) under
  `data_dir`; returns {task: meta}.

  With `apt_update`, first runs `apt-get update` (with the en/de/fr description indexes)
  if apt lacks them; that needs root. Without it, a missing index is an error saying so.
  With `cache`, then caches every split of each task for the Grain pipeline (`cache.py`):
  an up-to-date cache is kept, a stale one rebuilt. `vocab_models` ({family: path}, local
  or gs://) names a family's SentencePiece model instead of training one
  (`named_vocab.install`), e.g. T5's public model for c4_t5.
  """
  from tqdm.auto import tqdm

  data_dir = os.path.abspath(data_dir or registry.default_data_dir())
  names = list(dict.fromkeys(mixtures.expand(tasks))) if tasks else list(OFFLINE_TASKS)
  for name in names:
    spec(name)  # unknown names fail before any work
  for family, path in (vocab_models or {}).items():
    named_vocab.install(family, path, data_dir)
  if apt_update and any(spec(n).source == "offline" and not is_prepared(n, data_dir)
                        for n in names):
    debian.update_apt_lists()
  os.makedirs(data_dir, exist_ok=True)
  out = {}
  bar = tqdm(total=len(names) * len(STAGES), desc="prepare", unit="step", disable=not progress)
  for name in names:
    done = bar.n

    def on_stage(stage, name=name, done=done):
      bar.update(done + STAGES.index(stage) - bar.n)
      bar.set_postfix_str(f"{name}: {stage}")

    out[name] = prepare_task(name, data_dir, on_stage=on_stage)
    bar.update(done + len(STAGES) - bar.n)
  bar.close()
  if cache:
    from synthesizer_jax.data.cache import cache_task

    for name in dict.fromkeys(registry.cached_task(n) for n in names):
      cache_task(name, data_dir, refresh=True, log=print if progress else lambda *a: None)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=registry.default_data_dir(),
                      help=f"default: ${registry.ENV_DATA_DIR} or ./data")
  parser.add_argument("--tasks", nargs="*", default=None,
                      help="tasks or mixtures (a mixture's members); default: the offline tasks "
                      f"{' '.join(OFFLINE_TASKS)}")
  parser.add_argument("--apt_update", action="store_true",
                      help="run `apt-get update` with the en/de/fr description indexes first "
                           "if apt lacks them (needs root)")
  parser.add_argument("--cache", action="store_true",
                      help="then cache each task for training without TensorFlow (Grain); "
                           "same as `python -m synthesizer_jax.data.cache --task ...`")
  parser.add_argument("--vocab_model", action="append", default=[], metavar="FAMILY=PATH",
                      help="use this SentencePiece model (a local path or gs://...) as the "
                           "family's vocabulary instead of training one, e.g. c4_t5=gs://t5-data"
                           "/vocabs/cc_all.32000/sentencepiece.model (T5's); repeatable")
  args = parser.parse_args(argv)
  try:
    metas = prepare(args.data_dir, args.tasks, apt_update=args.apt_update, cache=args.cache,
                    vocab_models=named_vocab.parse(args.vocab_model))
  except DataError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for name, meta in metas.items():
    counts = ", ".join(f"{k} {v['examples']:,} ({v['bytes'] / 1e6:.2f} MB)"
                       for k, v in meta.get("splits", {}).items())
    print(f"{name}: {counts or 'vocabulary only'}; vocab {meta['vocab']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
