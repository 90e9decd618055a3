"""Classification (the paper's GLUE / SuperGLUE shape) on the offline review set with an
EncoderClassifier trained from scratch.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_classify
    python train.py --config configs/offline_classify.py --workdir workdirs/offline_classify \
        --config.model.self_attention=random

Fine-tuning from a pre-trained encoder-decoder, as the paper's GLUE runs do:
configs/offline_classify_finetune.py. Metrics: accuracy, F1, Matthews correlation.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "offline_classify"
  c.batch_size = 32
  c.inputs_length = 128
  c.pack = False
  c.num_train_steps = 1500
  c.learning_rate = 1e-3
  c.warmup_steps = 100
  c.decay = "cosine"
  c.eval_every = 500
  c.checkpoint_every = 500
  c.predict_batches = 8
  c.model.d_model = 128
  c.model.num_heads = 4
  c.model.head_dim = 32
  c.model.mlp_dim = 512
  c.model.num_layers = 2
  c.model.max_len = 128
  c.model.self_attention = "dense"
  return c
