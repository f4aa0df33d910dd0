#!/usr/bin/env bash
# The scaling study: strong scaling (fixed global batch B = 64, 256, 1024; 1, 2, 4, ... workers)
# and weak scaling (fixed per-worker batch b = 64, 256, 1024) of W-MLP and W-CNN under every
# policy (TensorParallel, "tensor", included), plus allreduce time against message size, on this
# machine. Each configuration is timed ROUNDS times (default 3),
# every policy and worker count of a batch taken in turn in each round, and the run with the
# median time is kept: a VM's slow minute then moves one run, not the baseline of a whole table.
# Writes CSVs and the machine's description to results/scaling/<label>/ (label: MACHINE_LABEL or
# the hostname).
#   bash benchmarks/scaling/run_scaling.sh [--max-workers N]      (default: nproc)
# Beyond nproc workers the runs oversubscribe the cores: do not pass more than the machine has.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benchmarks/common.sh

max_workers=$(nproc)
while (($#)); do
    case $1 in
        --max-workers) max_workers=$2; shift 2 ;;
        *) echo "usage: $0 [--max-workers N]" >&2; exit 2 ;;
    esac
done
label=${MACHINE_LABEL:-$(hostname)-${max_workers}w}
out=results/scaling/$label
build=build/release
mlp_samples=${MLP_SAMPLES:-30000} # samples timed per run
cnn_samples=${CNN_SAMPLES:-4096}
rounds=${ROUNDS:-3}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    bash scripts/install-deps.sh
    configure_release "$build"
    cmake --build "$build" -j"$(nproc)" --target bench_training_serial bench_training_openmp bench_training_mpi \
        bench_training_hybrid bench_training_tensor bench_allreduce
fi
bin=$build/benchmarks
mkdir -p "$out"

{
    echo "label: $label"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo "nproc: $(nproc)   max workers: $max_workers"
    echo "rounds: $rounds"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    lscpu
    echo
    g++ --version | head -n1
    mpichversion 2>/dev/null | head -n 3 || true
} >"$out/machine.txt"

mpiexec=mpiexec.mpich
bind=()
if "$mpiexec" -bind-to core -n 1 true >/dev/null 2>&1; then bind=(-bind-to core); fi

workers=(1)
for ((p = 2; p <= max_workers; p *= 2)); do workers+=("$p"); done
((workers[-1] != max_workers && max_workers > 1)) && workers+=("$max_workers")

# run POLICY P WORKLOAD BATCH: one CSV row from bench_training (no header).
run() {
    local policy=$1 p=$2 workload=$3 batch=$4
    local samples=$mlp_samples
    [[ $workload == cnn ]] && samples=$cnn_samples
    local steps=$(((samples + batch - 1) / batch))
    ((steps < 5)) && steps=5
    local common=(--workload "$workload" --batch "$batch" --steps "$steps" --warmup 3
        --data /usr/share/datasets/fashion-mnist)
    case $policy in
        serial) env OMP_NUM_THREADS=1 "$bin/bench_training_serial" "${common[@]}" ;;
        openmp | tensor)
            env OMP_PROC_BIND=close OMP_PLACES=cores "$bin/bench_training_$policy" "${common[@]}" --threads "$p" ;;
        mpi) env OMP_NUM_THREADS=1 "$mpiexec" "${bind[@]}" -n "$p" "$bin/bench_training_mpi" "${common[@]}" ;;
        hybrid)
            local t=$((p / 2))
            local hb=()
            ((${#bind[@]})) && hb=(-bind-to "core:$t")
            env OMP_PROC_BIND=close OMP_PLACES=cores "$mpiexec" "${hb[@]}" -n 2 "$bin/bench_training_hybrid" \
                "${common[@]}" --threads "$t"
            ;;
    esac
}

# skip POLICY P WORKLOAD: true for the configurations not measured. Serial runs only with one
# worker, the others with two or more (one worker is Serial's point); hybrid needs an even count
# (2 ranks x P/2 threads).
skip() {
    [[ $1 == serial && $2 != 1 ]] && return 0
    [[ $1 != serial && $2 == 1 ]] && return 0
    [[ $1 == hybrid && $(($2 % 2)) != 0 ]] && return 0
    return 1
}

header=$("$bin/bench_training_serial" --header --steps 1 --warmup 0 | head -n1)
echo "mode,per_worker_batch,$header" >"$out/strong.csv"
echo "mode,per_worker_batch,$header" >"$out/weak.csv"

# measure MODE WORKLOAD BATCH: one block of rows (strong: global batch BATCH; weak: BATCH per
# worker). Every round runs each configuration once, in the same order; then the run with the
# median time (bench_training's 7th field, seconds) of each configuration goes to MODE.csv.
measure() {
    local mode=$1 workload=$2 batch=$3 round p policy global per_worker row
    local -A runs=()
    for ((round = 1; round <= rounds; round++)); do
        for p in "${workers[@]}"; do
            for policy in serial openmp mpi hybrid tensor; do
                skip "$policy" "$p" "$workload" && continue
                global=$batch
                [[ $mode == weak ]] && global=$((batch * p))
                runs["$policy,$p"]+="$(run "$policy" "$p" "$workload" "$global")"$'\n'
            done
        done
    done
    for p in "${workers[@]}"; do
        for policy in serial openmp mpi hybrid tensor; do
            skip "$policy" "$p" "$workload" && continue
            per_worker=$batch
            [[ $mode == strong ]] && per_worker=$((batch / p))
            row=$(printf '%s' "${runs[$policy,$p]}" | sort -t, -k7,7g | sed -n "$(((rounds + 1) / 2))p")
            echo "$mode,$per_worker,$row" | tee -a "$out/$mode.csv"
        done
    done
}

for workload in mlp cnn; do
    for batch in 64 256 1024; do
        echo "== ${workload}, strong scaling, global batch ${batch} (median of $rounds rounds)"
        measure strong "$workload" "$batch"
        echo "== ${workload}, weak scaling, per-worker batch ${batch} (median of $rounds rounds)"
        measure weak "$workload" "$batch"
    done
done

echo "== allreduce"
: >"$out/allreduce.csv"
for p in "${workers[@]}"; do
    ((p < 2)) && continue
    if [[ ! -s "$out/allreduce.csv" ]]; then
        "$mpiexec" "${bind[@]}" -n "$p" "$bin/bench_allreduce" | tee "$out/allreduce.csv"
    else
        "$mpiexec" "${bind[@]}" -n "$p" "$bin/bench_allreduce" --no-header | tee -a "$out/allreduce.csv"
    fi
done
echo "== results in $out"
