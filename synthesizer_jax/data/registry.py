"""The task table: every task name, its model shape, metric, vocabulary and source.

Pure Python (no TensorFlow), so the training code can ask what a task is before it builds
a pipeline. `tasks.py` turns these entries into seqio tasks. A data directory may be a
bucket (gs://B/data, a cache written by `cache.py --out_dir`): the paths here are strings
joined under it, and what is read goes through `paths` (etils.epath).
"""

from __future__ import annotations

import dataclasses
import json
import os

from synthesizer_jax import paths
from synthesizer_jax.data import benchmarks
from synthesizer_jax.data.layouts import LAYOUTS, Layout

ENV_DATA_DIR = "SYNTHESIZER_DATA_DIR"
SPLITS = ("train", "validation", "test")
PREPARE_CMD = "python -m synthesizer_jax.data.prepare --data_dir {data_dir} --tasks {task}"
META = "meta.json"  # written last by prepare into an offline task's directory


class DataError(RuntimeError):
  """A data problem the user can fix; the message says how."""


def default_data_dir() -> str:
  """$SYNTHESIZER_DATA_DIR (a local path made absolute, or a gs:// URL), else `data/` at the
  repository root (ignored by git)."""
  env = os.environ.get(ENV_DATA_DIR)
  if env:
    return os.fspath(paths.as_path(env))
  here = os.path.abspath(__file__)  # local path: this module's own file, not a data path
  repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
  return os.path.join(repo, "data")


@dataclasses.dataclass(frozen=True)
class TaskInfo:
  """What a task is, for the model and metric code.

  Attributes:
    name: the task name, a key of `TASKS`.
    shape: a `synthesizer_jax.shapes` name: "lm" (DecoderLM), "encdec" (EncoderDecoder) or
      "classifier" (EncoderClassifier); also the name of its data `layouts.Layout`.
    metric: "perplexity", "bleu", "rouge" or "glue" (accuracy / F1 / correlation).
    vocab_path: the SentencePiece model file this task uses (built by `prepare`).
    vocab_family: tasks of one family share a vocabulary (e.g. all GLUE and SuperGLUE tasks).
    num_classes: number of classes for classifier tasks, else None.
    label_names: class names; for text-to-text GLUE tasks these are the target strings.
    source: "offline" (built here from Debian packages), "tfds" or "local" (a user file).
    feature_keys: keys of the `feature_lengths` dict `get_dataset` needs for this task.
    description: one line on the data.
    extra_ids: ids above the vocabulary's pieces, its family's (T5's sentinels; 0: none).
    members: a mixture's member tasks (`mixtures.task_info`); () for a task.
  """

  name: str
  shape: str
  metric: str
  vocab_path: str
  vocab_family: str
  num_classes: int | None
  label_names: tuple[str, ...]
  source: str
  feature_keys: tuple[str, ...]
  description: str
  extra_ids: int = 0
  members: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Family:
  """A vocabulary that tasks of several corpora share: a pre-training task and the tasks
  fine-tuned from it (T5's recipe). Its SentencePiece model is trained on the training
  splits of `texts` (an equal share of the 6 MB cap each), and `extra_ids` ids above its
  pieces are kept for span corruption's sentinels (<extra_id_0> is the last id, as seqio
  numbers them)."""

  texts: tuple[str, ...]
  vocab_size: int = 8000
  extra_ids: int = 0
  character_coverage: float = 0.9999


# Families whose vocabulary is not trained on one task's text alone. (A task whose family is
# another task's name, like offline_classify_text, takes that task's vocabulary.)
FAMILIES = {
    # T5's recipe offline: pre-training text and the fine-tuning tasks' text.
    "offline_t5": Family(texts=("offline_lm_prose", "offline_classify", "offline_translate_en_de",
                                "offline_summarize"), extra_ids=100),
    # T5's recipe at scale: span corruption on C4, then GLUE / SuperGLUE text-to-text, in one
    # 32k vocabulary trained on C4 (as T5's was), or T5's own model named by path when
    # preparing (`prepare --vocab_model c4_t5=gs://t5-data/vocabs/cc_all.32000/...`).
    "c4_t5": Family(texts=("c4",), vocab_size=32000, extra_ids=100),
}


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Internal: how to build a task. `fields` are input text features, in prompt order.
  `corpus`: another offline task whose prepared files this task reads; `cached_as`: the
  task whose cache holds this task's examples before `objective` ("span_corruption"),
  which both pipelines apply after the cache, as T5's tasks do."""

  shape: str
  metric: str
  family: str
  source: str
  description: str
  vocab_size: int = 8000
  tfds_name: str = ""
  inputs_key: str = ""
  targets_key: str = ""
  fields: tuple[str, ...] = ()
  label_names: tuple[str, ...] = ()
  split_map: tuple[tuple[str, str], ...] = (("train", "train"), ("validation", "validation"),
                                            ("test", "test"))
  prefix: str = ""
  corpus: str = ""
  cached_as: str = ""
  objective: str = ""


# C4 has no test split; its validation split serves as both.
_C4_SPLITS = (("train", "train"), ("validation", "validation"), ("test", "validation"))


def _build_specs() -> dict:
  specs = {
      "offline_lm": _Spec(
          "lm", "perplexity", "offline_lm", "offline", vocab_size=8000,
          description="English prose of the CPython 3.11 documentation (python3.11-doc, PSF)"),
      "offline_lm_prose": _Spec(
          "lm", "perplexity", "offline_lm_prose", "offline", vocab_size=8000,
          description="KJV and World English Bibles + Jane Austen's novels (public domain)"),
      "offline_translate_en_de": _Spec(
          "encdec", "bleu", "offline_translate_en_de", "offline", vocab_size=8000,
          description="Debian package descriptions and their German DDTP translations"),
      "offline_translate_en_fr": _Spec(
          "encdec", "bleu", "offline_translate_en_fr", "offline", vocab_size=8000,
          description="Debian package descriptions and their French DDTP translations"),
      "offline_classify": _Spec(
          "classifier", "glue", "offline_classify", "offline", vocab_size=4000,
          label_names=("other", "great"),
          description="Amazon fine-food reviews labelled great/other (r-cran-modeldata)"),
      # The same reviews as LM documents, in offline_classify's vocabulary (one family), to
      # pre-train on the classifier's own text (labels dropped; the splits are the same).
      "offline_classify_text": _Spec(
          "lm", "perplexity", "offline_classify", "offline", vocab_size=4000,
          description="offline_classify's reviews as an LM corpus, in its vocabulary"),
      # T5's recipe on the offline prose: one vocabulary (family offline_t5, with sentinels)
      # for the pre-training task and the tasks fine-tuned from it.
      "offline_lm_prose_t5": _Spec(
          "lm", "perplexity", "offline_t5", "offline", corpus="offline_lm_prose",
          description="offline_lm_prose's documents in the offline_t5 vocabulary"),
      "offline_prose_span_corruption": _Spec(
          "encdec", "perplexity", "offline_t5", "offline", corpus="offline_lm_prose",
          cached_as="offline_lm_prose_t5", objective="span_corruption",
          description="T5's span corruption of offline_lm_prose (pre-training an enc-dec)"),
      # ... and the tasks fine-tuned from it, text-to-text with T5's prefixes (a review's
      # target is its label word).
      "offline_classify_t5": _Spec(
          "encdec", "glue", "offline_t5", "offline", corpus="offline_classify",
          label_names=("other", "great"), prefix="review:",
          description="offline_classify's reviews -> 'great' / 'other', text-to-text"),
      "offline_translate_en_de_t5": _Spec(
          "encdec", "bleu", "offline_t5", "offline", corpus="offline_translate_en_de",
          prefix="translate English to German:",
          description="offline_translate_en_de in the offline_t5 vocabulary, T5's prefix"),
      "offline_summarize_t5": _Spec(
          "encdec", "rouge", "offline_t5", "offline", corpus="offline_summarize",
          prefix="summarize:",
          description="offline_summarize in the offline_t5 vocabulary, T5's prefix"),
      "offline_summarize": _Spec(
          "encdec", "rouge", "offline_summarize", "offline", vocab_size=8000,
          description="Debian long package description -> its one-line synopsis"),
      "lm1b": _Spec(
          "lm", "perplexity", "lm1b", "tfds", vocab_size=32000, tfds_name="lm1b:1.1.0",
          targets_key="text",
          # LM1B has no validation split; its held-out set serves as both.
          split_map=(("train", "train"), ("validation", "test"), ("test", "test")),
          description="One Billion Word benchmark (TFDS lm1b)"),
      # T5's pre-training corpus (cached by data/beam_cache.py on Dataflow: docs/data.md).
      "c4": _Spec(
          "lm", "perplexity", "c4", "tfds", vocab_size=32000, tfds_name="c4/en:3.1.0",
          targets_key="text", split_map=_C4_SPLITS,
          description="Colossal Clean Crawled Corpus, English (TFDS c4/en; T5's pre-training)"),
      # T5's recipe on C4 (family c4_t5): C4's documents (the cache span corruption reads)
      # and span corruption, the pre-training task of the glue_t5 / super_glue_t5 mixtures.
      "c4_lm_t5": _Spec(
          "lm", "perplexity", "c4_t5", "tfds", tfds_name="c4/en:3.1.0", targets_key="text",
          split_map=_C4_SPLITS, description="C4's documents in the c4_t5 vocabulary"),
      "c4_span_corruption": _Spec(
          "encdec", "perplexity", "c4_t5", "tfds", tfds_name="c4/en:3.1.0", targets_key="text",
          split_map=_C4_SPLITS, cached_as="c4_lm_t5", objective="span_corruption",
          description="T5's span corruption of C4 (pre-training an enc-dec, T5's objective)"),
      "cnn_dailymail": _Spec(
          "encdec", "rouge", "cnn_dailymail", "tfds", vocab_size=32000,
          tfds_name="cnn_dailymail:3.4.0", inputs_key="article", targets_key="highlights",
          description="CNN/DailyMail abstractive summarisation (TFDS)"),
      "personachat": _Spec(
          "encdec", "bleu", "personachat", "local", vocab_size=16000,
          description="PersonaChat dialogue from local ParlAI-format files (see docs/data.md)"),
  }
  for lang in ("de", "fr"):
    specs[f"wmt14_en{lang}"] = _Spec(
        "encdec", "bleu", f"wmt14_en{lang}", "tfds", vocab_size=32000,
        tfds_name=f"wmt14_translate/{lang}-en:1.0.0", inputs_key="en", targets_key=lang,
        description=f"WMT'14 English -> {lang} (TFDS; test = newstest2014)")
  for bench, table in (("glue", benchmarks.GLUE), ("super_glue", benchmarks.SUPER_GLUE)):
    for name, (config, fields, labels) in table.items():
      common = dict(metric="glue", source="tfds", vocab_size=16000,
                    tfds_name=benchmarks.tfds_name(bench, config), fields=fields,
                    label_names=labels, split_map=benchmarks.split_map(name),
                    prefix=f"{bench} {name}")
      specs[f"{bench}_{name}"] = _Spec(
          "classifier", family="glue", **common,
          description=f"{bench.upper()} {name}, classifier head")
      specs[f"{bench}_{name}_t2t"] = _Spec(
          "encdec", family="glue", **common,
          description=f"{bench.upper()} {name}, text-to-text (target = label name)")
      specs[f"{bench}_{name}_t5"] = _Spec(
          "encdec", family="c4_t5", **common,
          description=f"{bench.upper()} {name}, text-to-text in the c4_t5 vocabulary")
  config, fields = benchmarks.RECORD
  for suffix, family in (("t2t", "glue"), ("t5", "c4_t5")):
    specs[f"super_glue_record_{suffix}"] = _Spec(
        "encdec", "glue", family, "tfds", vocab_size=16000,
        tfds_name=benchmarks.tfds_name("super_glue", config), fields=fields,
        prefix="super_glue record",
        description=f"SuperGLUE ReCoRD, text-to-text (target = first gold entity), {family} "
                    "vocabulary")
  return specs


_SPECS = _build_specs()
TASKS: tuple[str, ...] = tuple(sorted(_SPECS))
OFFLINE_TASKS: tuple[str, ...] = tuple(n for n in TASKS if _SPECS[n].source == "offline")


def spec(name: str) -> _Spec:
  """The internal build spec of a task; raises DataError listing the known names."""
  if name not in _SPECS:
    raise DataError(f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}.")
  return _SPECS[name]


def family_vocab_path(family: str, data_dir: str | None = None) -> str:
  """Where the SentencePiece model of vocabulary family `family` lives."""
  return os.path.join(data_dir or default_data_dir(), "vocab", f"{family}.model")


def vocab_path(name: str, data_dir: str | None = None) -> str:
  """Where the SentencePiece model of `name`'s vocabulary family lives."""
  return family_vocab_path(spec(name).family, data_dir)


def extra_ids(name: str) -> int:
  """Ids above the pieces of task `name`'s vocabulary (its family's sentinels)."""
  family = FAMILIES.get(spec(name).family)
  return family.extra_ids if family else 0


def corpus_task(name: str) -> str:
  """The task whose prepared split files task `name` reads (itself, unless it borrows)."""
  return spec(name).corpus or name


def cached_task(name: str) -> str:
  """The task whose cache holds task `name`'s examples (itself, unless an objective is
  applied after the cache: span corruption reads its documents' cache)."""
  return spec(name).cached_as or name


def task_dir(name: str, data_dir: str | None = None) -> str:
  """Directory of a task's prepared splits (offline and local tasks; a task that reads
  another's corpus, that task's)."""
  return os.path.join(data_dir or default_data_dir(), corpus_task(name))


def read_meta(name: str, data_dir: str) -> dict:
  """The `meta.json` that `prepare` writes last into an offline task's directory."""
  return json.loads((paths.as_path(task_dir(name, data_dir)) / META).read_text())


def tfds_dir(data_dir: str | None = None) -> str:
  """TFDS data directory: $TFDS_DATA_DIR if set, else <data_dir>/tfds."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.join(data_dir or default_data_dir(), "tfds")


def layout(name: str) -> Layout:
  """What task `name`'s examples and batches look like (the layout of its model shape)."""
  return LAYOUTS[spec(name).shape]


def task_info(name: str, data_dir: str | None = None) -> TaskInfo:
  """Describes task `name` (see `TaskInfo`); vocab_path is resolved under `data_dir`."""
  s, form = spec(name), layout(name)
  return TaskInfo(
      name=name, shape=s.shape, metric=s.metric, vocab_path=vocab_path(name, data_dir),
      vocab_family=s.family, num_classes=form.num_classes(s.label_names),
      label_names=s.label_names, source=s.source, feature_keys=tuple(form.task_features),
      description=s.description, extra_ids=extra_ids(name))


def check_request(name: str, feature_keys, feature_lengths, batch_size: int, shard_index: int,
                  num_shards: int, start_batch: int, shape_name: str) -> dict[str, int]:
  """The feature lengths a pipeline needs for task `name`; DataError on missing lengths or
  bad batching arguments (shared by the seqio and the Grain pipelines)."""
  missing = [k for k in feature_keys if k not in feature_lengths]
  if missing:
    raise DataError(f"Task {name!r} ({shape_name}) needs feature_lengths for "
                    f"{list(feature_keys)}; missing {missing}.")
  if batch_size < 1 or not 0 <= shard_index < num_shards or start_batch < 0:
    raise DataError(f"Bad batching: batch_size={batch_size} (>= 1), shard_index={shard_index} "
                    f"(in [0, num_shards={num_shards})), start_batch={start_batch} (>= 0).")
  return {k: int(feature_lengths[k]) for k in feature_keys}
