"""Self-pre-training for classification: a DecoderLM on the offline_classify reviews' own
text (task "offline_classify_text": the classifier's splits without labels, in its
4,000-piece vocabulary), whose layers then start an EncoderClassifier
(configs/offline_classify_selftrained.py). Same model fields as configs/offline_classify.py.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_classify_text
    python train.py --config configs/offline_classify_text.py --workdir workdirs/reviews_lm \
        --config.model.self_attention=dot

Only the training split's reviews are read for training (1.43 MB, about 5 epochs in 1,000
steps); validation perplexity is on the classifier's validation reviews.

Expected result (measured 2026-12-04, 2-core CPU VM, 4 min on both cores, 8 min pinned to
one): validation perplexity 127.5 (seed 0; 126.6-127.8 over 3 seeds) against a unigram
642.9 on the same tokens, 1.92 bits per byte (unigram 2.56); 3,000 steps reach 98.8. The
classifier it starts: configs/offline_classify_selftrained.py.
"""

from configs import base


def get_config():
  return base.experiment(
      "offline_classify_text", size="small", max_len=128, steps=1000, warmup=100, every=500,
      model=dict(dropout_rate=0.1), batch_size=16, targets_length=128, learning_rate=1.6e-2,
      decay="cosine", log_every=25, eval_batches=8)
