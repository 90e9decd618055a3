"""Multi-task fine-tuning (the paper's section 4.4, T5's recipe, second half): the whole
EncoderDecoder of a configs/offline_prose_span_corruption.py run (embedding included: one
vocabulary, offline_t5) is fine-tuned on the mixture "offline_t5_finetune", the
text-to-text tasks offline_classify_t5 ("review: ..." -> great / other),
offline_translate_en_de_t5 and offline_summarize_t5 drawn at T5's rates (examples, capped
at 16,384: about 10 / 45 / 45%), with a fresh optimizer and a step count from 0.

    python -m synthesizer_jax.data.prepare --data_dir data \
        --tasks offline_prose_span_corruption offline_t5_finetune --cache
    python train.py --config configs/offline_prose_span_corruption.py \
        --workdir workdirs/prose_span_corruption
    python train.py --config configs/offline_t5_finetune.py --workdir workdirs/t5_finetune \
        --config.init_from=workdirs/prose_span_corruption

The model fields are the pre-training config's (an override there, e.g.
--config.model.self_attention=random, needs the same override here). Every evaluation
scores each member on its own validation split: eval/<member>/loss, perplexity,
token_accuracy and the member's own metric from beam-searched predictions
(offline_classify_t5/accuracy, f1, matthews_corrcoef; offline_translate_en_de_t5/bleu;
offline_summarize_t5/rouge1, rouge2, rougeL), and eval/loss, the mean of the members'
losses (docs/training.md).

Expected result (2026-12-07, one core of the 2-core VM, --config.warmup_steps=50, dot,
seed 0): from 4,000 steps of that pre-training, eval/loss 3.83 at 2,000 steps and mean
member NLL 4.38 (classify 0.45, translate 6.15, summarize 6.53); from scratch
(--config.init_from=) 3.92 and 4.52. BLEU and ROUGE stay under 5 and 11 at this size (16
decoded rows each), and both get 81% of the reviews' labels (13 of 16 rows)
(experiments/results/recipe29_ftpilot/). At 1,000 steps (--config.num_train_steps=1000)
from the 6,000-step pre-training, 3 seeds (experiments/results/recipe29/): mean member
NLL 4.535 ± 0.048 for dot against 4.827 ± 0.029 from scratch; random+dot 4.531 against
4.833, dense+dot 4.517 against 4.826, dense 4.508 against 4.828, random 4.606 against 4.836
(docs/results.md, section 4.4). tests/test_recipe.py runs the whole recipe small on
generated corpora.
"""

from configs import base, offline_prose_span_corruption


def get_config():
  c = base.experiment(
      "offline_t5_finetune", size="small", max_len=128, steps=2000, warmup=100, every=500,
      batch_size=16, inputs_length=128, targets_length=64, learning_rate=5e-4,
      label_smoothing=0.1, eval_batches=8, predict_batches=1)
  c.model = offline_prose_span_corruption.get_config().model  # what init_from loads into
  c.model.dropout_rate = 0.1  # T5.1.1 pre-trains without dropout and fine-tunes with 0.1
  c.init_from = "workdirs/prose_span_corruption"
  return c
