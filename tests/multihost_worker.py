"""One process of the two-process CPU run in test_multihost.py (not a test itself).

    python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR DATA_DIR [OPTIONS]

OPTIONS is a JSON object: "train" (TrainConfig fields to change), "sleep" (seconds each batch
takes to arrive, to leave time for a signal), "heartbeat" (the heartbeat timeout, seconds),
"stop_after" (stop with a checkpoint after this many steps), "signal_at" (a phase of
signal_phases.py: process 1 sends itself SIGTERM there, and every process pauses "pause"
seconds in it).
The exit code is the run's (143 after SIGTERM, 75 when another process is lost).

Each process has 2 CPU devices, joins the others through jax.distributed (gloo
collectives), reads its own shard of the batches, trains, and writes its part of the
Orbax checkpoints.
"""

import os
import sys

MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
             dropout_rate=0.1, self_attention="dense+dot")


def train_config(data_dir, **changes):
  from synthesizer_jax.config import TrainConfig

  return TrainConfig(**{**dict(task="fake_lm", data_dir=data_dir, batch_size=8,
                               targets_length=16, num_train_steps=4, log_every=1,
                               checkpoint_every=3, eval_every=100, eval_batches=0,
                               predict_batches=0, sample_prompt="", learning_rate=1e-2,
                               warmup_steps=1), **changes})


class SlowData:
  """fake_data whose training batches each take `sleep` seconds to arrive."""

  def __init__(self, data, sleep):
    self.data, self.sleep = data, sleep
    self.TASKS, self.task_info = data.TASKS, data.task_info
    self.get_vocabulary = data.get_vocabulary

  def get_dataset(self, *args, **kw):
    import time

    for batch in self.data.get_dataset(*args, **kw):
      time.sleep(self.sleep)
      yield batch


def main(pid, nproc, port, workdir, data_dir, options=None):
  options = options or {}
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=2").strip()
  os.environ["JAX_PLATFORMS"] = "cpu"
  from synthesizer_jax import sharding as shd

  assert shd.maybe_initialize_distributed(f"localhost:{port}", nproc, pid,
                                          heartbeat_timeout=options.get("heartbeat", 100))
  import jax

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import fake_data

  from synthesizer_jax import loop
  from synthesizer_jax.config import RunConfig

  assert jax.process_count() == nproc and jax.device_count() == 2 * nproc
  # DCN axis across the processes (hybrid mesh), FSDP within each.
  mesh = shd.MeshConfig(data=1, fsdp=2, dcn_data=nproc, rules="fsdp")
  data = SlowData(fake_data, options["sleep"]) if options.get("sleep") else fake_data
  cfg = train_config(data_dir, **options.get("train", {}))
  if options.get("signal_at"):
    import signal_phases

    signal_phases.arrange(options["signal_at"], send=pid == 1, pause=options.get("pause", 3))

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import train  # its own ending: a lost process exits at once (75), skipping JAX's shutdown

  code = train.exit_code(lambda: loop.train_and_evaluate(
      RunConfig.build(MODEL, cfg, mesh), workdir, data=data,
      stop_after=options.get("stop_after"), progress=False))
  jax.distributed.shutdown()
  return code


if __name__ == "__main__":
  import json

  opts = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
  sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5],
                opts))
