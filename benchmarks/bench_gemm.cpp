// GEMM throughput at 512^3, at the W-MLP training shapes (batch 64) and at W-CNN's Dense<256> and
// first-convolution weight-gradient shapes, in GFLOP/s and as a percentage of this machine's
// measured single-core FMA peak.
#include "kernel_benchmark.hpp"

#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/gemm.hpp"

#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>

namespace {

using pardl::Op;
using pardl::bench::fill_uniform;
using std::size_t;

void bm_gemm(benchmark::State& state, Op op_a, Op op_b, size_t m, size_t n, size_t k, float beta) {
    // Stored shapes: A is m x k (k x m when transposed), B is k x n (n x k when transposed).
    const size_t lda = op_a == Op::N ? k : m;
    const size_t ldb = op_b == Op::N ? n : k;
    pardl::AlignedBuffer<float> a(m * k), b(k * n), c(m * n);
    fill_uniform(a, 1);
    fill_uniform(b, 2);
    fill_uniform(c, 3);
    for (auto _ : state) {
        pardl::gemm(op_a, op_b, m, n, k, a.data(), lda, b.data(), ldb, beta, c.data(), n);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    pardl::bench::report_flops(state, 2.0 * double(m) * double(n) * double(k));
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
    // W-MLP 784-256-128-10, batch 64: forward (NN), weight gradient (TN) and input gradient (NT) of
    // each Dense layer. The shapes are C's m x n x k. The trainer has each step's backward
    // overwrite the gradient (StepContext::overwrite_grads), so the weight gradient is beta 0.
    const size_t widths[] = {784, 256, 128, 10};
    const size_t batch = 64;
    for (int l = 0; l < 3; ++l) {
        const size_t in = widths[l], out = widths[l + 1];
        add("NN", Op::N, Op::N, batch, out, in, 0.0f); // Y = X W
        add("TN", Op::T, Op::N, in, out, batch, 0.0f); // dW = X^T dY
        add("NT", Op::N, Op::T, batch, in, out, 0.0f); // dX = dY W^T
    }
    // W-CNN's Dense<256> on the flattened 64x7x7 maps: the trainer overwrites its gradient.
    add("NN", Op::N, Op::N, batch, 256, 3136, 0.0f);
    add("TN", Op::T, Op::N, 3136, 256, batch, 0.0f);
    add("NT", Op::N, Op::T, batch, 3136, 256, 0.0f);
    // W-CNN's first convolution: one sample's weight gradient, accumulated over the batch as the
    // layer does (columns 9 x 784 times the output gradient 32 x 784, transposed). A long k and
    // few rows: the dot-product kernels (gemm.hpp, dot_pays).
    add("NT", Op::N, Op::T, 9, 32, 784, 1.0f);
}

} // namespace

int main(int argc, char** argv) {
    return pardl::bench::kernel_benchmark_main(argc, argv, register_all);
}
