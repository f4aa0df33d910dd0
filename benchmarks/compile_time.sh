#!/usr/bin/env bash
# Times building each example program (examples/mlp and examples/cnn, once per policy this build
# has): compile time is part of what a template library costs its users, and the performance
# issue's target is an example built in under 30 s. A program's build is compiling its main.cpp
# (all of pardl and the model's template instantiations) with the build's own flags, then linking:
# each build removes the program's object and binary and times `ninja -j1 PROGRAM`. The examples'
# shared harness (examples/common/app.cpp: CLI11 flags and the JSON run record, not part of pardl)
# is a library that the build compiles once for all the programs; it is timed the same way, on
# its own row ("harness"), and is already built when the programs are timed.
# Writes results/bench/compile_time.csv: the best and median wall-clock seconds of COMPILE_REPEAT
# builds (default 3), and the median CPU seconds (user + system of compiler and linker), which
# other load on the machine barely changes.
# A benchmark, not a test: the timings depend on the machine and on what else runs on it.
#   bash benchmarks/compile_time.sh [BUILD_DIR]      (default build/release, configured here)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh

build=${1:-build/release}
out=${BENCH_OUT:-results/bench} # run_benchmarks.sh passes its own
repeat=${COMPILE_REPEAT:-3}

bash scripts/install-deps.sh
configure_release "$build"
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The example programs this build defines (NAME_<policy>), in the order of the other tables.
defined=$(ninja -C "$build" -t targets all)
programs=()
for example in mlp cnn; do
    for policy in serial openmp mpi hybrid tensor; do
        if grep -q "^${example}_${policy}: " <<<"$defined"; then programs+=("${example}_${policy}"); fi
    done
done

# The file that target $1 builds (the phony mlp_serial stands for examples/mlp_serial).
target_file() {
    local file
    file=$(ninja -C "$build" -t query "$1" | awk '/^  input: phony/ { getline; print $1 } /^  input:/ { exit }')
    echo "${file:-$1}"
}

# The object files that target $1's file is made from: its own compiles, not the libraries it links.
target_objects() {
    ninja -C "$build" -t query "$(target_file "$1")" |
        awk '/^  input:/ { inputs = 1; next } /^  outputs:/ { inputs = 0 } inputs && $1 ~ /\.o$/ { print $1 }'
}

# build_from_scratch TARGET: rebuilds TARGET's file and objects (not the libraries it links); sets
# wall and cpu (seconds).
build_from_scratch() {
    local files
    mapfile -t files < <(target_file "$1"; target_objects "$1")
    (cd "$build" && rm -f "${files[@]}")
    local TIMEFORMAT='%R %U %S' # bash's `time`: wall, user and system seconds
    { time ninja -C "$build" -j1 "$1" >"$scratch/log" 2>&1; } 2>"$scratch/time" || {
        cat "$scratch/log" >&2
        exit 1
    }
    read -r wall user sys <"$scratch/time"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
}

csv="$out/compile_time.csv"
echo "program,policy,seconds,median_seconds,median_cpu_seconds,builds,compiler,flags" >"$csv"
# The harness library first, so that every program's build finds it built.
ninja -C "$build" pardl_example_common >/dev/null
for program in pardl_example_common "${programs[@]}"; do
    # The compile command of the target's one source file: its compiler and the flags that shape
    # the compile (optimisation, language, target, warnings, OpenMP), not -D/-I.
    compile=$(ninja -C "$build" -t commands -s "$(target_objects "$program")")
    compiler=$("${compile%% *}" --version | head -n1 | tr ',' ';')
    flags=$(tr ' ' '\n' <<<"$compile" | grep -E '^-(O|std=|march=|mtune=|f|W|g|pthread)' | paste -sd' ')
    walls=() cpus=()
    for _ in $(seq "$repeat"); do
        build_from_scratch "$program"
        walls+=("$wall")
        cpus+=("$cpu")
    done
    stats=$(printf '%.1f,%.1f,%.1f' "$(printf '%s\n' "${walls[@]}" | sort -g | head -n1)" \
        "$(printf '%s\n' "${walls[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)")
    if [[ $program == pardl_example_common ]]; then
        name=harness,shared
    else
        name=${program%%_*},${program#*_}
    fi
    echo "${name},${stats},${repeat},${compiler},${flags}" | tee -a "$csv"
done
