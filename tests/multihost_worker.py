"""One process of the two-process CPU run in test_multihost.py (not a test itself).

    python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR DATA_DIR

Each process has 2 CPU devices, joins the others through jax.distributed (gloo
collectives), reads its own shard of the batches, trains, and writes its part of the
Orbax checkpoints.
"""

import os
import sys

MODEL = dict(d_model=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1, max_len=16,
             dropout_rate=0.1, self_attention="dense+dot")


def train_config(data_dir):
  from synthesizer_jax.config import TrainConfig

  return TrainConfig(task="fake_lm", data_dir=data_dir, batch_size=8,
                     targets_length=16, num_train_steps=4, log_every=1,
                     checkpoint_every=3, eval_every=100, eval_batches=0,
                     predict_batches=0, sample_prompt="", learning_rate=1e-2,
                     warmup_steps=1)


def main(pid, nproc, port, workdir, data_dir):
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  os.environ["JAX_PLATFORMS"] = "cpu"
  from synthesizer_jax import sharding as shd

  assert shd.maybe_initialize_distributed(f"localhost:{port}", nproc, pid)
  import jax

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import fake_data

  from synthesizer_jax import loop
  from synthesizer_jax.config import RunConfig

  assert jax.process_count() == nproc and jax.device_count() == 2 * nproc
  # DCN axis across the processes (hybrid mesh), FSDP within each.
  mesh = shd.MeshConfig(data=1, fsdp=2, dcn_data=nproc, rules="fsdp")
  loop.train_and_evaluate(RunConfig.build(MODEL, train_config(data_dir), mesh), workdir,
                          data=fake_data, progress=False)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
