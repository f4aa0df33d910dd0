#!/usr/bin/env bash
# The scaling study: strong scaling (fixed global batch B = 64, 256, 1024; 1, 2, 4, ... workers)
# and weak scaling (fixed per-worker batch b = 64, 256, 1024) of W-MLP and W-CNN under every
# policy, plus allreduce time against message size, on this machine. Writes CSVs and the
# machine's description to results/scaling/<label>/ (label: MACHINE_LABEL or the hostname).
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

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    bash scripts/install-deps.sh
    configure_release "$build"
    cmake --build "$build" -j"$(nproc)" --target bench_training_serial bench_training_openmp bench_training_mpi \
        bench_training_hybrid bench_allreduce
fi
bin=$build/benchmarks
mkdir -p "$out"

{
    echo "label: $label"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)   max workers: $max_workers"
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
        openmp) env OMP_PROC_BIND=close OMP_PLACES=cores "$bin/bench_training_openmp" "${common[@]}" --threads "$p" ;;
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

header=$("$bin/bench_training_serial" --header --steps 1 --warmup 0 | head -n1)
echo "mode,per_worker_batch,$header" >"$out/strong.csv"
echo "mode,per_worker_batch,$header" >"$out/weak.csv"

for workload in mlp cnn; do
    for batch in 64 256 1024; do
        echo "== ${workload}, strong scaling, global batch ${batch}"
        for p in "${workers[@]}"; do
            for policy in serial openmp mpi hybrid; do
                [[ $policy == serial && $p != 1 ]] && continue
                [[ $policy != serial && $p == 1 ]] && continue
                [[ $policy == hybrid && $((p % 2)) != 0 ]] && continue
                row=$(run "$policy" "$p" "$workload" "$batch")
                echo "strong,$((batch / p)),$row" | tee -a "$out/strong.csv"
            done
        done
        echo "== ${workload}, weak scaling, per-worker batch ${batch}"
        for p in "${workers[@]}"; do
            for policy in serial openmp mpi hybrid; do
                [[ $policy == serial && $p != 1 ]] && continue
                [[ $policy != serial && $p == 1 ]] && continue
                [[ $policy == hybrid && $((p % 2)) != 0 ]] && continue
                row=$(run "$policy" "$p" "$workload" $((batch * p)))
                echo "weak,$batch,$row" | tee -a "$out/weak.csv"
            done
        done
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
