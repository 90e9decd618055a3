"""seqio tasks for every entry of the task table.

Tasks are registered lazily, per data directory (the vocabulary and files live there),
under the name `<task>#<short hash of the data dir>`; `seqio_task(name, data_dir)` returns
the registered task. Offline tasks read the prepared split files; TFDS tasks read TFDS
from `<data_dir>/tfds` (or $TFDS_DATA_DIR, which may be a bucket).

Examples after preprocessing, before the feature converter:
  lm:         {"targets": int32[<= L]}   documents are cut into L-token pieces, EOS at the end
  span corruption (an encdec task): {"inputs", "targets"} of one piece of a document
  encdec:     {"inputs": int32[...], "targets": int32[...]}, each ending with EOS
  classifier: {"inputs": int32[...] ending with EOS, "label": int32 scalar (-1 = no label)}
"""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np

from synthesizer_jax import paths
from synthesizer_jax.data import registry, span_corruption
from synthesizer_jax.data.registry import META, PREPARE_CMD, DataError, read_meta, spec
from synthesizer_jax.data.tfenv import import_seqio, import_tf
from synthesizer_jax.data.vocab import get_vocabulary

SHUFFLE_BUFFER = 10_000
# LM pieces come from documents already stored in a fixed random order; a buffer of 10k
# pieces would tokenize the whole offline corpus before the first batch.
LM_SHUFFLE_BUFFER = 1_000


def registered_name(name: str, data_dir: str) -> str:
  """The seqio registry name of task `name` over `data_dir`."""
  digest = hashlib.md5(os.path.abspath(data_dir).encode()).hexdigest()[:8]
  return f"{name}#{digest}"


def split_file(name: str, split: str, data_dir: str) -> str:
  """Path of a prepared split file of an offline/local task."""
  ext = "txt" if registry.layout(registry.corpus_task(name)).chunked else "tsv"
  return os.path.join(registry.task_dir(name, data_dir), f"{split}.{ext}")


def is_prepared(name: str, data_dir: str) -> bool:
  """Whether `prepare` finished for this task (its meta file is written last)."""
  s = spec(name)
  vocab_ok = os.path.exists(registry.vocab_path(name, data_dir))
  if s.source == "tfds":
    return vocab_ok
  return vocab_ok and os.path.exists(os.path.join(registry.task_dir(name, data_dir), META))


def tfds_version_dir(name: str, data_dir: str) -> str:
  """Where TFDS keeps the prepared files of a TFDS task ("" for other tasks)."""
  tfds_name = spec(name).tfds_name
  return os.path.join(registry.tfds_dir(data_dir), tfds_name.replace(":", "/")) if tfds_name else ""


def check_prepared(name: str, data_dir: str) -> None:
  """Raises DataError naming the prepare command if `name` is not built under `data_dir`."""
  cmd = PREPARE_CMD.format(data_dir=data_dir, task=name)
  if not os.path.isdir(data_dir):
    raise DataError(f"Data directory {data_dir} does not exist. Build the data with:\n  {cmd}")
  tfds_data = tfds_version_dir(name, data_dir)
  # $TFDS_DATA_DIR may be a bucket (gs://B/tfds), as on Dataflow workers (docs/data.md).
  if tfds_data and not paths.as_path(tfds_data).is_dir():
    # seqio would otherwise start downloading (tens of GB for some of these).
    raise DataError(f"TFDS data for {name!r} is missing: no {tfds_data}. Build it on a machine "
                    f"with network access (`tfds build {spec(name).tfds_name.split(':')[0]} "
                    f"--data_dir DIR`), copy DIR to {registry.tfds_dir(data_dir)} (or set "
                    f"TFDS_DATA_DIR), then run:\n  {cmd}")
  if not is_prepared(name, data_dir):
    raise DataError(f"Task {name!r} is not prepared in {data_dir}. Build it with:\n  {cmd}")


# ----------------------------------------------------------------------------------------------
# Preprocessors (tf.data maps).


def _parse_tsv(ds, keys):
  tf = import_tf()

  def parse(line):
    parts = tf.strings.split(line, "\t", maxsplit=len(keys) - 1)
    return {k: parts[i] for i, k in enumerate(keys)}

  return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _to_label(ds):
  tf = import_tf()
  return ds.map(lambda ex: {"inputs": ex["inputs"],
                            "label": tf.strings.to_number(ex["label"], tf.int32)})


def chunk_targets(ds, sequence_length, output_features):
  """Appends EOS to each tokenized document, then cuts it into pieces of L tokens."""
  del output_features
  tf = import_tf()
  length = sequence_length["targets"] if sequence_length else None

  def pieces(ex):
    tokens = tf.concat([ex["targets"], tf.constant([1], ex["targets"].dtype)], axis=0)
    if length is None:
      return tf.data.Dataset.from_tensors({"targets": tokens})
    starts = tf.range(0, tf.size(tokens), length, dtype=tf.int64)
    ragged = tf.RaggedTensor.from_row_starts(tokens, starts)
    return tf.data.Dataset.from_tensor_slices({"targets": ragged})

  return ds.flat_map(pieces)


def span_corrupt(ds, sequence_length, output_features):
  """T5's span corruption (`span_corruption.py`) of tokenized documents: each is cut into
  pieces of `lengths_for(inputs length)` tokens (pieces under 2 tokens are dropped), and
  each piece corrupted with a seed from seqio's seed manager, so the examples are fixed by
  `get_dataset`'s seed. EOS is appended after this."""
  tf, seqio = import_tf(), import_seqio()
  if not sequence_length or not sequence_length.get("inputs"):
    raise DataError("span corruption cuts documents to fill the inputs length: call "
                    "get_dataset with sequence_length={'inputs': L, 'targets': ...}")
  raw = span_corruption.lengths_for(sequence_length["inputs"])[0]
  vocab_size = output_features["targets"].vocabulary.vocab_size

  def pieces(ex):
    tokens = tf.cast(ex["targets"], tf.int32)
    starts = tf.range(0, tf.size(tokens), raw, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_starts(tokens, starts))

  def corrupt_numpy(tokens, seed):
    rng = np.random.default_rng(np.asarray(seed).astype(np.uint64).tolist())
    return span_corruption.span_corrupt(tokens.astype(np.int32), vocab_size, rng)

  @seqio.map_over_dataset(num_seeds=1)
  def corrupt(tokens, seed):
    inputs, targets = tf.numpy_function(corrupt_numpy, [tokens, seed], [tf.int32, tf.int32])
    return {"inputs": tf.ensure_shape(inputs, [None]), "targets": tf.ensure_shape(targets, [None])}

  return corrupt(ds.flat_map(pieces).filter(lambda tokens: tf.size(tokens) >= 2))


def _text_to_text(ds, *, prefix, label_names):
  """T5's text-to-text form of an offline pair: the prefix before the inputs, and a class
  label's name as the target."""
  tf = import_tf()
  names = tf.constant(list(label_names) or ["none"])

  def fmt(ex):
    out = {"inputs": tf.strings.join([prefix, ex["inputs"]], separator=" ") if prefix
           else ex["inputs"]}
    out["targets"] = (tf.gather(names, tf.strings.to_number(ex["label"], tf.int32))
                      if "label" in ex else ex["targets"])
    return out

  return ds.map(fmt, num_parallel_calls=tf.data.AUTOTUNE)


def _select(ds, inputs_key, targets_key):
  if inputs_key:
    return ds.map(lambda ex: {"inputs": ex[inputs_key], "targets": ex[targets_key]})
  return ds.map(lambda ex: {"targets": ex[targets_key]})


def _glue_format(ds, *, prefix, fields, label_names, text_targets, bucket_scores):
  """T5-style "glue sst2 sentence: ..." inputs; label id, or the label name as targets."""
  tf = import_tf()
  names = tf.constant(list(label_names) or ["none"])

  def fmt(ex):
    parts = [prefix]
    for field in fields:
      parts += [f"{field}:", ex[field]]
    out = {"inputs": tf.strings.join(parts, separator=" ")}
    if "answers" in ex:  # ReCoRD: the first gold entity
      answers = tf.concat([ex["answers"], tf.constant([""])], axis=0)
      out["targets"] = answers[0]
      return out
    label = ex["label"]
    if bucket_scores:  # STS-B: score in [0, 5] -> bucket of width 0.2
      label = tf.clip_by_value(tf.cast(tf.round(label * 5.0), tf.int32), 0, 25)
    label = tf.cast(label, tf.int32)
    if text_targets:
      out["targets"] = tf.where(label < 0, tf.constant("unlabelled"),
                                tf.gather(names, tf.maximum(label, 0)))
    else:
      out["label"] = label
    return out

  return ds.map(fmt, num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------
# Registration.


def _source(name: str, data_dir: str):
  seqio = import_seqio()
  s = spec(name)
  if s.source == "tfds":
    return seqio.TfdsDataSource(tfds_name=s.tfds_name, tfds_data_dir=registry.tfds_dir(data_dir),
                                splits=dict(s.split_map))
  meta = read_meta(name, data_dir)
  files = {split: split_file(name, split, data_dir) for split in meta["splits"]}
  return seqio.TextLineDataSource(split_to_filepattern=files)


def _preprocessors(name: str):
  seqio = import_seqio()
  s, layout = spec(name), registry.layout(name)
  tokenize = [seqio.preprocessors.tokenize]
  eos = [seqio.preprocessors.append_eos]
  if s.objective == "span_corruption":  # documents of an LM corpus (lines, or TFDS texts)
    docs = (functools.partial(_select, inputs_key="", targets_key=s.targets_key)
            if s.source == "tfds" else lambda ds: ds.map(lambda line: {"targets": line}))
    return [docs, *tokenize, span_corrupt, *eos]
  if s.corpus and not layout.chunked:  # another task's pairs, text-to-text
    columns = registry.layout(s.corpus).offline_columns
    return [functools.partial(_parse_tsv, keys=columns),
            functools.partial(_text_to_text, prefix=s.prefix, label_names=s.label_names),
            *tokenize, *eos]
  if s.source in ("offline", "local"):
    if layout.chunked:
      return [lambda ds: ds.map(lambda line: {"targets": line}), *tokenize, chunk_targets]
    labels = [_to_label] if "label" in layout.offline_columns else []
    return [functools.partial(_parse_tsv, keys=layout.offline_columns), *labels, *tokenize, *eos]
  if layout.chunked:
    return [functools.partial(_select, inputs_key="", targets_key=s.targets_key), *tokenize,
            chunk_targets]
  if s.fields:  # GLUE / SuperGLUE: "<benchmark> <task> <field>: <text> ..." inputs
    fmt = functools.partial(_glue_format, prefix=s.prefix, fields=s.fields,
                            label_names=s.label_names, text_targets=layout.text_targets,
                            bucket_scores=name.startswith("glue_stsb"))
    return [fmt, *tokenize, *eos]
  return [functools.partial(_select, inputs_key=s.inputs_key, targets_key=s.targets_key),
          *tokenize, *eos]


def seqio_task(name: str, data_dir: str | None = None):
  """Registers (once) and returns the seqio.Task of `name` over `data_dir`.

  Raises:
    DataError: unknown name, or the task/vocabulary is not prepared under `data_dir`.
  """
  seqio = import_seqio()
  data_dir = os.path.abspath(data_dir or registry.default_data_dir())
  check_prepared(name, data_dir)
  reg = registered_name(name, data_dir)
  if reg in seqio.TaskRegistry.names():
    return seqio.TaskRegistry.get(reg)
  vocab = get_vocabulary(name, data_dir)
  layout = registry.layout(name)
  features = {key: seqio.Feature(vocab, add_eos=eos) for key, eos in layout.task_features.items()}
  return seqio.TaskRegistry.add(reg, source=_source(name, data_dir),
                                preprocessors=_preprocessors(name), output_features=features,
                                shuffle_buffer_size=LM_SHUFFLE_BUFFER if layout.chunked
                                else SHUFFLE_BUFFER)
