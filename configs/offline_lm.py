"""Default experiment (`make train`): a small DecoderLM with dense synthetic attention
on the offline English corpus (task "offline_lm"), sized for ~10 minutes on a CPU.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_lm
    python train.py --config configs/offline_lm.py --workdir workdirs/offline_lm

Other attention kinds: --config.model.self_attention=random (or dot, fixed_random,
factorized_dense, factorized_random, dense+dot, random+dot, ...). The paper's LM1B
setting is configs/lm1b.py.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "offline_lm"
  c.batch_size = 16
  c.targets_length = 128
  c.num_train_steps = 1000
  c.learning_rate = 2e-3
  c.warmup_steps = 100
  c.decay = "cosine"
  c.log_every = 25
  c.eval_every = 500
  c.checkpoint_every = 500
  c.eval_batches = 8
  c.model.d_model = 128
  c.model.num_heads = 4
  c.model.head_dim = 32
  c.model.mlp_dim = 512
  c.model.num_layers = 2
  c.model.max_len = 128
  c.model.dropout_rate = 0.0
  c.model.self_attention = "dense"
  return c
