"""CNN/DailyMail summarisation (paper section 4.3, Table 4): EncoderDecoder, base size.

    python train.py --config configs/cnn_dailymail.py --workdir workdirs/cnndm \
        --config.model.self_attention=dense+dot

Needs TFDS cnn_dailymail under <data_dir>/tfds and `python -m synthesizer_jax.data.prepare
--data_dir data --tasks cnn_dailymail`. Metric: ROUGE-1/2/L.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "cnn_dailymail"
  c.batch_size = 128
  c.inputs_length = 512
  c.targets_length = 128
  c.num_train_steps = 100_000
  c.learning_rate = 1e-3
  c.warmup_steps = 4000
  c.label_smoothing = 0.1
  c.eval_every = 5000
  c.checkpoint_every = 5000
  c.model.d_model = 512
  c.model.num_heads = 8
  c.model.head_dim = 64
  c.model.mlp_dim = 2048
  c.model.num_layers = 6
  c.model.max_len = 512
  c.model.self_attention = "dense"
  return c
