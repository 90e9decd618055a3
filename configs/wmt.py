"""WMT'14 En-De translation (paper section 4.1, Table 2): EncoderDecoder, base size.

    python train.py --config configs/wmt.py --workdir workdirs/wmt_ende \
        --config.model.self_attention=random      # dense, dot, random+dot, ...

En-Fr: --config.task=wmt14_enfr. Needs TFDS wmt14_translate under <data_dir>/tfds and
`python -m synthesizer_jax.data.prepare --data_dir data --tasks wmt14_ende`. Metric:
sacreBLEU of beam search (4 beams, length penalty 0.6, as the paper).

Expected result: not measured here (TFDS wmt14_translate cannot be downloaded on the
project's machines, and the base size needs an accelerator); compare with Table 2 of the paper.
"""

from configs import base


def get_config():
  return base.experiment(
      "wmt14_ende", size="base", max_len=256, steps=100_000, warmup=4000, every=5000,
      batch_size=256, inputs_length=256, targets_length=256, learning_rate=1e-3,
      decay="rsqrt", label_smoothing=0.1)
