"""CNN/DailyMail summarisation (paper section 4.3, Table 4): EncoderDecoder, base size.

    python train.py --config configs/cnn_dailymail.py --workdir workdirs/cnndm \
        --config.model.self_attention=dense+dot

Needs TFDS cnn_dailymail under <data_dir>/tfds and `python -m synthesizer_jax.data.prepare
--data_dir data --tasks cnn_dailymail`. Metric: ROUGE-1/2/L.

Expected result: not measured here (TFDS cnn_dailymail cannot be downloaded on the
project's machines, and the base size needs an accelerator); compare with Table 4 of the paper.
"""

from configs import base


def get_config():
  return base.experiment(
      "cnn_dailymail", size="base", max_len=512, steps=100_000, warmup=4000, every=5000,
      batch_size=128, inputs_length=512, targets_length=128, learning_rate=1e-3,
      label_smoothing=0.1)
