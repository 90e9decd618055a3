"""Mixtures of tasks for multi-task fine-tuning (T5's recipe): which tasks, and at which rate.

    mixtures.rates("offline_t5_finetune", "data")   # {task: rate}, T5's rate_num_examples
    mixtures.seqio_mixture("offline_t5_finetune", "data")   # the seqio.Mixture (TF)
    mixtures.task_info("offline_t5_finetune", "data")       # what a run on it trains

A member's rate is its training split's example count, capped at `cap` (T5's
"examples-proportional mixing" with an artificial dataset size limit K: a big task does not
drown the small ones), read from the prepared `meta.json` of its corpus, so the rates are
known without TensorFlow. Every member shares one vocabulary (a `registry.FAMILIES`
family) and one model shape with text outputs (so one model trains on all of them); a
mixture of several vocabularies or shapes, or of classifiers, is refused.
"""

from __future__ import annotations

import dataclasses
import os

from synthesizer_jax.data import registry
from synthesizer_jax.data.registry import DataError


@dataclasses.dataclass(frozen=True)
class Mixture:
  """Member task names and T5's cap K on each member's example count."""

  tasks: tuple[str, ...]
  cap: int


MIXTURES = {
    # 3,617 reviews, 38,400 and 47,298 pairs -> rates 3,617 : 16,384 : 16,384 (10/45/45%).
    "offline_t5_finetune": Mixture(
        ("offline_classify_t5", "offline_translate_en_de_t5", "offline_summarize_t5"),
        cap=16_384),
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


def num_examples(task: str, data_dir: str, split: str = "train") -> int:
  """Examples in a prepared split of an offline task (its corpus's meta.json)."""
  try:
    return int(registry.read_meta(task, data_dir)["splits"][split]["examples"])
  except (OSError, KeyError) as e:
    raise DataError(f"Task {task!r} is not prepared in {data_dir} ({e}). Build it with:\n  "
                    + registry.PREPARE_CMD.format(data_dir=data_dir, task=task)) from None


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
