"""GLUE and SuperGLUE as the task table (`registry.py`) builds them: each benchmark task's
TFDS config, text fields (in prompt order) and label names, its split map, and which tasks
T5's proportional mixtures train on. Pure data (no TensorFlow)."""

from __future__ import annotations

TFDS_VERSIONS = {"glue": "2.0.0", "super_glue": "1.0.2"}

GLUE = {
    # name: (tfds config, text fields, label names)
    "cola": ("cola", ("sentence",), ("unacceptable", "acceptable")),
    "sst2": ("sst2", ("sentence",), ("negative", "positive")),
    "mrpc": ("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "qqp": ("qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
    # STS-B scores in [0, 5] are bucketed to steps of 0.2, as T5 does: 26 classes "0.0".."5.0".
    "stsb": ("stsb", ("sentence1", "sentence2"), tuple(f"{i / 5:.1f}" for i in range(26))),
    "mnli": ("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction")),
    "qnli": ("qnli", ("question", "sentence"), ("entailment", "not_entailment")),
    "rte": ("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "wnli": ("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment")),
}
SUPER_GLUE = {
    "boolq": ("boolq", ("question", "passage"), ("False", "True")),
    "cb": ("cb", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral")),
    "copa": ("copa", ("premise", "question", "choice1", "choice2"), ("choice1", "choice2")),
    "multirc": ("multirc", ("paragraph", "question", "answer"), ("False", "True")),
    "rte": ("rte", ("premise", "hypothesis"), ("entailment", "not_entailment")),
    "wic": ("wic", ("word", "sentence1", "sentence2"), ("False", "True")),
    "wsc": ("wsc.fixed", ("text", "span1_text", "span2_text"), ("False", "True")),
    "axb": ("axb", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "axg": ("axg", ("premise", "hypothesis"), ("entailment", "not_entailment")),
}
# ReCoRD is text-to-text only (its target is an entity, not a class): (config, fields).
RECORD = ("record", ("passage", "query"))

SPLITS = (("train", "train"), ("validation", "validation"), ("test", "test"))
MNLI_SPLITS = (("train", "train"), ("validation", "validation_matched"),
               ("test", "test_matched"), ("validation_mismatched", "validation_mismatched"),
               ("test_mismatched", "test_mismatched"))
TEST_ONLY = (("test", "test"),)

# The members of T5's glue_v002_proportional and super_glue_v102_proportional
# (t5/data/glue_utils.py): every task with a training split, less WNLI, which T5 leaves out
# (it trains on WSC instead); the diagnostics (ax, axb, axg) have no training data.
T5_GLUE_MIXTURE = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
T5_SUPER_GLUE_MIXTURE = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")


def split_map(name: str) -> tuple[tuple[str, str], ...]:
  """Our split names -> the TFDS splits of benchmark task `name`."""
  return MNLI_SPLITS if name == "mnli" else TEST_ONLY if name in ("axb", "axg") else SPLITS


def tfds_name(bench: str, config: str) -> str:
  """The versioned TFDS name, e.g. "glue/cola:2.0.0"."""
  return f"{bench}/{config}:{TFDS_VERSIONS[bench]}"
