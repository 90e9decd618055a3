"""Fine-tuning on SuperGLUE text-to-text from the C4 pre-training (the paper's section 4.4,
T5's recipe): mixture "super_glue_t5" (BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC, as
T5's super_glue_v102_proportional, at T5's capped example-proportional rates) in the c4_t5
vocabulary, from the whole model of a configs/c4_span_corruption.py run, with a fresh
optimizer. Everything else is configs/glue_t5_finetune.py's.

    TFDS_DATA_DIR=gs://BUCKET/tfds python -m synthesizer_jax.data.cache --task super_glue_t5 \
        --data_dir /data --out_dir gs://BUCKET/data
    gcloud compute tpus tpu-vm ssh $TPU --worker=all --command="cd synthesizer_jax && \
      python train.py --config configs/super_glue_t5_finetune.py \
        --workdir gs://BUCKET/super_glue_t5_dense --coordinator_address=auto \
        --config.data_dir=gs://BUCKET/data --config.model.self_attention=dense \
        --config.init_from=gs://BUCKET/c4_span_corruption_dense"

Targets are 64 tokens a packed row (ReCoRD's entities are the longest). Metrics: each
member's metric on its validation split (accuracy; CB and MultiRC also F1; ReCoRD exact match
of the entity).

Expected result: not measured (no TPU slice or TFDS SuperGLUE here); compare with the
paper's Table 6.
"""

from configs import glue_t5_finetune


def get_config():
  return glue_t5_finetune.get_config("super_glue_t5")
