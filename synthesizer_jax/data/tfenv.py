"""Imports TensorFlow / seqio / TFDS on demand, on the CPU only and quietly.

TensorFlow only feeds data here; it must never take GPU/TPU memory from JAX.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def import_tf():
  """TensorFlow with every accelerator hidden from it."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  try:
    import tensorflow as tf
  except ImportError as e:
    raise ImportError("The data pipeline needs TensorFlow, seqio and TFDS: "
                      "pip install -e '.[data]'") from e
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):
    pass  # already initialised, or no such device type
  return tf


def import_seqio():
  """seqio, after `import_tf`."""
  import_tf()
  import seqio

  return seqio


def import_tfds():
  """tensorflow_datasets, after `import_tf`."""
  import_tf()
  import tensorflow_datasets as tfds

  return tfds
