"""WMT'14 En-De translation (paper section 4.1, Table 2): EncoderDecoder, base size.

    python train.py --config configs/wmt.py --workdir workdirs/wmt_ende \
        --config.model.self_attention=random      # dense, dot, random+dot, ...

En-Fr: --config.task=wmt14_enfr. Needs TFDS wmt14_translate under <data_dir>/tfds and
`python -m synthesizer_jax.data.prepare --data_dir data --tasks wmt14_ende`. Metric:
sacreBLEU (greedy decoding; the paper reports beam search).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "wmt14_ende"
  c.batch_size = 256
  c.inputs_length = 256
  c.targets_length = 256
  c.num_train_steps = 100_000
  c.learning_rate = 1e-3
  c.warmup_steps = 4000
  c.decay = "rsqrt"
  c.label_smoothing = 0.1
  c.eval_every = 5000
  c.checkpoint_every = 5000
  c.model.d_model = 512
  c.model.num_heads = 8
  c.model.head_dim = 64
  c.model.mlp_dim = 2048
  c.model.num_layers = 6
  c.model.max_len = 256
  c.model.self_attention = "dense"
  return c
