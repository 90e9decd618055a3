"""SuperGLUE (paper section 4.4, Table 6), text-to-text with an EncoderDecoder (T5 style:
the target is the label name, scored by accuracy / F1 / MCC of the decoded strings).

    python train.py --config configs/superglue.py --workdir workdirs/boolq \
        --config.task=super_glue_boolq_t2t --config.model.self_attention=dense+dot \
        --config.init_from=workdirs/pretrain     # optional pre-trained encoder-decoder

Any GLUE task works too (--config.task=glue_mnli_t2t). Needs TFDS super_glue under
<data_dir>/tfds and `python -m synthesizer_jax.data.prepare --data_dir data --tasks TASK`.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "super_glue_boolq_t2t"
  c.batch_size = 64
  c.inputs_length = 256
  c.targets_length = 8
  c.pack = False
  c.num_train_steps = 20_000
  c.learning_rate = 1e-4
  c.warmup_steps = 1000
  c.decay = "linear"
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.predict_batches = 50
  c.model.d_model = 512
  c.model.num_heads = 8
  c.model.head_dim = 64
  c.model.mlp_dim = 2048
  c.model.num_layers = 6
  c.model.max_len = 256
  c.model.self_attention = "dense"
  return c
