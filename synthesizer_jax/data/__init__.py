"""Data for synthesizer_jax: seqio tasks, offline corpora, SentencePiece vocabularies.

    from synthesizer_jax import data
    data.prepare("data", ["offline_lm"])          # or: python -m synthesizer_jax.data.prepare
    info = data.task_info("offline_lm")           # shape, metric, vocab_path, labels
    batches = data.get_dataset("offline_lm", "train", feature_lengths={"targets": 128},
                               batch_size=16, pack=True, shuffle=True, seed=0, data_dir="data")
    next(batches)["decoder_input_tokens"].shape   # (16, 128)

    data.cache_task("offline_lm", "data")         # or: python -m synthesizer_jax.data.cache
    batches = data.get_cached_dataset(...)        # same arguments and batches, no TensorFlow

A mixture (`MIXTURES`, `data.mixtures`) is a name for training too: `task_info`,
`get_vocabulary`, `get_dataset`, `get_cached_dataset`, `has_cache` and `prepare` take it
(`task_info(mixture).members` names its tasks, each evaluated on its own).

Importing this package does not import TensorFlow; `get_dataset`, `cache_task` and
`seqio_task` do, on first use (CPU only), and so does `get_vocabulary` where seqio is
installed. `get_cached_dataset` (Grain over the ArrayRecord cache) never does.
"""

from synthesizer_jax.data import mixtures as _mixtures
from synthesizer_jax.data import registry as _registry
from synthesizer_jax.data.registry import (
    ENV_DATA_DIR,
    OFFLINE_TASKS,
    TASKS,
    DataError,
    TaskInfo,
    default_data_dir,
)

MIXTURES: tuple[str, ...] = tuple(sorted(_mixtures.MIXTURES))


def task_info(name, data_dir=None):
  """See `synthesizer_jax.data.registry.task_info` (a task) and
  `synthesizer_jax.data.mixtures.task_info` (a mixture)."""
  if name in _mixtures.MIXTURES:
    return _mixtures.task_info(name, data_dir)
  return _registry.task_info(name, data_dir)


def get_dataset(*args, **kwargs):
  """See `synthesizer_jax.data.pipeline.get_dataset` (a task or a mixture, through seqio)."""
  from synthesizer_jax.data.pipeline import get_dataset as impl

  return impl(*args, **kwargs)


def get_cached_dataset(*args, **kwargs):
  """See `synthesizer_jax.data.grain_pipeline.get_dataset` (a task) and
  `synthesizer_jax.data.grain_mixture.get_dataset` (a mixture, `data.mixtures`)."""
  from synthesizer_jax.data.mixtures import MIXTURES

  if (args[0] if args else kwargs.get("name")) in MIXTURES:
    from synthesizer_jax.data.grain_mixture import get_dataset as impl
  else:
    from synthesizer_jax.data.grain_pipeline import get_dataset as impl

  return impl(*args, **kwargs)


def has_cache(name, data_dir=None, split="train"):
  """See `synthesizer_jax.data.records.has_cache`."""
  from synthesizer_jax.data.records import has_cache as impl

  return impl(name, data_dir, split)


def cache_task(name, data_dir=None, splits=None, *, out_dir=None, rebuild=False, refresh=False,
               log=print):
  """See `synthesizer_jax.data.cache.cache_task`."""
  from synthesizer_jax.data.cache import cache_task as impl

  return impl(name, data_dir, splits, out_dir=out_dir, rebuild=rebuild, refresh=refresh, log=log)


def check_data_dir(name, data_dir, pipeline):
  """See `synthesizer_jax.data.records.check_bucket_data` (run set-up calls it)."""
  from synthesizer_jax.data.records import check_bucket_data as impl

  return impl(name, data_dir, pipeline)


def get_vocabulary(name, data_dir=None):
  """See `synthesizer_jax.data.vocab.get_vocabulary` (a mixture: its members' one vocabulary)."""
  from synthesizer_jax.data.vocab import get_vocabulary as impl

  if name in _mixtures.MIXTURES:
    name = _mixtures.mixture(name).tasks[0]
  return impl(name, data_dir)


def prepare(data_dir=None, tasks=None, progress=True, apt_update=False, cache=False,
            vocab_models=None):
  """See `synthesizer_jax.data.build.prepare`."""
  from synthesizer_jax.data.build import prepare as impl

  return impl(data_dir, tasks, progress, apt_update, cache, vocab_models)


def seqio_task(name, data_dir=None):
  """See `synthesizer_jax.data.tasks.seqio_task`."""
  from synthesizer_jax.data.tasks import seqio_task as impl

  return impl(name, data_dir)


__all__ = ["ENV_DATA_DIR", "MIXTURES", "OFFLINE_TASKS", "TASKS", "DataError", "TaskInfo",
           "cache_task", "check_data_dir", "default_data_dir", "get_cached_dataset",
           "get_dataset", "get_vocabulary", "has_cache", "prepare", "seqio_task", "task_info"]
