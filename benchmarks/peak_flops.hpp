// Measures this machine's single-core fused multiply-add peak, the ceiling the kernel benchmarks
// report against ("pct_peak"). Pure register work, so it is the FMA pipes' limit, not memory's.
#pragma once

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <ctime>

namespace pardl::bench {

namespace detail {

#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
using PeakVec = xsimd::batch<float, xsimd::default_arch>;
inline constexpr std::size_t peak_lanes = PeakVec::size;
#else
using PeakVec = float;
inline constexpr std::size_t peak_lanes = 1;
#endif

// More independent chains than FMA latency x FMA ports (4 cycles x 2 pipes for 256-bit, x 1 for
// Zen 4's double-pumped 512-bit), yet few enough that they and the two constant operands stay in
// registers: 32 vector registers with AVX-512, 16 below it (spilling would measure the stores).
#if XSIMD_WITH_AVX512F
inline constexpr int peak_chains = 24;
#else
inline constexpr int peak_chains = 12;
#endif

/// Runs `iters` rounds of peak_chains independent FMAs; returns a value that depends on all of them
/// so that nothing can be optimised away.
[[gnu::noinline]] inline float fma_chains(std::uint64_t iters, float seed) {
    PeakVec acc[peak_chains];
    for (int i = 0; i < peak_chains; ++i) acc[i] = PeakVec(seed + 0.001f * static_cast<float>(i));
    // x -> 0.999 x + 0.001 stays near 1: no overflow and no denormals however long it runs.
    const PeakVec mul(0.999f);
    const PeakVec add(0.001f);
    // Fully unrolled, or the compiler interchanges the loops and keeps the chains in memory.
    for (std::uint64_t it = 0; it < iters; ++it)
#pragma GCC unroll 32
        for (int i = 0; i < peak_chains; ++i) {
#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
            acc[i] = xsimd::fma(acc[i], mul, add);
#else
            acc[i] = acc[i] * mul + add;
#endif
        }
    PeakVec sum = acc[0];
    for (int i = 1; i < peak_chains; ++i) sum += acc[i];
#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
    return xsimd::hadd(sum);
#else
    return sum;
#endif
}

/// Seconds of CPU time this thread has used: unlike wall time it does not count the slices the
/// scheduler gives to other processes (Google Benchmark's rates use CPU time too).
inline double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

} // namespace detail

/// Single-core FMA peak in GFLOP/s (2 flops per lane per FMA): the best of `runs` timed runs of
/// about `run_seconds` each (by default 10 of 30 ms), so a stray interruption does not lower the
/// ceiling.
inline double measure_peak_gflops_per_core(double run_seconds = 0.03, int runs = 10) {
    volatile float sink = 0.0f;
    const double flops_per_iter = 2.0 * detail::peak_chains * detail::peak_lanes;

    // Calibrate one run to about run_seconds (this also warms the core's clock up).
    std::uint64_t iters = 1 << 16;
    for (;;) {
        const double t0 = detail::thread_cpu_seconds();
        sink = sink + detail::fma_chains(iters, 1.0f);
        const double s = detail::thread_cpu_seconds() - t0;
        if (s > run_seconds) break;
        iters *= 2;
    }
    double best = 0.0;
    for (int rep = 0; rep < runs; ++rep) {
        const double t0 = detail::thread_cpu_seconds();
        sink = sink + detail::fma_chains(iters, 1.0f + 0.01f * static_cast<float>(rep));
        const double s = detail::thread_cpu_seconds() - t0;
        best = std::max(best, flops_per_iter * static_cast<double>(iters) / s * 1e-9);
    }
    return best;
}

} // namespace pardl::bench
