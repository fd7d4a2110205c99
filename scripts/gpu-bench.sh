#!/usr/bin/env bash
# One prepared run for a GPU machine that has PyTorch 2.11 (CUDA) in its python3 but no Rust and no
# network. Carry this repository's scripts/, pipelines/, data/thesis/ and the stripped CUDA binary
# (`make build-cuda`: target/cuda/release/pipe, about 7 MB) there, then run
#   scripts/gpu-bench.sh [WORK_DIR]            (default WORK_DIR: a new directory under /tmp)
# It prints, per instance, the wall time and the final accuracy of
#   1. pipelines/quick.yaml on this machine's CPU and then with every tensor stage on `cuda`;
#   2. pipelines/thesis-gpu.yaml (the whole thesis on the GPU), next to the CPU figures of
#      pipelines/thesis.yaml measured on the 2-core build machine (README "Time budget"), and the
#      thesis's own accuracies.
# GROUP_SIZES="25 50 100 200" also times `random[gru]` of thesis-gpu.yaml at each group size.
# Everything it writes goes under WORK_DIR (caches, artifacts, logs, summary.txt).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/pipe-gpu-bench.XXXXXX)}"
mkdir -p "$work"
# PIPE_BENCH_PIPE replaces the launcher (to try this script with the CPU binary).
pipe=("${PIPE_BENCH_PIPE:-$repo/scripts/pipe-cuda}")
log() { echo "$@" | tee -a "$work/summary.txt"; }

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /' | tee -a "$work/summary.txt"
else
  log "gpu: nvidia-smi not found"
fi
python3 -c 'import torch; print("torch:", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>/dev/null | tee -a "$work/summary.txt" || log "torch: python3 cannot import it"
log "cpu: $(nproc) cores"

# Runs a pipeline in its own cache; keeps the run summary and the headline metrics.
run() { # name file [pipe run args...]
  local name="$1" file="$2"; shift 2
  local started
  started=$(date +%s%N)
  "${pipe[@]}" --cache "$work/$name/cache" --artifacts "$work/$name/artifacts" run "$file" "$@" \
    > "$work/$name.out" 2> "$work/$name.err" || { log "$name: pipe run failed (exit $?); see $work/$name.err"; tail -5 "$work/$name.err"; }
  echo $(( ($(date +%s%N) - started) / 1000000 )) | awk '{ printf "%.1f\n", $1 / 1000 }' > "$work/$name.seconds"
  "${pipe[@]}" --cache "$work/$name/cache" exp show "$file" --format csv > "$work/$name.metrics.csv" 2>/dev/null || true
}

# "instance seconds" for every instance that ran, from a run summary.
times() { awk '$1 == "ran" { s = $3; sub(/s$/, "", s); print $2, s }' "$work/$1.out" | sort; }
# "instance accuracy" from `pipe exp show --format csv`: final test accuracy (mean over the
# networks for rnn.train_random), the safe pruning level for rnn.prune.
accuracies() {
  python3 - "$work/$1.metrics.csv" <<'PY'
import csv, sys
try:
    rows = list(csv.reader(open(sys.argv[1])))
except OSError:
    sys.exit()
# One table per stage, each headed by a `stage,instance,...` row.
header = None
for row in rows:
    if row[:2] == ["stage", "instance"]:
        header = row
        continue
    if header is None:
        continue
    named = dict(zip(header, row))
    if named.get("test_acc"):
        print(named["instance"], named["test_acc"])
    elif named.get("mean_test_acc"):
        print(named["instance"], named["mean_test_acc"])
    elif "safe_level" in named:
        print(named["instance"], "safe=" + (named["safe_level"] or "none"))
PY
}
side_by_side() { # title left right
  log ""
  log "$1"
  printf '%-34s %12s %12s %12s %12s\n' instance "cpu s" "gpu s" "cpu acc" "gpu acc" | tee -a "$work/summary.txt"
  join -a1 -a2 -e - -o 0,1.2,2.2 <(times "$2") <(times "$3") > "$work/t.join"
  join -a1 -a2 -e - -o 0,1.2,2.2 <(accuracies "$2" | sort) <(accuracies "$3" | sort) > "$work/a.join"
  join -a1 -a2 -e - -o 0,1.2,1.3,2.2,2.3 "$work/t.join" "$work/a.join" \
    | awk '{ printf "%-34s %12s %12s %12s %12s\n", $1, $2, $3, $4, $5 }' | tee -a "$work/summary.txt"
  log "total wall: cpu $(cat "$work/$2.seconds") s, gpu $(cat "$work/$3.seconds") s"
}

cd "$repo"
log ""
log "== quick.yaml: CPU, then every tensor stage on cuda =="
run quick-cpu pipelines/quick.yaml
run quick-gpu pipelines/quick.yaml -S base.device=cuda -S prune.device=cuda -S prune.strategy=batched \
  -S random.device=cuda -S random.engine=tensor
side_by_side "quick.yaml (cpu = this machine's CPU)" quick-cpu quick-gpu

log ""
log "== thesis-gpu.yaml: the whole thesis on one GPU =="
run thesis-gpu pipelines/thesis-gpu.yaml
log "instance wall seconds (GPU) and final accuracy:"
join -a1 -e - -o 0,1.2,2.2 <(times thesis-gpu) <(accuracies thesis-gpu | sort) \
  | awk '{ printf "  %-34s %10s s  acc %s\n", $1, $2, $3 }' | tee -a "$work/summary.txt"
log "total wall: $(cat "$work/thesis-gpu.seconds") s (target: 600 s)"
log "CPU reference, pipelines/thesis.yaml on the 2-core build machine (README \"Time budget\"):"
log "  base training 1.0 CPU-hours, the 12 pruning sweeps 1.7, the 800 random networks 3.0; about 2.9 h wall with -j 2"
log "thesis's own final test accuracies (SPEC): base tanh 0.937, relu 1.0, lstm 1.0, gru 1.0;"
log "  random networks (mean) tanh 0.868, relu 0.779, lstm 0.946, gru 0.956"

for size in ${GROUP_SIZES:-}; do
  run "group-$size" pipelines/thesis-gpu.yaml --only 'random[gru]' -S "random.group_size=$size"
  log "random[gru] group_size $size: $(times "group-$size" | awk '$1 == "random[gru]" { print $2 " s" }')"
done
log ""
log "all output: $work"
