#!/usr/bin/env bash
# Runs pardl's benchmarks on this machine and regenerates docs/performance.md from the results:
#   1. the machine's single-core FMA peak and GEMM GFLOP/s (Google Benchmark, bench_gemm),
#   2. W-CNN's convolution kernels: Conv2D, im2col/col2im, MaxPool2D (Google Benchmark, bench_conv),
#   3. training throughput of W-MLP and W-CNN under every policy (bench_training_<policy>),
#   4. the compile time of every example program (benchmarks/compile_time.sh),
#   5. one cache line's round trip between CPUs 0 and 1 (bench_core_to_core), which bounds what
#      two workers gain and, on a virtual machine, may change from one second to the next,
# with worker counts fitted to nproc. CSVs and the machine description go to results/bench/.
#   BENCH_OUT=results/bench  BENCH_DOC=docs/performance.md  BENCH_NOTES=benchmarks/performance_notes.md
#   (another machine's pass beside the main page: its own folder and page, and notes of its own;
#   with another BENCH_DOC the default is none, since the main page's notes discuss its figures)
# Timings are only meaningful on an otherwise idle machine.
#   MLP_STEPS=938, CNN_STEPS=938 (one epoch each)  REPEAT=9, CNN_REPEAT=5 (best of, median also kept)
#   COMPILE_REPEAT=3 (builds per example program)
#   PARTS="gemm conv allreduce training compile cores" (default: all): rerun only some parts, e.g.
#   PARTS=training after a noisy period; the others keep their CSVs in results/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh

cores=$(nproc)
build=build/release
parts=" ${PARTS:-gemm conv allreduce training compile cores} "
wants() { [[ $parts == *" $1 "* ]]; }
out=${BENCH_OUT:-results/bench}
doc=${BENCH_DOC:-docs/performance.md}
export BENCH_OUT=$out
mlp_steps=${MLP_STEPS:-938}
cnn_steps=${CNN_STEPS:-938}
repeat=${REPEAT:-9}
cnn_repeat=${CNN_REPEAT:-5}

bash scripts/install-deps.sh
configure_release "$build"
targets=(bench_gemm bench_conv bench_allreduce bench_core_to_core bench_training_serial bench_training_openmp bench_training_mpi bench_training_hybrid bench_training_tensor)
cmake --build "$build" -j"$cores" --target "${targets[@]}"
bin="$build/benchmarks"
mkdir -p "$out"

# ---- the machine ---------------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "cores (nproc): ${cores}"
    echo "cpu family, model: $(awk -F': ' '/^cpu family/ { f = $2 } /^model[[:space:]]*:/ { m = $2 } END { print f ", " m }' /proc/cpuinfo)"
    # Some guests' lscpu lists no caches; /proc/cpuinfo then still gives the per-core L2 (x86).
    caches=$(lscpu | grep -E '^(L1d|L2|L3) cache' | sed 's/  */ /g' || true)
    if [[ -n $caches ]]; then
        echo "$caches"
    else
        echo "cache size (per core, /proc/cpuinfo; lscpu lists none): $(sed -n 's/^cache size[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
    fi
    echo "avx512: $(grep -q avx512f /proc/cpuinfo && echo yes || echo no)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "kernel: $(uname -sr)"
    echo "compiler: $(g++ --version | head -n1)"
    echo "mpi: $(mpichversion 2>/dev/null | grep -i 'MPICH Version' | sed 's/[[:space:]]\+/ /g' || echo unknown)"
} >"$out/machine.txt"
cat "$out/machine.txt"

# ---- kernels (Google Benchmark) ------------------------------------------------------------
# kernel_bench NAME FLAG...: runs every benchmark of bench_NAME $repeat times, the aggregates into
# NAME_raw.csv (Google Benchmark's CSV), and prints the single-core peak the program measured.
kernel_bench() {
    local name=$1
    shift
    "$bin/bench_$name" --benchmark_format=csv --benchmark_repetitions="$repeat" \
        --benchmark_report_aggregates_only=true "$@" 2>/dev/null >"$out/${name}_raw.csv"
    grep 'peak:' "$out/${name}_raw.csv" | sed 's/.*peak: *//; s/ .*//'
    sed -i '/peak:/d' "$out/${name}_raw.csv"
}
# medians NAME HEADER COLUMN...: NAME.csv from NAME_raw.csv, one row per benchmark: its name
# (without the /min_time: and _median suffixes) and the median of each named column, one decimal,
# empty where that benchmark has no such value. COLUMN*FACTOR scales the column (units).
medians() {
    local name=$1 header=$2
    shift 2
    awk -F, -v header="$header" -v columns="$*" '
        NR == 1 { for (i = 1; i <= NF; i++) { h = $i; gsub(/"/, "", h); col[h] = i }
                  n = split(columns, want, " "); print header; next }
        $1 ~ /_median"?$/ { name = $1; gsub(/"/, "", name); sub(/_median$/, "", name); sub(/\/min_time:[0-9.]*$/, "", name)
                            row = name
                            for (i = 1; i <= n; i++) {
                                split(want[i], spec, "*"); v = (spec[1] in col) ? $col[spec[1]] : ""
                                row = row "," (v == "" ? "" : sprintf("%.1f", v * (spec[2] == "" ? 1 : spec[2])))
                            }
                            print row }' "$out/${name}_raw.csv" >"$out/${name}.csv"
    cat "$out/${name}.csv"
}

if wants gemm; then
    echo "== GEMM (bench_gemm)"
    kernel_bench gemm >"$out/peak.txt"
    echo "single-core FMA peak (GFLOP/s): $(cat "$out/peak.txt")"
    medians gemm shape,gflops,pct_peak GFLOP/s pct_peak
fi

# bench_conv leaves the minimum time to the command line (so a quick check can shorten it); 0.3 s
# per repetition, as bench_gemm fixes for itself. Its pct_peak, as bench_gemm's, is against the
# peak measured right after each repetition.
if wants conv; then
    echo "== convolution kernels (bench_conv)"
    kernel_bench conv --benchmark_min_time=0.3 >"$out/conv_peak.txt"
    echo "single-core FMA peak measured by bench_conv (GFLOP/s): $(cat "$out/conv_peak.txt")"
    medians conv kernel,us_per_batch,gflops,pct_peak,gb_per_s cpu_time GFLOP/s pct_peak "bytes_per_second*1e-9"
fi

mpiexec=mpiexec.mpich
bind=()
if "$mpiexec" -bind-to core -n 1 true >/dev/null 2>&1; then bind=(-bind-to core); fi

# ---- allreduce -----------------------------------------------------------------------------
echo "== allreduce (bench_allreduce, ${cores} ranks)"
if ((cores >= 2)) && wants allreduce; then
    "$mpiexec" "${bind[@]}" -n "$cores" "$bin/bench_allreduce" | tee "$out/allreduce.csv"
fi

# ---- core to core ---------------------------------------------------------------------------
echo "== core-to-core round trip (bench_core_to_core, CPUs 0 and 1)"
if ((cores >= 2)) && wants cores; then
    "$bin/bench_core_to_core" --samples 60 | tee "$out/core_to_core.csv"
fi

# ---- training ------------------------------------------------------------------------------
half=$((cores / 2 > 0 ? cores / 2 : 1))

# The policies take turns: each round runs every policy once, and there are $runs rounds. On a
# shared or virtual machine the speed drifts over minutes; taking turns gives every policy the same
# drift, so a speedup compares two policies over the same stretch of time (not a serial run in a
# fast minute with a parallel one in a slow one), and each policy's best run comes from anywhere in
# the part rather than from one stretch of it.
# pick ROWS BASE: the row with the lowest s_per_epoch (field 8) of ROWS (one CSV row per run), its
# speedup and efficiency against BASE (Serial's best s/epoch; fields 13 and 14, efficiency over the
# row's ranks x threads, fields 3 and 4), and the median s_per_epoch of the runs and their count.
pick() {
    local sorted
    sorted=$(printf '%s' "$1" | grep -v '^$' | sort -t, -k8,8g)
    local median_s count
    median_s=$(cut -d, -f8 <<<"$sorted" | median)
    count=$(grep -c . <<<"$sorted")
    head -n1 <<<"$sorted" | awk -F, -v OFS=, -v base="$2" -v median_s="$median_s" -v count="$count" '{
        speedup = base / $8; $13 = sprintf("%.3f", speedup); $14 = sprintf("%.3f", speedup / ($3 * $4))
        print $0, median_s, count }'
}

csv="$out/training.csv"
# Every run's row, with its round, beside the table's best and median (training_runs.csv): what
# the notes quote of single rounds can be checked there.
runs_csv="$out/training_runs.csv"
if wants training; then
    header=$("$bin/bench_training_serial" --header --steps 1 --warmup 0 | head -n1)
    echo "$header,median_s_per_epoch,runs" >"$csv"
    echo "round,$header" >"$runs_csv"
fi
policies=(serial openmp mpi)
((cores >= 2)) && policies+=(hybrid)
for workload in mlp cnn; do
    wants training || break
    steps=$mlp_steps
    runs=$repeat
    if [[ $workload == cnn ]]; then
        steps=$cnn_steps
        runs=$cnn_repeat
    fi
    # TensorParallel (model parallelism): Dense layers split by inputs, W-CNN's convolutions by rows.
    workload_policies=("${policies[@]}" tensor)
    common=(--workload "$workload" --steps "$steps" --data /usr/share/datasets/fashion-mnist)
    hbind=()
    ((${#bind[@]})) && hbind=(-bind-to "core:${half}")
    declare -A rows=()
    for round in $(seq "$runs"); do
        echo "== training: ${workload}, round ${round} of ${runs}"
        for policy in "${workload_policies[@]}"; do
            case $policy in
            serial) row=$(env OMP_NUM_THREADS=1 "$bin/bench_training_serial" "${common[@]}") ;;
            openmp)
                row=$(env OMP_PROC_BIND=close OMP_PLACES=cores "$bin/bench_training_openmp" "${common[@]}" \
                    --threads "$cores")
                ;;
            mpi)
                row=$(env OMP_NUM_THREADS=1 "$mpiexec" "${bind[@]}" -n "$cores" "$bin/bench_training_mpi" \
                    "${common[@]}")
                ;;
            hybrid)
                row=$(env OMP_PROC_BIND=close OMP_PLACES=cores "$mpiexec" "${hbind[@]}" -n 2 \
                    "$bin/bench_training_hybrid" "${common[@]}" --threads "$half")
                ;;
            tensor)
                row=$(env OMP_PROC_BIND=close OMP_PLACES=cores "$bin/bench_training_tensor" "${common[@]}" \
                    --threads "$cores")
                ;;
            esac
            echo "$row"
            echo "$round,$row" >>"$runs_csv"
            rows[$policy]+="$row"$'\n'
        done
    done
    base=$(printf '%s' "${rows[serial]}" | grep -v '^$' | cut -d, -f8 | sort -g | head -n1)
    for policy in "${workload_policies[@]}"; do pick "${rows[$policy]}" "$base" | tee -a "$csv"; done
    unset rows
done

# ---- compile time --------------------------------------------------------------------------
if wants compile; then
    echo "== compile time of the examples"
    bash benchmarks/compile_time.sh "$build"
fi

# The main page's notes go with the main page only: another page gets BENCH_NOTES, or none.
default_notes=
[[ $doc == docs/performance.md ]] && default_notes=benchmarks/performance_notes.md
NOTES=${BENCH_NOTES-$default_notes} bash benchmarks/write_performance_doc.sh "$out" "$doc"
echo "== wrote $doc"
