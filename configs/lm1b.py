"""Language modelling on LM1B (paper section 4.2, Table 3): DecoderLM, base size.

    python train.py --config configs/lm1b.py --workdir workdirs/lm1b \
        --config.model.self_attention=dense    # dot, random, dense+dot, random+dot, ...

Needs the TFDS lm1b data under <data_dir>/tfds (or $TFDS_DATA_DIR) and its vocabulary:
python -m synthesizer_jax.data.prepare --data_dir data --tasks lm1b. Offline stand-in with
the same model: configs/offline_lm.py. Metric: perplexity.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "lm1b"
  c.batch_size = 256
  c.targets_length = 256
  c.num_train_steps = 100_000
  c.learning_rate = 1e-3
  c.warmup_steps = 4000
  c.decay = "rsqrt"
  c.eval_every = 2000
  c.checkpoint_every = 2000
  c.model.d_model = 512
  c.model.num_heads = 8
  c.model.head_dim = 64
  c.model.mlp_dim = 2048
  c.model.num_layers = 6
  c.model.max_len = 256
  c.model.dropout_rate = 0.1
  c.model.self_attention = "dense"
  return c
