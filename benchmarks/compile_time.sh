#!/usr/bin/env bash
# Times building each example program (examples/mlp and examples/cnn, once per policy this build
# has): compile time is part of what a template library costs its users, and the performance
# issue's target is an example built in under 30 s. Each build removes the program and its object
# (`ninja -t clean PROGRAM`) and times `ninja -j1 PROGRAM`: compiling main.cpp with the build's
# own flags, then linking. Writes results/bench/compile_time.csv: the best and median wall-clock
# seconds of COMPILE_REPEAT builds (default 3), and the median CPU seconds (user + system of
# compiler and linker), which other load on the machine barely changes.
# A benchmark, not a test: the timings depend on the machine and on what else runs on it.
#   bash benchmarks/compile_time.sh [BUILD_DIR]      (default build/release, configured here)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh

build=${1:-build/release}
out=results/bench
repeat=${COMPILE_REPEAT:-3}

bash scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARDL_BUILD_EXAMPLES=ON >/dev/null
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The example programs this build defines (NAME_<policy>), in the order of the other tables.
defined=$(ninja -C "$build" -t targets all)
programs=()
for example in mlp cnn; do
    for policy in serial openmp mpi hybrid; do
        if grep -q "^${example}_${policy}: " <<<"$defined"; then programs+=("${example}_${policy}"); fi
    done
done

# build_from_scratch PROGRAM: rebuilds PROGRAM alone; sets wall and cpu (seconds).
build_from_scratch() {
    ninja -C "$build" -t clean "$1" >/dev/null
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
for program in "${programs[@]}"; do
    # The compile command ninja runs for the program's one source file: its compiler and the flags
    # that shape the compile (optimisation, language, target, warnings, OpenMP), not -D/-I.
    compile=$(ninja -C "$build" -t commands "$program" | grep -E ' -c [^ ]+\.cpp$')
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
    echo "${program%%_*},${program#*_},${stats},${repeat},${compiler},${flags}" | tee -a "$csv"
done
