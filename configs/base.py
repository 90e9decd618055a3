"""Defaults shared by every experiment config: all TrainConfig fields, `model` and `mesh`.

Not an experiment itself; each configs/<experiment>.py calls `experiment(...)` here with
what its experiment changes. Every field can be overridden on the command line:
`--config.model.self_attention=random --config.batch_size=64`.
"""

import ml_collections

# Model widths the experiments share: "small" for the offline tasks on a CPU, "base" the
# paper's base Transformer (its Table 2-6 runs).
MODEL_SIZES = {
    "small": dict(d_model=128, num_heads=4, head_dim=32, mlp_dim=512, num_layers=2),
    "base": dict(d_model=512, num_heads=8, head_dim=64, mlp_dim=2048, num_layers=6),
}


def experiment(task: str, *, size: str, max_len: int, steps: int, warmup: int, every: int,
               model: dict | None = None, **fields) -> ml_collections.ConfigDict:
  """`get_config()` with an experiment's task, model size and schedule.

  Args:
    task: the data task.
    size: a MODEL_SIZES key; `model` overrides single model fields.
    max_len: the model's max_len (synthetic kinds are built for it).
    steps, warmup: training steps and warmup steps.
    every: evaluate and checkpoint every this many steps.
    **fields: any other top-level field (batch_size, learning_rate, ...).
  """
  c = get_config()
  c.task = task
  c.num_train_steps, c.warmup_steps = steps, warmup
  c.eval_every = c.checkpoint_every = every
  for name, value in {**MODEL_SIZES[size], "max_len": max_len, **(model or {})}.items():
    if name not in c.model:
      raise KeyError(f"model field {name!r} does not exist; see configs/base.py")
    c.model[name] = value
  for name, value in fields.items():
    if name not in c:
      raise KeyError(f"config field {name!r} does not exist; see configs/base.py")
    c[name] = value
  return c


def get_config():
  c = ml_collections.ConfigDict()
  c.task = "offline_lm"
  c.data_dir = "data"
  c.batch_size = 32
  c.inputs_length = 128
  c.targets_length = 128
  c.pack = True
  # "auto": train from the task's cache (python -m synthesizer_jax.data.cache) when it has
  # one (Grain, no TensorFlow), else through seqio; or "seqio" / "grain".
  c.data_pipeline = "auto"
  c.data_workers = 0  # grain: worker processes for reading batches (0: threads)
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
  c.loss_chunk = 0  # >0: logits and loss this many positions at a time (long sequences)
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
  c.init_partial = False  # True: load what init_params finds, log what stays at init
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
  m.norm = "layernorm"  # "rmsnorm" learned recall slower (docs/results_early.md, baseline check)
  m.tie_embeddings = True
  m.pad_id = 0
  m.dtype = "float32"  # "bfloat16" for bf16 compute (params and softmax stay float32)
  # How attention is computed, never what: auto | materialized | blockwise | cudnn | pallas.
  m.attention_impl = "auto"
  m.attention_block_size = 512

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
