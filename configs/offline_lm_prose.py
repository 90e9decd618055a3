"""Default experiment (`make train`): a small DecoderLM with dense synthetic attention on
English prose (task "offline_lm_prose": the King James and World English Bibles and Jane
Austen's six novels, from Debian packages), sized for 10-15 minutes on a CPU.

    python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_lm_prose --cache
    python train.py --config configs/offline_lm_prose.py --workdir workdirs/offline_lm_prose

Other attention kinds: --config.model.self_attention=random (or dot, fixed_random,
factorized_dense, factorized_random, dense+dot, random+dot, ...). The model, schedule and
learning rate are configs/offline_lm.py's (the CPython documentation corpus, which the
sweep's LM uses); only the text differs.

Expected result (measured 2026-12-03: this config through train.py, pinned to one core of the
2-core CPU VM while a sweep used the other, 14 min wall including the final evaluation):
validation perplexity 74.5 against a unigram baseline of 475.6 on the same tokens (0.157 of
it; 75.05 on both cores of the idle VM, where `make train` from a fresh clone took 11 min 48 s
in all: XLA's CPU reductions split by thread count), 1.44 bits per byte (unigram 2.06),
token accuracy 23.0%. The nucleus sample (top_p 0.9) reads as English words and sentences
("The prophets goes from among the first day. A others--but he knew so that whatever was
right, ..."); the greedy sample is English that loops, as greedy decoding of a small LM does
("The children of Israel, and the children of Israel, and all the children of Israel, ...").
"""

from configs import offline_lm


def get_config():
  c = offline_lm.get_config()
  c.task = "offline_lm_prose"
  return c
