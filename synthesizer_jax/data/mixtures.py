"""Mixtures of tasks for multi-task fine-tuning (T5's recipe): which tasks, and at which rate.

    mixtures.rates("offline_t5_finetune", "data")   # {task: rate}, T5's rate_num_examples
    mixtures.seqio_mixture("offline_t5_finetune", "data")   # the seqio.Mixture (TF)
    mixtures.task_info("offline_t5_finetune", "data")       # what a run on it trains

A member's rate is its training split's example count, capped at `cap` (T5's
"examples-proportional mixing" with an artificial data set size limit K, Raffel et al.
2020, section 3.5.2: a big task does not drown the small ones). The count comes from where
the member's data is described, one counting function per source (`COUNTERS`): an offline
or local task's prepared `meta.json`, a TFDS task's dataset info (the split sizes TFDS
wrote when it built the dataset; no record is read). Neither needs seqio; only the TFDS
count imports TensorFlow (lazily, through `tfenv`). Every member shares one vocabulary (a
`registry.FAMILIES` family) and one model shape with text outputs (so one model trains on
all of them); a mixture of several vocabularies or shapes, or of classifiers, is refused.

The C4 recipe's mixtures (family c4_t5, fine-tuned from c4_span_corruption):
  glue_t5        GLUE's training tasks text-to-text, as T5's glue_v002_proportional
  super_glue_t5  SuperGLUE's, as T5's super_glue_v102_proportional
with K = 2^19 = 524,288, the limit T5 used for its multi-task mixtures (section 3.5.3,
Table 12). No GLUE or SuperGLUE task has that many training examples (MNLI, the largest,
has 392,702), so the rates are the example counts themselves, as in T5's two mixtures
(whose weights are the counts, t5/data/glue_utils.py).
"""

from __future__ import annotations

import dataclasses
import os

from synthesizer_jax.data import benchmarks, registry
from synthesizer_jax.data.registry import DataError


@dataclasses.dataclass(frozen=True)
class Mixture:
  """Member task names and T5's cap K on each member's example count."""

  tasks: tuple[str, ...]
  cap: int


T5_CAP = 2**19  # Raffel et al. 2020, section 3.5.3: "an artificial data set size limit of K=2^19"

MIXTURES = {
    # 3,617 reviews, 38,400 and 47,298 pairs -> rates 3,617 : 16,384 : 16,384 (10/45/45%).
    "offline_t5_finetune": Mixture(
        ("offline_classify_t5", "offline_translate_en_de_t5", "offline_summarize_t5"),
        cap=16_384),
    "glue_t5": Mixture(tuple(f"glue_{t}_t5" for t in benchmarks.T5_GLUE_MIXTURE), cap=T5_CAP),
    "super_glue_t5": Mixture(tuple(f"super_glue_{t}_t5" for t in benchmarks.T5_SUPER_GLUE_MIXTURE),
                             cap=T5_CAP),
}


def mixture(name: str) -> Mixture:
  """The mixture `name`; DataError listing the known ones."""
  if name not in MIXTURES:
    raise DataError(f"Unknown mixture {name!r}. Known mixtures: {', '.join(sorted(MIXTURES))}.")
  m = MIXTURES[name]
  families = {registry.spec(t).family for t in m.tasks}
  if len(families) != 1:
    raise DataError(f"Mixture {name!r} mixes the vocabularies {sorted(families)}; its tasks "
                    "must share one (a registry.FAMILIES family)")
  layouts = {registry.layout(t).name for t in m.tasks}
  labelled = [t for t in m.tasks if registry.layout(t).labelled]
  if len(layouts) != 1 or labelled:
    what = (f"mixes the model shapes {sorted(layouts)}" if len(layouts) != 1 else
            f"has classifier members {labelled} (each would need its own class head)")
    raise DataError(f"Mixture {name!r} {what}; one model trains on every member, so they must "
                    "share one shape with text outputs: use text-to-text tasks (the *_t5 or "
                    "*_t2t ones)")
  return m


def task_info(name: str, data_dir: str | None = None) -> registry.TaskInfo:
  """What a run on mixture `name` trains: its members' shape, features and vocabulary (one
  of each), with `members` naming them and metric "mixture" (no metric of its own: each
  member is evaluated on its own split, by its own metric)."""
  m = mixture(name)
  first = registry.task_info(m.tasks[0], data_dir)
  return dataclasses.replace(
      first, name=name, metric="mixture", label_names=(), members=m.tasks,
      description=f"{', '.join(m.tasks)} at T5's rates (examples, capped at {m.cap:,})")


def expand(names) -> list[str]:
  """`names` with each mixture replaced by its member tasks (the cache commands take both)."""
  return [t for n in names for t in (mixture(n).tasks if n in MIXTURES else (n,))]


def prepared_examples(task: str, data_dir: str, split: str = "train") -> int:
  """Examples in a prepared split of an offline or local task (its corpus's meta.json)."""
  try:
    return int(registry.read_meta(task, data_dir)["splits"][split]["examples"])
  except (OSError, KeyError) as e:
    raise DataError(f"Task {task!r} is not prepared in {data_dir} ({e}). Build it with:\n  "
                    + registry.PREPARE_CMD.format(data_dir=data_dir, task=task)) from None


def tfds_examples(task: str, data_dir: str, split: str = "train") -> int:
  """Examples in a split of a TFDS task, from its dataset info under `registry.tfds_dir`
  (the `dataset_info.json` TFDS writes when it builds a dataset; a bucket works)."""
  from synthesizer_jax.data.tfenv import import_tfds

  s = registry.spec(task)
  tfds_split = dict(s.split_map).get(split)
  where = registry.tfds_dir(data_dir)
  if tfds_split is None:
    raise DataError(f"Task {task!r} has no {split!r} split (it has {list(dict(s.split_map))}).")
  try:
    count = import_tfds().builder(s.tfds_name, data_dir=where).info.splits[tfds_split].num_examples
  except Exception as e:  # noqa: BLE001 - TFDS raises several types for a dataset not built
    count, why = 0, f"{type(e).__name__}: {e}"
  else:
    why = "its dataset info records no examples there"
  if not count:
    raise DataError(f"Cannot count the {tfds_split!r} examples of TFDS {s.tfds_name} (task "
                    f"{task!r}) in {where} ({why}). Build it on a machine with network access "
                    f"(`tfds build {s.tfds_name.split(':')[0]} --data_dir DIR`) and copy DIR "
                    "there, or set TFDS_DATA_DIR.")
  return int(count)


# How a member's training examples are counted, by its task's source (registry.TaskInfo.source).
COUNTERS = {"offline": prepared_examples, "local": prepared_examples, "tfds": tfds_examples}


def num_examples(task: str, data_dir: str, split: str = "train") -> int:
  """Examples in a split of `task`, counted as its source describes them (`COUNTERS`)."""
  return COUNTERS[registry.spec(task).source](task, data_dir, split)


def rates(name: str, data_dir: str | None = None, cap: int | None = None,
          count=num_examples) -> dict[str, float]:
  """{member: rate}: min(training examples, cap), T5's `rate_num_examples` (unnormalised, as
  seqio takes them); `count(task, data_dir)` counts a member's training examples (default:
  its prepared corpus; the cached path counts its cache)."""
  m = mixture(name)
  data_dir = data_dir or registry.default_data_dir()
  limit = m.cap if cap is None else cap
  return {t: float(min(count(t, data_dir), limit)) for t in m.tasks}


def seqio_mixture(name: str, data_dir: str | None = None):
  """Registers (once) and returns the seqio.Mixture of `name` over `data_dir`."""
  from synthesizer_jax.data import tasks
  from synthesizer_jax.data.tfenv import import_seqio

  seqio = import_seqio()
  data_dir = os.path.abspath(data_dir or registry.default_data_dir())
  reg = tasks.registered_name(name, data_dir)
  if reg in seqio.MixtureRegistry.names():
    return seqio.MixtureRegistry.get(reg)
  members = [(tasks.seqio_task(t, data_dir).name, rate)
             for t, rate in rates(name, data_dir).items()]
  return seqio.MixtureRegistry.add(reg, members)
