#!/usr/bin/env bash
# The test command: build everything (tests, examples, benchmarks) in Release and run CTest. The
# benchmarks are compiled at -O1 here, to check that they build and run (benchmarks/CMakeLists.txt).
set -euo pipefail

cd "$(dirname "$0")/.."
jobs=$(nproc)
build=build/test

bash scripts/install-deps.sh

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARDL_BUILD_TESTS=ON \
    -DPARDL_BUILD_EXAMPLES=ON -DPARDL_BUILD_BENCHMARKS=ON -DPARDL_BENCHMARKS_FOR_TIMING=OFF
cmake --build "$build" -j"$jobs"

status=0
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 600 || status=$?
exit "$status"
