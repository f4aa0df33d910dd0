// GEMM throughput at 512^3 and at the W-MLP training shapes (batch 64), in GFLOP/s and as a
// percentage of this machine's measured single-core FMA peak.
#include "peak_flops.hpp"

#include "pardl/core/rng.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/gemm.hpp"
#include "pardl/tensor/simd.hpp"

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdio>
#include <string>

namespace {

using pardl::Op;
using std::size_t;

double peak_gflops = 0.0;

void fill(pardl::AlignedBuffer<float>& buf, std::uint64_t seed) {
    pardl::Rng rng(seed);
    for (float& x : buf) x = rng.uniform(-1.0f, 1.0f);
}

void bm_gemm(benchmark::State& state, Op op_a, Op op_b, size_t m, size_t n, size_t k, float beta) {
    // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k when transposed).
    const size_t lda = op_a == Op::N ? k : m;
    const size_t ldb = op_b == Op::N ? n : k;
    pardl::AlignedBuffer<float> a(m * k), b(k * n), c(m * n);
    fill(a, 1);
    fill(b, 2);
    fill(c, 3);
    for (auto _ : state) {
        pardl::gemm(op_a, op_b, m, n, k, a.data(), lda, b.data(), ldb, beta, c.data(), n);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    const double gflop = 2.0 * double(m) * double(n) * double(k) * 1e-9;
    const double iters = static_cast<double>(state.iterations());
    state.counters["GFLOP/s"] = benchmark::Counter(gflop * iters, benchmark::Counter::kIsRate);
    state.counters["pct_peak"] =
        benchmark::Counter(100.0 * gflop * iters / peak_gflops, benchmark::Counter::kIsRate);
}

void add(const char* form, Op op_a, Op op_b, size_t m, size_t n, size_t k, float beta) {
    const std::string name = std::string("gemm/") + form + "/" + std::to_string(m) + "x" + std::to_string(n) +
                             "x" + std::to_string(k) + "/beta" + (beta == 0.0f ? "0" : "1");
    benchmark::RegisterBenchmark(name.c_str(), bm_gemm, op_a, op_b, m, n, k, beta)->MinTime(0.3);
}

void register_all() {
    add("NN", Op::N, Op::N, 512, 512, 512, 0.0f);
    add("TN", Op::T, Op::N, 512, 512, 512, 0.0f);
    add("NT", Op::N, Op::T, 512, 512, 512, 0.0f);
    add("TT", Op::T, Op::T, 512, 512, 512, 0.0f);
    // W-MLP 784-256-128-10, batch 64: forward (NN), weight gradient (TN, accumulating) and input
    // gradient (NT) of each Dense layer. The shapes are C's m x n x k.
    const size_t widths[] = {784, 256, 128, 10};
    const size_t batch = 64;
    for (int l = 0; l < 3; ++l) {
        const size_t in = widths[l], out = widths[l + 1];
        add("NN", Op::N, Op::N, batch, out, in, 0.0f); // Y = X W
        add("TN", Op::T, Op::N, in, out, batch, 1.0f); // dW += X^T dY
        add("NT", Op::N, Op::T, batch, in, out, 0.0f); // dX = dY W^T
    }
}

} // namespace

int main(int argc, char** argv) {
    peak_gflops = pardl::bench::measure_peak_gflops_per_core();
    // One line: run_benchmarks.sh reads the number after "peak:" and drops the line.
    std::printf("measured single-core FMA peak: %.1f GFLOP/s (gemm kernels: %s)\n", peak_gflops,
                std::string(pardl::simd::name(pardl::simd::active())).c_str());
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
