"""Task table: names, shapes, metrics, paths and errors; no TensorFlow needed."""

import subprocess
import sys

import pytest

from synthesizer_jax import data
from synthesizer_jax.data import registry

REQUIRED = ("offline_lm", "offline_translate_en_de", "offline_classify", "offline_summarize",
            "lm1b", "wmt14_ende", "wmt14_enfr", "cnn_dailymail", "glue_sst2", "glue_mnli",
            "super_glue_boolq", "super_glue_copa", "personachat")


def test_required_tasks_exist():
  missing = [n for n in REQUIRED if n not in data.TASKS]
  assert not missing


@pytest.mark.parametrize("name,shape,metric", [
    ("offline_lm", "lm", "perplexity"), ("lm1b", "lm", "perplexity"),
    ("offline_translate_en_de", "encdec", "bleu"), ("wmt14_enfr", "encdec", "bleu"),
    ("offline_summarize", "encdec", "rouge"), ("cnn_dailymail", "encdec", "rouge"),
    ("offline_classify", "classifier", "glue"), ("glue_sst2", "classifier", "glue"),
    ("glue_sst2_t2t", "encdec", "glue"), ("personachat", "encdec", "bleu")])
def test_shapes_and_metrics(name, shape, metric):
  info = data.task_info(name, "/some/dir")
  assert (info.shape, info.metric) == (shape, metric)
  assert info.vocab_path.startswith("/some/dir/vocab/") and info.vocab_path.endswith(".model")
  assert info.feature_keys == {"lm": ("targets",), "encdec": ("inputs", "targets"),
                               "classifier": ("inputs",)}[shape]


def test_classifier_labels():
  assert data.task_info("glue_mnli").num_classes == 3
  assert data.task_info("glue_stsb").num_classes == 26
  assert data.task_info("offline_classify").label_names == ("other", "great")
  assert data.task_info("glue_sst2_t2t").num_classes is None
  assert data.task_info("lm1b").num_classes is None


def test_glue_family_shares_one_vocabulary():
  paths = {data.task_info(n, "/d").vocab_path for n in data.TASKS
           if "glue" in n and not n.endswith("_t5")}
  assert paths == {"/d/vocab/glue.model"}
  # The C4 recipe's GLUE / SuperGLUE tasks share the pre-training task's vocabulary instead.
  t5 = {data.task_info(n, "/d").vocab_path for n in data.TASKS
        if "glue" in n and n.endswith("_t5") or n == "c4_span_corruption"}
  assert t5 == {"/d/vocab/c4_t5.model"}
  assert data.task_info("wmt14_ende", "/d").vocab_path != data.task_info("wmt14_enfr",
                                                                         "/d").vocab_path


def test_unknown_task_lists_known_names():
  with pytest.raises(data.DataError, match="Unknown task 'no_such'.*offline_lm"):
    data.task_info("no_such")


def test_default_data_dir_env(monkeypatch, tmp_path):
  monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path))
  assert data.default_data_dir() == str(tmp_path)
  monkeypatch.delenv(data.ENV_DATA_DIR)
  assert data.default_data_dir().endswith("/data")


def test_import_does_not_load_tensorflow():
  code = ("import sys, synthesizer_jax.data as d; d.task_info('lm1b'); "
          "assert 'tensorflow' not in sys.modules and 'seqio' not in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_tfds_dir_override(monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", "/tfds_here")
  assert registry.tfds_dir("/d") == "/tfds_here"
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert registry.tfds_dir("/d") == "/d/tfds"
