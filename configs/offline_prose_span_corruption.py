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

Learning rate 6e-3 (rsqrt after 100 warmup steps) and no dropout (as T5.1.1 pre-trains): the
best of a pilot of 1e-3 to 1.6e-2 on dot (docs/results.md, "Pre-training, then
fine-tuning"). The rsqrt rate does not depend on num_train_steps, so a run continued with a
larger --config.num_train_steps in the same workdir equals one run to that step.

Expected result (dot, --config.model.self_attention=dot, seeds 0-2, measured 2026-12-07 on
one core of the 2-core CPU machine, about 0.26 s a step): validation loss 4.39 at 2,000
steps (seed 0), 4.213 ± 0.036 at 4,000 and 4.135 ± 0.033 at 6,000 (the context-free
predictor: 5.68). Most of that is the targets' structure (sentinels and EOS, 93-97% right
from step 1,000 on); the masked pieces alone are the bar of the experiment
(docs/results.md): at most 5.56 nats, met by every seed only at these 6,000 steps (5.436,
5.460 and 5.502; at 4,000: 5.555, 5.539 and 5.632).
"""

from configs import base


def get_config():
  return base.experiment(
      "offline_prose_span_corruption", size="small", max_len=128, steps=6000, warmup=100,
      every=500, batch_size=16, inputs_length=128, targets_length=32, learning_rate=6e-3,
      predict_batches=0, model={"dropout_rate": 0.0})
