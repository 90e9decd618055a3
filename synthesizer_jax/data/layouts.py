"""Layouts: what the examples and batches of a task look like, by the model shape it feeds.

    layout = registry.layout("offline_lm")   # the task table's entry names its layout
    layout.task_features                     # {"targets": False}: seqio features (-> EOS?)
    layout.converter(pack=True)              # (tf.data.Dataset, lengths) -> batch features

This is the data side of a model shape (`synthesizer_jax.shapes`), kept in the data layer
so that preparing, caching and reading a task need its name alone and never the model
code: a layout is named like the shape it feeds ("lm", "encdec", "classifier"), and each
`shapes.ModelShape` takes its `task_features`, `batch_features` and `packable` from the
layout it names, so every fact here has one owner. The shape owns the model, its loss and
its predictions. Pure Python; the converters import seqio / TensorFlow when called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from synthesizer_jax.data.tfenv import import_seqio, import_tf

_DECODER = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")


@dataclasses.dataclass(frozen=True)
class Layout:
  """The examples and batches of the tasks of one model shape.

  Attributes:
    name: the model shape's name (`TaskInfo.shape`).
    task_features: seqio task features -> whether each ends with EOS.
    batch_features: features every batch has (the feature converter's output).
    packable: several examples may share a row (seqio packing).
    chunked: the targets are pieces of a long text, cut to the target length (an LM
      corpus; offline files hold one text per line).
    offline_columns: TSV columns of an offline task's files (when not `chunked`).
    text_targets: GLUE-style labels become text targets (text-to-text).
    labelled: examples carry a class label: the task has one class per label name.
    seqio_converter: the seqio feature converter class that makes the batch features
      ("": the classifier's own `classifier_features`).
  """

  name: str
  task_features: Mapping[str, bool] = dataclasses.field(default_factory=dict)
  batch_features: tuple[str, ...] = ()
  packable: bool = True
  chunked: bool = False
  offline_columns: tuple[str, ...] = ()
  text_targets: bool = False
  labelled: bool = False
  seqio_converter: str = ""

  def num_classes(self, label_names: tuple[str, ...]) -> int | None:
    """The number of classes of a task with these label names (None: no classes)."""
    return len(label_names) if self.labelled else None

  def converter(self, pack: bool):
    """The feature converter: (tf.data.Dataset, lengths) -> Dataset of `batch_features`."""
    if self.seqio_converter:
      return getattr(import_seqio(), self.seqio_converter)(pack=pack)
    return classifier_features


def classifier_features(ds, feature_lengths: Mapping[str, int]):
  """{"inputs", "label"} -> {"encoder_input_tokens": int32[L] (0-padded), "targets": int32}."""
  tf = import_tf()
  length = feature_lengths["inputs"]

  def convert(ex):
    tokens = tf.cast(ex["inputs"][:length], tf.int32)
    tokens = tf.pad(tokens, [[0, length - tf.size(tokens)]])
    tokens = tf.ensure_shape(tokens, [length])
    return {"encoder_input_tokens": tokens, "targets": tf.cast(ex["label"], tf.int32)}

  return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


LM = Layout("lm", {"targets": False}, _DECODER, chunked=True,
            seqio_converter="DecoderFeatureConverter")
ENCDEC = Layout("encdec", {"inputs": True, "targets": True}, ("encoder_input_tokens",) + _DECODER,
                offline_columns=("inputs", "targets"), text_targets=True,
                seqio_converter="EncDecFeatureConverter")
CLASSIFIER = Layout("classifier", {"inputs": True}, ("encoder_input_tokens", "targets"),
                    packable=False, offline_columns=("label", "inputs"), labelled=True)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (LM, ENCDEC, CLASSIFIER)}
