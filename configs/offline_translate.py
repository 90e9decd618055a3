"""Machine translation (paper section 4.1) on the offline English -> German corpus
(Debian package descriptions and their DDTP translations): EncoderDecoder, small.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_translate_en_de
    python train.py --config configs/offline_translate.py --workdir workdirs/offline_translate \
        --config.model.self_attention=random

French: --config.task=offline_translate_en_fr. Metric: sacreBLEU of beam-search
decodes (4 beams, alpha 0.6; `--config.decode_method=greedy` for greedy).

Expected result: not yet measured at this config (3,000 steps is about an hour on the
2-core CPU); docs/results_early.md has every kind at a smaller budget (BLEU 3-4, issue 17).
"""

from configs import base


def get_config():
  return base.experiment(
      "offline_translate_en_de", size="small", max_len=128, steps=3000, warmup=300, every=1000,
      batch_size=16, inputs_length=128, targets_length=128, learning_rate=1e-3,
      label_smoothing=0.1)
