"""Language modelling on LM1B (paper section 4.2, Table 3): DecoderLM, base size.

    python train.py --config configs/lm1b.py --workdir workdirs/lm1b \
        --config.model.self_attention=dense    # dot, random, dense+dot, random+dot, ...

Needs the TFDS lm1b data under <data_dir>/tfds (or $TFDS_DATA_DIR) and its vocabulary:
python -m synthesizer_jax.data.prepare --data_dir data --tasks lm1b. Offline stand-in with
the same model: configs/offline_lm.py. Metric: perplexity.

Expected result: not measured here (TFDS lm1b cannot be downloaded on the project's
machines, and the base size needs an accelerator); compare with Table 3 of the paper.
"""

from configs import base


def get_config():
  return base.experiment(
      "lm1b", size="base", max_len=256, steps=100_000, warmup=4000, every=2000,
      batch_size=256, targets_length=256, learning_rate=1e-3, decay="rsqrt")
