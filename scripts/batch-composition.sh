#!/usr/bin/env bash
# Measures how much the accuracy right after pruning depends on batch composition alone: each
# pruned model of a `pipelines/thesis-weights.yaml` run (retrain_epochs=0 suffices) is evaluated
# with `pipe eval` in file order and in N shuffled orders (batches of 32, last-padded readout, as
# the thesis's shuffled test loader), beside the thesis's recorded value.
#
#   pipe run pipelines/thesis-weights.yaml -S prune.retrain_epochs=0
#   scripts/batch-composition.sh artifacts 8 > batch-composition.csv
set -euo pipefail
artifacts=${1:-artifacts}
shuffles=${2:-8}
levels=${LEVELS:-60 70 80 90}
pipe=${PIPE:-target/release/pipe}
data=data/thesis/test_data.csv
declare -A suffix=([both]=_prune [ih]=_prune_i2h [hh]=_prune_h2h)
echo "variant,weights,level,thesis,file_order,shuffled_min,shuffled_max,shuffled_mean,shuffles"
for variant in rnn_tanh rnn_relu lstm gru; do
  for weights in both ih hh; do
    for level in $levels; do
      model=$artifacts/prune/$variant-$weights/models/p$level.safetensors
      thesis=$(awk -F, -v m="$variant${suffix[$weights]}" -v p="$level" \
        '$1==m && $2==p && $3==0 {print $7}' data/thesis/results/prune/$variant.csv)
      acc() { "$pipe" eval --variant "$variant" --weights "$model" --data "$data" --batch-size 32 --json "$@" \
        | sed 's/.*"accuracy":\([0-9.e-]*\).*/\1/'; }
      file_order=$(acc)
      values=$(for seed in $(seq 1 "$shuffles"); do acc --shuffle "$seed"; done)
      stats=$(echo "$values" | awk '{s+=$1; if(NR==1||$1<mn)mn=$1; if(NR==1||$1>mx)mx=$1} END {printf "%.5f,%.5f,%.5f", mn, mx, s/NR}')
      echo "$variant,$weights,$level,$thesis,$file_order,$stats,$shuffles"
    done
  done
done
