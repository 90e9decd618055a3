"""A training process for the reliability tests, run as a subprocess (a real process to signal
or kill). Modes:

  train WORKDIR STEPS WAIT_AT   trains on fake_data; before fetching train batch WAIT_AT it prints
                                "WAITING" and blocks until SIGTERM/SIGINT arrives, so the signal
                                lands mid-run at a known step. Exits with train_and_evaluate's
                                exit code, as train.py does.
  store_gone WORKDIR AT COMMITTED
                                trains 6 steps on a bucket and ends as train.py does
                                (train.exit_code); as train batch AT is fetched, once COMMITTED
                                (a step directory) is committed, it prints "OUTAGE" and waits for
                                a line on stdin while the test stops the store.
  hang_in_save WORKDIR          saves step 1, then starts an async save of step 2 whose commit
                                (Orbax's rename of the temporary directory) never finishes, prints
                                "SAVING" and waits to be killed.
"""

import os
import signal
import sys
import time

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")

import fake_data  # noqa: E402
from test_reliability import MODEL, ONE, train_cfg  # noqa: E402

from synthesizer_jax import loop  # noqa: E402
from synthesizer_jax import run as run_lib  # noqa: E402
from synthesizer_jax.config import RunConfig  # noqa: E402


class WaitForSignal:
  TASKS = fake_data.TASKS
  task_info = staticmethod(fake_data.task_info)
  get_vocabulary = staticmethod(fake_data.get_vocabulary)

  def __init__(self, wait_at):
    self.wait_at = wait_at

  def get_dataset(self, name, split, **kw):
    for i, batch in enumerate(fake_data.get_dataset(name, split, **kw), kw.get("start_batch", 0)):
      if split == "train" and i == self.wait_at:
        sys.stdout.write("WAITING\n")  # one write: the marker and its newline together
        sys.stdout.flush()
        for _ in range(1200):  # the trainer's handler only sets a flag: poll it
          if getattr(signal.getsignal(signal.SIGTERM), "__self__", None).requested:
            break
          time.sleep(0.05)
      yield batch


def train(workdir, steps, wait_at):
  # The GCS emulator sends no generation headers, which OCDBT's manifest needs (gcs_emulator.py).
  cfg = train_cfg(os.path.dirname(workdir), num_train_steps=int(steps), async_checkpoints=True,
                  checkpoint_ocdbt=not workdir.startswith("gs://"))
  result = loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE), workdir,
                                   data=WaitForSignal(int(wait_at)), progress=False)
  return result.get("exit_code", 0)


class AskTheTest:
  """The store, for test_bucket_faults.Outage in a process that does not own the emulator:
  stop() asks the test to stop it and returns once the test answers."""

  def stop(self):
    sys.stdout.write("OUTAGE\n")  # one write: the marker and its newline together
    sys.stdout.flush()
    sys.stdin.readline()


def store_gone(workdir, at, committed):
  import test_bucket_faults as faults

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import train

  faults.quick_gcsfs_backoff()
  cfg = faults.bucket_cfg(workdir, num_train_steps=6)
  data = faults.Outage(AskTheTest(), int(at), committed=committed)
  return train.exit_code(lambda: loop.train_and_evaluate(RunConfig.build(MODEL, cfg, ONE),
                                                         workdir, data=data, progress=False))


def hang_in_save(workdir):
  from orbax.checkpoint._src.path import atomicity

  from synthesizer_jax import checkpointing

  run = run_lib.setup(RunConfig.build(MODEL, train_cfg(os.path.dirname(workdir)), ONE),
                      data=fake_data)
  state = run_lib.initial_state(run, log=lambda *_: None)
  ckpt = checkpointing.Checkpointer(workdir, async_save=True)
  ckpt.save(1, state, run.run_config(), {"step": 1, "train_batches": 1})
  ckpt.wait()

  async def never(*args, **kwargs):
    print("SAVING", flush=True)
    while True:
      time.sleep(1)

  for cls in vars(atomicity).values():
    if isinstance(cls, type) and "finalize" in vars(cls):
      cls.finalize = never
  ckpt.save(2, jax.tree.map(lambda x: x + 1, state), run.run_config(),
            {"step": 2, "train_batches": 2})
  time.sleep(600)


if __name__ == "__main__":
  mode, *args = sys.argv[1:]
  modes = {"train": train, "store_gone": store_gone, "hang_in_save": hang_in_save}
  sys.exit(modes[mode](*args) or 0)
