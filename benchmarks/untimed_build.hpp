// Says so when a benchmark binary was built only to be checked, not timed: the test build
// (scripts/test.sh) compiles the benchmarks at -O1 (PARDL_BENCHMARKS_FOR_TIMING=OFF), in well under half
// of -O3's compile time, which still proves they build and run, but their timings are not pardl's.
#pragma once

#include <cstdio>

#include "pardl/comm/launcher.hpp"

namespace pardl::bench {

/// Prints a warning on stderr if this binary was built with PARDL_BENCHMARKS_FOR_TIMING=OFF: once
/// per job, so under mpiexec only rank 0 prints it (read from the launcher's environment, since
/// some benchmarks warn before MPI starts).
inline void warn_if_untimed_build([[maybe_unused]] const char* program) {
#if defined(PARDL_BENCHMARKS_UNTIMED)
    if (!pardl::detail::speaks_for_job()) return;
    std::fprintf(
        stderr,
        "%s: warning: built at -O1 (PARDL_BENCHMARKS_FOR_TIMING=OFF) to check that it builds and "
        "runs; its timings are not pardl's. Time the release build (benchmarks/run_benchmarks.sh).\n",
        program);
#endif
}

} // namespace pardl::bench
