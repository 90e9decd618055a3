"""Default experiment (`make train`): a small DecoderLM with dense synthetic attention
on the offline English corpus (task "offline_lm"), sized for ~10 minutes on a CPU.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_lm
    python train.py --config configs/offline_lm.py --workdir workdirs/offline_lm

Other attention kinds: --config.model.self_attention=random (or dot, fixed_random,
factorized_dense, factorized_random, dense+dot, random+dot, ...). The paper's LM1B
setting is configs/lm1b.py.

Expected result (measured 2026-12-02 with `make train` on the 2-core CPU VM, 18 min wall
while sharing it): validation perplexity 299 (token accuracy 16.9%) at step 1,000, the same
as before the training wing was split. Still far from a trained LM (issue 17); the sample
repeats "is a list of the".
"""

from configs import base


def get_config():
  return base.experiment(
      "offline_lm", size="small", max_len=128, steps=1000, warmup=100, every=500,
      model=dict(dropout_rate=0.0), batch_size=16, targets_length=128, learning_rate=2e-3,
      decay="cosine", log_every=25, eval_batches=8)
