"""Defaults shared by every experiment config: all TrainConfig fields, `model` and `mesh`.

Not an experiment itself; each configs/<experiment>.py starts from `get_config()` here
and changes what its experiment needs. Every field can be overridden on the command
line: `--config.model.self_attention=random --config.batch_size=64`.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.task = "offline_lm"
  c.data_dir = "data"
  c.batch_size = 32
  c.inputs_length = 128
  c.targets_length = 128
  c.pack = True
  c.num_train_steps = 1000
  c.optimizer = "adamw"  # or "adafactor"
  c.learning_rate = 1e-3
  c.warmup_steps = 100
  c.decay = "rsqrt"  # "rsqrt", "cosine", "linear" or "constant"
  c.min_learning_rate_fraction = 0.1
  c.weight_decay = 0.01
  c.b1 = 0.9
  c.b2 = 0.98
  c.clip_norm = 1.0
  c.label_smoothing = 0.0
  c.z_loss = 0.0
  c.grad_accum_steps = 1
  c.seed = 0
  c.log_every = 50
  c.eval_every = 500
  c.eval_batches = 20
  c.predict_batches = 2
  c.max_decode_len = 0
  c.decode_method = "beam"  # seq2seq predictions (BLEU / ROUGE), as the paper: beam 4, alpha 0.6
  c.num_beams = 4
  c.length_penalty = 0.6
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  c.init_from = ""
  c.init_params = ()
  c.sample_prompt = "The "

  c.model = ml_collections.ConfigDict()
  m = c.model
  m.vocab_size = 0  # 0: the task vocabulary's size
  m.d_model = 256
  m.num_heads = 4
  m.head_dim = 64
  m.mlp_dim = 1024
  m.num_layers = 4
  m.num_encoder_layers = ml_collections.FieldReference(None, field_type=int)
  m.num_decoder_layers = ml_collections.FieldReference(None, field_type=int)
  m.max_len = 128
  m.dropout_rate = 0.1
  m.attention_dropout_rate = 0.0
  m.self_attention = "dense"
  m.cross_attention = "dot"
  m.dense_hidden_dim = ml_collections.FieldReference(None, field_type=int)
  m.random_rank = 8
  m.factor_sizes = ml_collections.FieldReference(None, field_type=tuple)
  m.random_init_stddev = ml_collections.FieldReference(None, field_type=float)
  m.mlp_activation = "relu"
  m.tie_embeddings = True
  m.pad_id = 0
  m.dtype = "float32"  # "bfloat16" for bf16 compute (params and softmax stay float32)

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.dcn_data = 1
  c.mesh.dcn_fsdp = 1
  c.mesh.dcn_tensor = 1
  c.mesh.rules = "fsdp"  # "dp", "fsdp" or "fsdp_tp"
  c.mesh.num_devices = 0  # 0: every device
  return c
