// What the kernel micro-benchmarks (bench_gemm, bench_conv) share: seeded random operands, the
// rates they report (GFLOP/s and % of the measured single-core FMA peak for arithmetic kernels,
// bytes per second for memory-bound passes) and their main().
#pragma once

#include "peak_flops.hpp"
#include "untimed_build.hpp"

#include "pardl/core/rng.hpp"
#include "pardl/tensor/simd.hpp"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace pardl::bench {

/// This machine's single-core FMA peak in GFLOP/s, measured by kernel_benchmark_main before any
/// benchmark runs: the figure it prints (run_benchmarks.sh's peak.txt).
inline double peak_gflops = 0.0;

/// Uniform values in [-1, 1): no denormals, and sums of many of them stay far from overflow.
inline void fill_uniform(std::span<float> values, std::uint64_t seed) {
    Rng rng(seed);
    for (float& x : values) x = rng.uniform(-1.0f, 1.0f);
}

/// GFLOP/s and pct_peak (of one core) for a benchmark doing `flops_per_iteration` per iteration,
/// called after its timed loop. Rates are per CPU second, like Google Benchmark's own, so time
/// lost to other processes on a shared machine does not count. pct_peak is against the peak
/// measured again here, right after the loop (best of three 10 ms runs; counter peak_gflops), as
/// bench_training measures it for each run: a shared machine's slow and fast minutes then move a
/// kernel and its yardstick together. Against the one peak measured at startup, a pass whose
/// first seconds fell in a slow minute put later products at 99-102% of peak.
inline void report_flops(benchmark::State& state, double flops_per_iteration) {
    const double gflop = flops_per_iteration * static_cast<double>(state.iterations()) * 1e-9;
    const double peak = measure_peak_gflops_per_core(0.01, 3);
    state.counters["GFLOP/s"] = benchmark::Counter(gflop, benchmark::Counter::kIsRate);
    state.counters["pct_peak"] = benchmark::Counter(100.0 * gflop / peak, benchmark::Counter::kIsRate);
    state.counters["peak_gflops"] = peak;
}

/// Throughput of a memory-bound pass moving `bytes_per_iteration` (read plus written) per
/// iteration, as Google Benchmark's own bytes_per_second: unlike a user counter it may be absent
/// from some rows of a CSV report (whose user-counter columns the first benchmark run fixes).
inline void report_bytes(benchmark::State& state, double bytes_per_iteration) {
    state.SetBytesProcessed(
        static_cast<std::int64_t>(bytes_per_iteration * static_cast<double>(state.iterations())));
}

/// main() of a kernel benchmark: measures and prints the peak (run_benchmarks.sh reads it from
/// that line), registers the benchmarks and runs those the command line selects.
inline int kernel_benchmark_main(int argc, char** argv, void (*register_benchmarks)()) {
    warn_if_untimed_build(argv[0]);
    peak_gflops = measure_peak_gflops_per_core();
    std::printf("measured single-core FMA peak: %.1f GFLOP/s (kernels: %s)\n", peak_gflops,
                std::string(simd::name(simd::active())).c_str());
    register_benchmarks();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

} // namespace pardl::bench
