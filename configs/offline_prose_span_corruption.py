"""Pre-training (the paper's section 4.4, T5's recipe): an EncoderDecoder learns T5's span
corruption (15% of the pieces in spans of mean length 3, each span a sentinel counted down
from the end of the vocabulary) on the offline prose (KJV and World English Bibles, Jane
Austen; task "offline_prose_span_corruption"), in the offline_t5 vocabulary: SentencePiece
with 100 extra ids for the sentinels, the vocabulary its fine-tuning tasks share.

    python -m synthesizer_jax.data.prepare --data_dir data \
        --tasks offline_prose_span_corruption --cache
    python train.py --config configs/offline_prose_span_corruption.py \
        --workdir workdirs/prose_span_corruption --config.model.self_attention=dense

Documents are cut into pieces of 141 tokens, which corrupt to 128 inputs (EOS included)
and at most 29 targets: a full piece fills inputs_length. From the cache (Grain) the
pieces are corrupted as they are read, seeded by (seed, example index), so a resumed run
reads the uninterrupted run's batches. Metric: teacher-forced loss, perplexity and token
accuracy of the targets (the spans).

Expected result: not measured yet (the offline corpus is not prepared on the machine this
was written on; its test trains the config small on generated prose,
tests/test_span_corruption_task.py).
"""

from configs import base


def get_config():
  return base.experiment(
      "offline_prose_span_corruption", size="small", max_len=128, steps=3000, warmup=300,
      every=1000, batch_size=16, inputs_length=128, targets_length=32, learning_rate=1e-3,
      predict_batches=0)
