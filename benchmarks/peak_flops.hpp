// Measures this machine's single-core fused multiply-add peak, the ceiling the kernel benchmarks
// report against ("pct_peak"). Pure register work, so it is the FMA pipes' limit, not memory's.
#pragma once

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace pardl::bench {

namespace detail {

#if XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
using PeakVec = xsimd::batch<float, xsimd::default_arch>;
inline constexpr std::size_t peak_lanes = PeakVec::size;
#else
using PeakVec = float;
inline constexpr std::size_t peak_lanes = 1;
#endif

// 24 independent chains: comfortably more than FMA latency x FMA ports on current x86 cores
// (4 cycles x 2 pipes for 256-bit, or x 1 for double-pumped 512-bit on Zen 4), and with the
// two constant operands they still fit the 32 vector registers of AVX-512.
inline constexpr int peak_chains = 24;

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

} // namespace detail

/// Single-core FMA peak in GFLOP/s (2 flops per lane per FMA), measured over about 0.3 s: the best
/// of several short timed runs, so a stray interruption does not lower the ceiling.
inline double measure_peak_gflops_per_core() {
    using clock = std::chrono::steady_clock;
    volatile float sink = 0.0f;
    const double flops_per_iter = 2.0 * detail::peak_chains * detail::peak_lanes;

    // Calibrate one run to about 30 ms (this also warms the core's clock up).
    std::uint64_t iters = 1 << 16;
    for (;;) {
        const auto t0 = clock::now();
        sink = sink + detail::fma_chains(iters, 1.0f);
        const double s = std::chrono::duration<double>(clock::now() - t0).count();
        if (s > 0.03) break;
        iters *= 2;
    }
    double best = 0.0;
    for (int rep = 0; rep < 10; ++rep) {
        const auto t0 = clock::now();
        sink = sink + detail::fma_chains(iters, 1.0f + 0.01f * static_cast<float>(rep));
        const double s = std::chrono::duration<double>(clock::now() - t0).count();
        best = std::max(best, flops_per_iter * static_cast<double>(iters) / s * 1e-9);
    }
    return best;
}

} // namespace pardl::bench
