#!/usr/bin/env bash
# Measures whether a change made training faster: builds bench_training_<policy> at a base commit
# (in a git worktree under build/) and at the working tree, then runs the two in alternation, so
# that both see the same phases of a noisy machine (the base first in odd pairs, the working tree
# first in even ones, so that going first or second favours neither), and prints each pair, the
# best and median of each side and the median of the pairs' ratios. On a shared or virtual machine
# this is the fair way to time a small change; two separate full benchmark passes can differ by
# more than the change itself.
#   bash benchmarks/compare_commits.sh BASE [PAIRS] [WORKLOAD] [STEPS] [POLICY]
#   e.g. bash benchmarks/compare_commits.sh HEAD~1 5 cnn 150          (s/epoch of Serial, lower is better)
#        bash benchmarks/compare_commits.sh HEAD~1 9 mlp 300 openmp   (all cores, pinned as run_benchmarks.sh does)
# POLICY is serial (default), openmp (one thread per core) or mpi (one rank per core).
# OPT="-O2 -DNDEBUG" builds both sides with these flags instead of Release's -O3 (what a user's
# RelWithDebInfo or distribution build gets), NATIVE=OFF without -march=native (plain x86-64);
# either puts both builds in folders of their own, named after the flags.
# Remove the worktree afterwards: git worktree remove --force build/compare-REV/src && rm -rf build/compare-REV
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/common.sh

base=${1:?usage: compare_commits.sh BASE [PAIRS] [WORKLOAD] [STEPS] [POLICY]}
pairs=${2:-5}
workload=${3:-cnn}
steps=${4:-150}
policy=${5:-serial}
case $policy in serial | openmp | mpi) ;; *) echo "compare_commits.sh: POLICY must be serial, openmp or mpi" >&2; exit 2 ;; esac
rev=$(git rev-parse --short "$base")
tree=build/compare-$rev

bash scripts/install-deps.sh
[[ -d $tree/src ]] || git worktree add --detach "$tree/src" "$rev" >/dev/null
opt=${OPT:-}
native=${NATIVE:-ON}
suffix=""
flags=()
if [[ -n $opt || $native != ON ]]; then
    suffix=-$(printf '%s' "${opt:-O3} native-$native" | tr -c 'A-Za-z0-9' '_')
    flags=(-DCMAKE_CXX_FLAGS_RELEASE="${opt:--O3 -DNDEBUG}" -DPARDL_NATIVE="$native")
fi
build_bench() { # build_bench SOURCE_DIR BUILD_DIR
    configure_release "$1" "$2"
    if ((${#flags[@]})); then cmake "$2" "${flags[@]}" >/dev/null; fi
    cmake --build "$2" -j"$(nproc)" --target "bench_training_$policy" >/dev/null
}
base_build=$tree/build$suffix
new_build=build/release$suffix
build_bench "$tree/src" "$base_build"
build_bench . "$new_build"

cores=$(nproc)
mpiexec=mpiexec.mpich
bind=()
if [[ $policy == mpi ]] && "$mpiexec" -bind-to core -n 1 true >/dev/null 2>&1; then bind=(-bind-to core); fi
# s_per_epoch is column 8 of bench_training's CSV (rank 0 prints it).
run() {
    local bench=$1/benchmarks/bench_training_$policy args=(--workload "$workload" --steps "$steps" --warmup 5)
    case $policy in
    serial) OMP_NUM_THREADS=1 "$bench" "${args[@]}" ;;
    openmp) OMP_PROC_BIND=close OMP_PLACES=cores "$bench" "${args[@]}" --threads "$cores" ;;
    mpi) OMP_NUM_THREADS=1 "$mpiexec" "${bind[@]}" -n "$cores" "$bench" "${args[@]}" ;;
    esac | tail -n1 | cut -d, -f8
}
echo "s/epoch of $policy $workload ($steps steps per run), base $rev against the working tree${suffix:+ (flags: ${opt:--O3 -DNDEBUG}, native $native)}"
: >"$tree/base.txt"
: >"$tree/new.txt"
for ((i = 1; i <= pairs; i++)); do
    if ((i % 2)); then
        b=$(run "$base_build")
        n=$(run "$new_build")
    else
        n=$(run "$new_build")
        b=$(run "$base_build")
    fi
    echo "$b" >>"$tree/base.txt"
    echo "$n" >>"$tree/new.txt"
    echo "pair $i: base $b  new $n"
done
for side in base new; do
    echo "$side: best $(sort -g "$tree/$side.txt" | head -n1)  median $(median <"$tree/$side.txt")"
done
# A pair's two runs are seconds apart, in the same phase of the machine's drift, so the ratio
# within each pair varies less than either side's times do across pairs.
echo "base / new, median over the pairs: $(paste -d' ' "$tree/base.txt" "$tree/new.txt" | awk '{ printf "%.4f\n", $1 / $2 }' | median)"
