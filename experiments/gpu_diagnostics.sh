#!/bin/bash
# The diagnostic sweep at the `gpu` size on one GPU, every attention kind side by side.
#
#   experiments/gpu_diagnostics.sh [OUT] [SECONDS]
#
# One process per kind (8 in all, each given a tenth of the GPU's memory), each running its
# queue of (task, seed) runs in order: recall seed 0, lookup seed 0, recall seeds 1 and 2,
# reverse seed 0. A tiny model leaves a big GPU mostly idle, so eight runs side by side finish
# about as fast as one. With SECONDS > 0 no run starts after that deadline and a run still
# going then is stopped (it leaves no record; the next call redoes it, since the sweep skips
# runs already in OUT/runs.jsonl). Needs no TensorFlow or seqio: the diagnostics are generated.
# SWEEP_ARGS adds arguments to every sweep, e.g. a longer budget (give it its own OUT):
#   SWEEP_ARGS='--train_override {"num_train_steps":12000}' experiments/gpu_diagnostics.sh OUT
set -u
out=${1:-experiments/results/gpu}
limit=${2:-0}
workroot=${WORKROOT:-workdirs/experiments_gpu}
py=${PYTHON:-python3}
extra=${SWEEP_ARGS:-}
size=${SIZE:-gpu}  # SIZE=tiny: a seconds-long check of this script
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.1}
export PYTHONUNBUFFERED=1
mkdir -p "$out/logs"
deadline=$(( $(date +%s) + limit ))
# KINDS / QUEUE replace the kinds and the per-kind queue ("task seed" pairs, comma-separated).
kinds=${KINDS:-dot dense random fixed_random factorized_dense factorized_random random+dot dense+dot}
IFS=, read -r -a queue <<<"${QUEUE:-recall 0,lookup 0,recall 1,recall 2,reverse 0}"

run_kind() {
  local kind=$1 job task seed left
  for job in "${queue[@]}"; do
    read -r task seed <<<"$job"
    left=$(( deadline - $(date +%s) ))
    if (( limit > 0 && left <= 0 )); then
      echo "deadline reached: $task seed $seed not started"
      return
    fi
    (( limit > 0 )) || left=0  # timeout 0 = no limit
    timeout "$left" "$py" -m experiments.sweep --tasks "$task" --kinds "$kind" --seeds 1 \
      --first_seed "$seed" --size "$size" --out "$out" --workroot "$workroot" --no-report $extra \
      || echo "$task $kind seed $seed: exit $?"
  done
}

for kind in $kinds; do
  run_kind "$kind" >"$out/logs/${kind/+/_plus_}.log" 2>&1 &
done
wait
echo "runs: $(wc -l <"$out/runs.jsonl" 2>/dev/null || echo 0) in $out/runs.jsonl"
