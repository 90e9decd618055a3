"""Evaluate a train.py checkpoint: task metrics on a split, written as JSON in the workdir.

    python eval.py --workdir workdirs/offline_lm                  # latest step, validation
    python eval.py --workdir workdirs/offline_translate --split test --step 3000 \
        --predict_batches 20

LM tasks: loss, perplexity, token accuracy (+ a greedy sample); translation: + sacreBLEU;
summarisation: + ROUGE-1/2/L; classification: accuracy, F1, Matthews correlation.
Results go to <workdir>/eval_<split>_<step>.json. The checkpoint restores onto whatever
devices this machine has.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the data pipeline's TensorFlow: errors only

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "workdir of a train.py run")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
_SPLIT = flags.DEFINE_string("split", "validation", "dataset split")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "data directory (default: the run's)")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", None, "teacher-forced batches")
_PREDICT_BATCHES = flags.DEFINE_integer("predict_batches", None, "batches to decode and score")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  from synthesizer_jax import evaluation

  overrides = {k: v for k, v in (("data_dir", _DATA_DIR.value),
                                 ("eval_batches", _EVAL_BATCHES.value),
                                 ("predict_batches", _PREDICT_BATCHES.value)) if v is not None}
  results = evaluation.evaluate_checkpoint(_WORKDIR.value, step=_STEP.value,
                                           split=_SPLIT.value, overrides=overrides)
  print(json.dumps(results, indent=2))
  return 0


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  sys.exit(app.run(main))
