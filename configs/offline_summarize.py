"""Abstractive summarisation (paper section 4.3) on the offline corpus (Debian long
description -> one-line synopsis): EncoderDecoder, small.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_summarize
    python train.py --config configs/offline_summarize.py --workdir workdirs/offline_summarize

Metric: ROUGE-1/2/L of greedy decodes.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "offline_summarize"
  c.batch_size = 16
  c.inputs_length = 256
  c.targets_length = 32
  c.num_train_steps = 3000
  c.learning_rate = 1e-3
  c.warmup_steps = 300
  c.label_smoothing = 0.1
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.model.d_model = 128
  c.model.num_heads = 4
  c.model.head_dim = 32
  c.model.mlp_dim = 512
  c.model.num_layers = 2
  c.model.max_len = 256
  c.model.self_attention = "dense"
  return c
