"""Abstractive summarisation (paper section 4.3) on the offline corpus (Debian long
description -> one-line synopsis): EncoderDecoder, small.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_summarize
    python train.py --config configs/offline_summarize.py --workdir workdirs/offline_summarize

Metric: ROUGE-1/2/L of beam-search decodes (4 beams, alpha 0.6).

Expected result: not yet measured at this config (3,000 steps at length 256 is over an
hour on the 2-core CPU); docs/results_early.md has every kind at a smaller budget (issue 17).
"""

from configs import base


def get_config():
  return base.experiment(
      "offline_summarize", size="small", max_len=256, steps=3000, warmup=300, every=1000,
      batch_size=16, inputs_length=256, targets_length=32, learning_rate=1e-3,
      label_smoothing=0.1)
