"""GLUE (paper section 4.4, Table 5) with an EncoderClassifier; one task per run.

    python train.py --config configs/glue.py --workdir workdirs/glue_sst2 \
        --config.task=glue_sst2 --config.model.self_attention=dense+dot
    # text-to-text with an EncoderDecoder instead: configs/superglue.py --config.task=glue_sst2_t2t

Fine-tune from a pre-trained run with --config.init_from=WORKDIR
--config.init_params='("embed","encoder")'. Needs TFDS glue under <data_dir>/tfds and
`python -m synthesizer_jax.data.prepare --data_dir data --tasks glue_sst2`. Metrics:
accuracy, F1, Matthews correlation (STS-B: bucketed to 26 classes as T5 does).

Expected result: not measured here (TFDS glue cannot be downloaded on the project's
machines); compare with Table 5 of the paper.
"""

from configs import base


def get_config():
  return base.experiment(
      "glue_sst2", size="base", max_len=128, steps=20_000, warmup=1000, every=1000,
      batch_size=64, inputs_length=128, pack=False, learning_rate=1e-4, decay="linear",
      predict_batches=50)
