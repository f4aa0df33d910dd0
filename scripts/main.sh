#!/usr/bin/env bash
# The main job: build the examples in Release and train the W-MLP on Fashion-MNIST under the
# four policies (Serial, OpenMP, MPI, Hybrid) with worker counts fitted to this machine, then
# print one comparison table (seconds per epoch, speedup, efficiency, accuracy).
#   EPOCHS=5 (default)  LIMIT=0 (all 60000 training images)  BATCH=64  SEED=42
# Results: results/main/<policy>.json and .log, results/main/summary.csv and summary.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

epochs=${EPOCHS:-5}
limit=${LIMIT:-0}
batch=${BATCH:-64}
seed=${SEED:-42}
cores=$(nproc)
build=build/release
out=results/main

model=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
echo "== machine: ${model:-unknown CPU}, nproc ${cores}, $(uname -srm)"
echo "== run: epochs ${epochs}, limit ${limit} (0 = all), batch ${batch}, seed ${seed}"

echo "== dependencies"
bash scripts/install-deps.sh

echo "== configure and build (${build})"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARDL_BUILD_TESTS=OFF \
    -DPARDL_BUILD_EXAMPLES=ON -DPARDL_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j"$cores" --target mlp_serial mlp_openmp mlp_mpi mlp_hybrid pardl_compare

mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.log "$out"/summary.csv "$out"/summary.txt
common=(--epochs "$epochs" --limit "$limit" --batch "$batch" --seed "$seed")
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

runs=()

run serial env OMP_NUM_THREADS=1 "$bin/mlp_serial" "${common[@]}"
runs+=("$out/serial.json")

run openmp env OMP_NUM_THREADS="$cores" OMP_PROC_BIND=close OMP_PLACES=cores \
    "$bin/mlp_openmp" "${common[@]}" --threads "$cores"
runs+=("$out/openmp.json")

run mpi env OMP_NUM_THREADS=1 "$mpiexec" "${bind[@]}" -n "$cores" "$bin/mlp_mpi" "${common[@]}"
runs+=("$out/mpi.json")

if ((cores >= 2)); then
    threads=$((cores / 2))
    hbind=()
    if ((${#bind[@]})); then
        hbind=(-bind-to "core:${threads}") # each rank owns `threads` cores for its OpenMP team
    fi
    run hybrid env OMP_NUM_THREADS="$threads" OMP_PROC_BIND=close OMP_PLACES=cores \
        "$mpiexec" "${hbind[@]}" -n 2 "$bin/mlp_hybrid" "${common[@]}" --threads "$threads"
    runs+=("$out/hybrid.json")
else
    echo
    echo "== hybrid: skipped (needs at least 2 cores for 2 ranks; this machine has ${cores})"
fi

echo
echo "== summary (${root}/${out}/summary.csv)"
"$build/benchmarks/pardl_compare" --csv "$out/summary.csv" "${runs[@]}" | tee "$out/summary.txt"
