# shellcheck shell=bash
# Helpers shared by the benchmark and report scripts; source it, do not run it.

# configure_release [SOURCE_DIR] BUILD_DIR: the one configuration of the release build the scripts
# share (build/release): examples and benchmarks, no tests. Every script configures it alike, so
# none of them flips an option that the next one flips back (a reconfigure, and a rebuild).
configure_release() {
    local src=. build
    if (($# == 2)); then src=$1; shift; fi
    build=$1
    cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARDL_BUILD_TESTS=OFF \
        -DPARDL_BUILD_EXAMPLES=ON -DPARDL_BUILD_BENCHMARKS=ON -DPARDL_BENCHMARKS_FOR_TIMING=ON >/dev/null
}

# median: the median of the numbers on stdin, one per line (the mean of the middle two if even).
median() {
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
