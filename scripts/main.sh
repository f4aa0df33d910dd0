#!/usr/bin/env bash
# The main job: build the examples in Release and train W-MLP and W-CNN on Fashion-MNIST under
# the four data-parallel policies (Serial, OpenMP, MPI, Hybrid) and TensorParallel (model
# parallelism; W-CNN's convolutions shared by rows), with worker counts fitted to this machine,
# then print one comparison table per workload (seconds per epoch, speedup, efficiency, accuracy).
#   W-MLP: EPOCHS=5 (default)  LIMIT=0 (all 60000 training images)
#   W-CNN: CNN_EPOCHS=2  CNN_LIMIT=10000  CNN_TEST_LIMIT=2000 (a subset: it is 27x costlier per image)
#   both:  BATCH=64  SEED=42
# Results: results/main/<example>_<policy>.json and .log, results/main/<example>_summary.{csv,txt}.
set -euo pipefail

cd "$(dirname "$0")/.."
source benchmarks/common.sh
root=$(pwd)

epochs=${EPOCHS:-5}
limit=${LIMIT:-0}
batch=${BATCH:-64}
seed=${SEED:-42}
# W-CNN costs 27 times more per image than W-MLP: the main job trains it on a subset.
cnn_epochs=${CNN_EPOCHS:-2}
cnn_limit=${CNN_LIMIT:-10000}
cnn_test_limit=${CNN_TEST_LIMIT:-2000}
cores=$(nproc)
build=build/release
out=results/main

model=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
echo "== machine: ${model:-unknown CPU}, nproc ${cores}, $(uname -srm)"
echo "== run: epochs ${epochs}, limit ${limit} (0 = all), batch ${batch}, seed ${seed}"

echo "== dependencies"
bash scripts/install-deps.sh

echo "== configure and build (${build})"
configure_release "$build"
cmake --build "$build" -j"$cores" --target mlp_serial mlp_openmp mlp_mpi mlp_hybrid mlp_tensor cnn_serial cnn_openmp cnn_mpi cnn_hybrid cnn_tensor pardl_compare

mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.log "$out"/*summary.csv "$out"/*summary.txt
bin="$build/examples"

mpiexec=mpiexec.mpich
bind=()
if "$mpiexec" -bind-to core -n 1 true >/dev/null 2>&1; then
    bind=(-bind-to core)
fi

# run NAME CMD... : one training run, its log in results/main/NAME.log (also shown here).
run() {
    local name=$1
    shift
    echo
    echo "== ${name}: $*"
    "$@" --json "$out/$name.json" 2>&1 | tee "$out/$name.log"
}

# workload EXAMPLE FLAGS... : the example under every policy, then its comparison table.
workload() {
    local ex=$1
    shift
    local runs=()
    run "${ex}_serial" env OMP_NUM_THREADS=1 "$bin/${ex}_serial" "$@"
    runs+=("$out/${ex}_serial.json")

    run "${ex}_openmp" env OMP_NUM_THREADS="$cores" OMP_PROC_BIND=close OMP_PLACES=cores \
        "$bin/${ex}_openmp" "$@" --threads "$cores"
    runs+=("$out/${ex}_openmp.json")

    run "${ex}_mpi" env OMP_NUM_THREADS=1 "$mpiexec" "${bind[@]}" -n "$cores" "$bin/${ex}_mpi" "$@"
    runs+=("$out/${ex}_mpi.json")

    if ((cores >= 2)); then
        local threads=$((cores / 2))
        local hbind=()
        if ((${#bind[@]})); then
            hbind=(-bind-to "core:${threads}") # each rank owns `threads` cores for its OpenMP team
        fi
        run "${ex}_hybrid" env OMP_NUM_THREADS="$threads" OMP_PROC_BIND=close OMP_PLACES=cores \
            "$mpiexec" "${hbind[@]}" -n 2 "$bin/${ex}_hybrid" "$@" --threads "$threads"
        runs+=("$out/${ex}_hybrid.json")
    else
        echo
        echo "== ${ex}_hybrid: skipped (needs at least 2 cores for 2 ranks; this machine has ${cores})"
    fi
    if [[ -x "$bin/${ex}_tensor" ]]; then
        run "${ex}_tensor" env OMP_NUM_THREADS="$cores" OMP_PROC_BIND=close OMP_PLACES=cores \
            "$bin/${ex}_tensor" "$@" --threads "$cores"
        runs+=("$out/${ex}_tensor.json")
    fi
    echo
    echo "== ${ex}: summary (${root}/${out}/${ex}_summary.csv)"
    "$build/benchmarks/pardl_compare" --csv "$out/${ex}_summary.csv" "${runs[@]}" | tee "$out/${ex}_summary.txt"
    tables+=("$out/${ex}_summary.txt")
}

tables=()
workload mlp --epochs "$epochs" --limit "$limit" --batch "$batch" --seed "$seed" --quiet
workload cnn --epochs "$cnn_epochs" --limit "$cnn_limit" --test-limit "$cnn_test_limit" --batch "$batch" \
    --seed "$seed" --quiet

echo
echo "== all workloads (machine: ${model:-unknown CPU}, nproc ${cores})"
for t in "${tables[@]}"; do
    echo "-- $(basename "$t" _summary.txt)"
    cat "$t"
done
