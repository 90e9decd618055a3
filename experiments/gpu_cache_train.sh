#!/usr/bin/env bash
# On the GPU machine (no TensorFlow, seqio or ml_collections; grain and array_record travel
# as wheels): base-size DecoderLM and EncoderDecoder trained from the task cache, each for
# SECONDS, then evaluated. One call, well inside 10 minutes with the defaults (2 runs).
# Here first:
#   python -m synthesizer_jax.data.prepare --data_dir data --tasks offline_lm offline_translate_en_de --cache
#   (and the wheels: see /work/.library/device/README.md; grain 0.2.18, array_record 0.8.6, portpicker)
# Then run with carry: data/records/offline_lm data/records/offline_translate_en_de data/vocab .whl
#   bash experiments/gpu_cache_train.sh          # KINDS=dot SECONDS_PER_RUN=150 OUT=$OUT
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import grain, array_record" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || exit 1
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -m experiments.gpu_cache_train --data_dir data --out "${OUT:-experiments/results/gpu_cache}" \
  --kinds "${KINDS:-dot}" --seconds "${SECONDS_PER_RUN:-150}" "$@"
