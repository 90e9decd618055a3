"""SuperGLUE (paper section 4.4, Table 6), text-to-text with an EncoderDecoder (T5 style:
the target is the label name, scored by accuracy / F1 / MCC of the decoded strings).

    python train.py --config configs/superglue.py --workdir workdirs/boolq \
        --config.task=super_glue_boolq_t2t --config.model.self_attention=dense+dot \
        --config.init_from=workdirs/pretrain     # optional pre-trained encoder-decoder

Any GLUE task works too (--config.task=glue_mnli_t2t). Needs TFDS super_glue under
<data_dir>/tfds and `python -m synthesizer_jax.data.prepare --data_dir data --tasks TASK`.

Expected result: not measured here (TFDS super_glue cannot be downloaded on the
project's machines); compare with Table 6 of the paper.
"""

from configs import base


def get_config():
  return base.experiment(
      "super_glue_boolq_t2t", size="base", max_len=256, steps=20_000, warmup=1000, every=1000,
      batch_size=64, inputs_length=256, targets_length=8, pack=False, learning_rate=1e-4,
      decay="linear", predict_batches=50)
