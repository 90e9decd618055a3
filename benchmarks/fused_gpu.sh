#!/usr/bin/env bash
# Fused attention on a GPU, in one go that ends well inside 10 minutes (a device session's
# limit): training-step speed and MFU of every implementation per kind next to cuDNN `dot`,
# then compiled memory (the output layer in chunks of LOSS_CHUNK positions, as
# TrainConfig.loss_chunk, so the attention's share shows). Each record is kept as it is
# measured (PREFIX.partial.json), so a run cut by the deadline still reports what it measured.
#   bash benchmarks/fused_gpu.sh            # DEADLINE=480 seconds by default
set -uo pipefail
cd "$(dirname "$0")/.."
DEADLINE=${DEADLINE:-480}
OUT=${OUT:-benchmarks/results/fused_gpu}
start=$(date +%s)
timeout $((DEADLINE * 2 / 3)) python -m benchmarks.attention --preset fused_gpu --benches step \
  --lengths "${LENGTHS:-1024,4096}" --repeats 5 --out "$OUT" "$@"
left=$((DEADLINE - ($(date +%s) - start)))
if [ "$left" -gt 30 ]; then
  timeout "$left" python -m benchmarks.attention --preset fused_gpu --benches memory \
    --lengths "${MEM_LENGTHS:-4096,16384}" --loss_chunk "${LOSS_CHUNK:-1024}" \
    --out "${OUT}_memory" "$@"
fi
ls -l "$OUT"* 2>/dev/null
