"""`load_checkpoint`: a train.py checkpoint as (model, variables, config) for notebooks and
scripts, checked against the model its saved config describes.

It sits above the shape registry (`shapes.py`), which builds the model; `checkpointing.py`
below it only reads arrays and JSON.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from synthesizer_jax import shapes
from synthesizer_jax.checkpointing import restore_source
from synthesizer_jax.config import ModelConfig
from synthesizer_jax.finetune import flat_paths


def load_checkpoint(workdir_or_path: str, step: int | None = None):
  """(model, variables, config) of a train.py checkpoint, on whatever devices exist.

  `config` is the saved run config dict (model, train, task, vocab_path, ...).
  """
  state, config, _ = restore_source(workdir_or_path, step)
  model_cfg = ModelConfig.from_saved(config["model"])
  shape = shapes.get(config["shape"])
  model = shape.build(model_cfg, config.get("num_classes"))
  variables = {"params": state["params"], **(state.get("constants") or {})}
  check_matches_config(model, shape, variables, workdir_or_path)
  return model, variables, config


def check_matches_config(model, shape, variables, source: str) -> None:
  """ValueError when the saved arrays are not those of the model the saved config describes
  (an edited config.json, or arrays from another run): both sides of each difference named."""
  lengths = {k: min(8, model.cfg.max_len) for k in shape.task_features}
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), *shape.dummy_inputs(lengths)))
  want = {k: tuple(v.shape) for k, v in flat_paths(nn.meta.unbox(expected)).items()}
  have = {k: tuple(np.shape(v)) for k, v in flat_paths(variables).items()}
  diffs = [f"{k}: {have.get(k, 'absent')} in the checkpoint, {want.get(k, 'absent')} for the "
           "model its config describes" for k in sorted(set(want) | set(have))
           if want.get(k) != have.get(k)]
  if diffs:
    raise ValueError(
        f"{source}: the saved parameters do not match the saved model config "
        f"(self_attention={model.cfg.self_attention!r}, d_model={model.cfg.d_model}, ...); "
        f"{len(diffs)} differences, first: " + "; ".join(diffs[:4]) + ". Was config.json "
        "edited, or the arrays copied from another run? Load the checkpoint with the config "
        "it was saved with.")
