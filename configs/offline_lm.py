"""Default experiment (`make train`): a small DecoderLM with dense synthetic attention
on the offline English corpus (task "offline_lm"), sized for ~10 minutes on a CPU.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_lm --cache
    python train.py --config configs/offline_lm.py --workdir workdirs/offline_lm

Other attention kinds: --config.model.self_attention=random (or dot, fixed_random,
factorized_dense, factorized_random, dense+dot, random+dot, ...). The paper's LM1B
setting is configs/lm1b.py.

Expected result (measured 2026-12-03 with `make train` from a fresh workdir on the idle
2-core CPU VM: 9 min 48 s wall, 1.7-2.0 steps/s, batches read through Grain from the task
cache): validation perplexity 169.0 against a unigram baseline of 929.1 on the same tokens
(0.18 of it), 1.83 bits per byte (unigram 2.44), token accuracy 20.0%. The learning rate is
8e-3; the same run ended at 295.4 with 2e-3 (the default until 2026-12-02) and at 196.6
with 5e-3 (docs/results.md, "Budgets where the models learn"). The greedy sample starts as
English ("The *name* is a string, the *name* is a string, or a string, ...") and loops on
the corpus's emphasis markup; the nucleus sample (top_p 0.9) reads as words and sentence
fragments of the Python documentation ("The name is equal to the debugger. The operation
is set.").
"""

from configs import base


def get_config():
  return base.experiment(
      "offline_lm", size="small", max_len=128, steps=1000, warmup=100, every=500,
      model=dict(dropout_rate=0.0), batch_size=16, targets_length=128, learning_rate=8e-3,
      decay="cosine", log_every=25, eval_batches=8)
