"""Train (and evaluate) a Synthesizer model from an experiment config.

    python train.py --config configs/offline_lm.py --workdir /tmp/sj_lm \
        --config.model.self_attention=random --config.num_train_steps=2000

The workdir (a local directory or a bucket URL, gs://BUCKET/run) receives Orbax checkpoints,
config.json, metrics.jsonl, TensorBoard events (tb/), eval_results.json and loss_curve.png;
running the same command again resumes from the latest checkpoint. SIGTERM / SIGINT save the
current step and exit with 128 + the signal number (docs/reliability.md lists the faults
handled). Multi-process (multi-host) runs: pass --coordinator_address, --num_processes and
--process_id (or set SJ_COORDINATOR / SJ_NUM_PROCESSES / SJ_PROCESS_ID;
--coordinator_address=auto on TPU pods and SLURM). See docs/training.md.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the data pipeline's TensorFlow: errors only

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and results")
_PREPARE = flags.DEFINE_bool("prepare", False, "build the task's data first (idempotent)")
_COORD = flags.DEFINE_string("coordinator_address", "", "host:port of process 0, or 'auto'")
_NPROC = flags.DEFINE_integer("num_processes", 0, "number of processes (multi-host)")
_PID = flags.DEFINE_integer("process_id", -1, "this process's index (multi-host)")
_STOP = flags.DEFINE_integer("stop_after", None, "stop after this many steps (with a checkpoint)")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout", 100, "multi-host: seconds after which a "
                                  "silent process counts as lost and the others stop")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save step at INFO
  from synthesizer_jax import config, paths, sharding

  try:  # a workdir that is a file, or in a bucket that does not exist: one line, nothing set up
    paths.check_dir(_WORKDIR.value)
  except (NotADirectoryError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  run_cfg = config.parse_config(_CONFIG.value.to_dict())  # every field checked first
  # Before anything touches the devices.
  sharding.maybe_initialize_distributed(_COORD.value, _NPROC.value, _PID.value,
                                        heartbeat_timeout=_HEARTBEAT.value)
  from synthesizer_jax import loop

  if _PREPARE.value:
    from synthesizer_jax import data

    data.prepare(run_cfg.train.data_dir, [run_cfg.train.task])
  return exit_code(lambda: loop.train_and_evaluate(run_cfg, _WORKDIR.value,
                                                   stop_after=_STOP.value))


def exit_code(train) -> int:
  """The process's exit code for `train()` (train_and_evaluate): 0 when done; 128 + the signal
  number when preempted (the step is saved; non-zero so that schedulers rerun the job). A run
  that failed where background threads would hold the process (a lost process, a full disk, a
  store that is gone) prints the error and ends the process at once: 75 and 74 (EX_IOERR)."""
  from synthesizer_jax.agreement import LostProcessError
  from synthesizer_jax.checkpointing import StoreError
  from synthesizer_jax.diskfull import DiskFullError

  try:
    result = train()
  except LostProcessError as e:  # JAX's shutdown would wait in a barrier for the lost process
    _exit_now(e, 75)
  except (DiskFullError, StoreError) as e:
    # The failed save's Orbax commit threads wait (up to 300 s) for signals it never sends.
    _exit_now(e, 74)
  return result.get("exit_code", 0)


def _exit_now(error: BaseException, code: int):
  print(f"error: {error}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(code)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  sys.exit(app.run(main))
