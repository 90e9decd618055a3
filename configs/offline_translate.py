"""Machine translation (paper section 4.1) on the offline English -> German corpus
(Debian package descriptions and their DDTP translations): EncoderDecoder, small.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_translate_en_de
    python train.py --config configs/offline_translate.py --workdir workdirs/offline_translate \
        --config.model.self_attention=random

French: --config.task=offline_translate_en_fr. Metric: sacreBLEU of greedy decodes.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "offline_translate_en_de"
  c.batch_size = 16
  c.inputs_length = 128
  c.targets_length = 128
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
  c.model.max_len = 128
  c.model.self_attention = "dense"
  return c
