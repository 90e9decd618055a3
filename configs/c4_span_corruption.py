"""Pre-training at T5-base size on C4 (the paper's section 4.4, T5's recipe): an
EncoderDecoder learns T5's span corruption (15% of the pieces in spans of mean length 3,
each span a sentinel counted down from the end of the vocabulary) on TFDS c4/en:3.1.0, task
"c4_span_corruption", in the c4_t5 vocabulary (32k SentencePiece + 100 sentinel ids) that
its fine-tuning mixtures share (configs/glue_t5_finetune.py, configs/super_glue_t5_finetune.py).

Data, once (docs/data.md, "C4 and LM1B on Dataflow"; T5's own 32k model, or leave
--vocab_model out to train one on C4's text):

    TFDS_DATA_DIR=gs://BUCKET/tfds python -m synthesizer_jax.data.prepare --data_dir /data \
        --tasks c4_span_corruption --vocab_model \
        c4_t5=gs://t5-data/vocabs/cc_all.32000/sentencepiece.model
    TFDS_DATA_DIR=gs://BUCKET/tfds python -m synthesizer_jax.data.beam_cache \
        --task c4_span_corruption --data_dir /data --out_dir gs://BUCKET/data \
        --runner DataflowRunner --project P --region R --temp_location gs://BUCKET/tmp

Training, on every host of a TPU slice (e.g. v4-32; docs/scaling.md):

    gcloud compute tpus tpu-vm ssh $TPU --worker=all --command="cd synthesizer_jax && \
      python train.py --config configs/c4_span_corruption.py \
        --workdir gs://BUCKET/c4_span_corruption_dense --coordinator_address=auto \
        --config.data_dir=gs://BUCKET/data --config.model.self_attention=dense"

The attention kind is `model.self_attention` (dense, random, factorized_random, dot, mixtures
such as dense+dot; cross-attention stays dot). Model: T5-base, d_model 768, 12 heads of 64,
MLP 3072 (ReLU), 12 encoder + 12 decoder layers, tied embeddings: 222.9M parameters with dot
attention and T5's vocabulary (32,100 ids; T5-base: 220M), 218.4M with dense (checked by
tests/test_t5_configs.py). Lengths: 568 raw pieces corrupt to 512 inputs (EOS included) and at
most 114 targets (T5's random_spans_helper), packed, 128 rows a batch (65,536 input tokens, as
T5). Schedule as T5's pre-training: Adafactor, 2^19 = 524,288 steps, learning rate 0.01 for
10,000 steps (warmed up linearly here, constant in T5) then 0.01 * sqrt(10,000 / step), no
weight decay, no global-norm clipping (Adafactor clips its updates at 1). bfloat16 compute;
parameters, optimizer state and batch sharded over every chip (mesh fsdp=-1, rules fsdp).
Metric: teacher-forced loss, perplexity and token accuracy of the targets (the spans).

Expected result: not measured (no TPU slice and no copy of C4 here; the task is tested on
generated documents served through tfds.testing.mock_data, tests/test_c4_recipe.py).
"""

from configs import base

INPUTS_LENGTH = 512
TARGETS_LENGTH = 114  # span_corruption.lengths_for(512)[1]

# T5-base (Raffel et al. 2020, section 3.1.2): the model fields fine-tuning must repeat.
T5_BASE = dict(d_model=768, num_heads=12, head_dim=64, mlp_dim=3072, num_layers=12,
               dropout_rate=0.1, mlp_activation="relu", tie_embeddings=True, dtype="bfloat16")


def get_config():
  c = base.experiment(
      "c4_span_corruption", size="base", max_len=INPUTS_LENGTH, model=T5_BASE, steps=2**19,
      warmup=10_000, every=10_000, batch_size=128, inputs_length=INPUTS_LENGTH,
      targets_length=TARGETS_LENGTH, pack=True, optimizer="adafactor", learning_rate=0.01,
      decay="rsqrt", weight_decay=0.0, clip_norm=0.0, eval_batches=20, predict_batches=0,
      log_every=100)
  c.mesh.data, c.mesh.fsdp = 1, -1  # parameters and batch over every chip of the slice
  return c
