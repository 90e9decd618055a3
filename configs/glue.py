"""GLUE (paper section 4.4, Table 5) with an EncoderClassifier; one task per run.

    python train.py --config configs/glue.py --workdir workdirs/glue_sst2 \
        --config.task=glue_sst2 --config.model.self_attention=dense+dot
    # text-to-text with an EncoderDecoder instead: configs/superglue.py --config.task=glue_sst2_t2t

Fine-tune from a pre-trained run with --config.init_from=WORKDIR
--config.init_params='("embed","encoder")'. Needs TFDS glue under <data_dir>/tfds and
`python -m synthesizer_jax.data.prepare --data_dir data --tasks glue_sst2`. Metrics:
accuracy, F1, Matthews correlation (STS-B: bucketed to 26 classes as T5 does).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.task = "glue_sst2"
  c.batch_size = 64
  c.inputs_length = 128
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
  c.model.max_len = 128
  c.model.self_attention = "dense"
  return c
