"""Fine-tuning on GLUE text-to-text from the C4 pre-training (the paper's section 4.4, T5's
recipe): mixture "glue_t5" (every GLUE training task less WNLI, as T5's
glue_v002_proportional, members sampled in proportion to their training examples capped at
K = 2^19; synthesizer_jax/data/mixtures.py) in the c4_t5 vocabulary, starting from the whole
model of a configs/c4_span_corruption.py run (embedding, encoder and decoder: one vocabulary)
with a fresh optimizer and schedule. The model fields are that config's; a mismatch stops
with the offending parameter and both shapes.

    # the members' caches, in the data dir where c4_span_corruption's vocabulary was prepared
    TFDS_DATA_DIR=gs://BUCKET/tfds python -m synthesizer_jax.data.cache --task glue_t5 \
        --data_dir /data --out_dir gs://BUCKET/data
    gcloud compute tpus tpu-vm ssh $TPU --worker=all --command="cd synthesizer_jax && \
      python train.py --config configs/glue_t5_finetune.py \
        --workdir gs://BUCKET/glue_t5_dense --coordinator_address=auto \
        --config.data_dir=gs://BUCKET/data --config.model.self_attention=dense \
        --config.init_from=gs://BUCKET/c4_span_corruption_dense"

The attention kind (`model.self_attention`) must be the pre-trained run's. Schedule as T5's
fine-tuning: Adafactor at a constant 0.001, 2^18 = 262,144 steps, 128 packed rows of 512
input tokens (targets 64: several label words per packed row), dropout 0.1, greedy decoding.
Metrics: each member's GLUE metric on its validation split (accuracy, F1, Matthews
correlation; STS-B as 26 buckets of 0.2). A mixture as the run's task, and its per-member
evaluation, come with train.py's mixture support (issue 29).

Expected result: not measured (no TPU slice or TFDS GLUE here; the mixture's rates and
draws are tested under tfds.testing.mock_data, tests/test_glue_t5_mixtures.py); compare
with the paper's Table 5.
"""

from configs import c4_span_corruption


def get_config(task: str = "glue_t5"):
  c = c4_span_corruption.get_config()
  c.task = task
  c.init_from = "gs://BUCKET/c4_span_corruption_dense"  # the pre-training run's workdir
  c.init_params = ()  # every parameter both have: embedding, encoder, decoder
  c.num_train_steps = 2**18
  c.warmup_steps = 0
  c.decay = "constant"
  c.learning_rate = 1e-3
  c.targets_length = 64
  c.eval_every = c.checkpoint_every = 5000
  c.predict_batches = 50
  c.decode_method = "greedy"  # label words (T5 decodes greedily for GLUE)
  return c
