"""Fine-tune on the offline classification set from a pre-trained encoder-decoder (the
paper's GLUE / SuperGLUE recipe, offline): the classifier takes the encoder and embedding
of a configs/offline_translate.py run; the head is new.

    python train.py --config configs/offline_translate.py --workdir workdirs/pretrain
    python train.py --config configs/offline_classify_finetune.py --workdir workdirs/finetune \
        --config.init_from=workdirs/pretrain

The model fields must match the pre-trained run's (d_model, heads, max_len, kind) and the
two tasks must share a vocabulary size; a mismatch stops with the offending parameter.
"""

from configs import offline_classify


def get_config():
  c = offline_classify.get_config()
  c.init_from = "workdirs/pretrain"
  c.init_params = ("embed", "encoder")
  c.learning_rate = 5e-4
  c.num_train_steps = 1000
  return c
