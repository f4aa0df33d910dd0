// The executor contract: how a rank's share of a batch is spread over workers (threads) and how
// their private gradient buffers are combined. Executors are the only code that opens parallel
// regions; kernels and layers never do.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <functional>
#include <span>

#include "pardl/execution/partition.hpp"
#include "pardl/layers/layer.hpp"
#include "pardl/tensor/vector_loop.hpp"

namespace pardl {

/// The default `finish` of Executor::run: nothing after the reduction.
struct NoFinish {
    void operator()(std::size_t, Range) const noexcept {}
};

/// Gradient sums run in blocks of this many floats: small enough that a fused epilogue (the
/// optimizer update) reads what was just summed from L1.
inline constexpr std::size_t reduction_block = 2048;

/// buffers[0][i] += buffers[1][i] + ... (in that order) for i in r. The one worker-sum of every
/// executor: the order is what makes runs reproducible. It only reads buffers[1..): the trainer's
/// backward overwrites them every step. (It used to zero them as well, which moves another core's
/// cache lines here and back every step for nothing; dropping that measured neutral in the
/// 2-thread W-MLP step in alternating runs (benchmarks/performance_notes.md).)
inline void sum_worker_buffers(std::span<const std::span<float>> buffers, Range r) noexcept {
    float* dst = buffers[0].data();
    for (std::size_t b = 1; b < buffers.size(); ++b) {
        simd::for_each_vector(
            r.size(), [](simd::FloatVector& d, const simd::FloatVector& s) { d += s; }, dst + r.begin,
            static_cast<const float*>(buffers[b].data() + r.begin));
    }
}

/// Worker `w` sums the worker buffers over `r` block by block and calls finish(w, block) right
/// after each block's sum, so the fused epilogue reads what was just summed from L1. Every
/// executor's reduction goes through here.
template <class Finish>
void sum_and_finish(std::span<const std::span<float>> buffers, Range r, std::size_t w, Finish&& finish) {
    for (std::size_t b = r.begin; b < r.end; b += reduction_block) {
        const Range piece{b, std::min(r.end, b + reduction_block)};
        sum_worker_buffers(buffers, piece);
        finish(w, piece);
    }
}

/// requires
///  - `E(threads)`: threads == 0 picks the executor's default.
///  - `workers()`: number of workers W (fixed after construction); `threads()`: the threads they
///    run on (W for a thread team, 1 when the workers take turns).
///  - `run(rows, work, buffers, finish)`: calls work(w, range) once for every worker w in [0, W)
///    with range = balanced_range(rows, w, W), concurrently or not; then, if `buffers` is
///    non-empty (W spans of equal size), makes buffers[0][i] = buffers[0][i] + buffers[1][i] + ...
///    in that fixed order for every i (buffers[1..W) are only read), and calls finish(w, chunk) on chunks
///    partitioning the buffer once each chunk is summed (the optional fused epilogue, e.g. the optimizer
///    update). w is the worker whose thread runs that finish (0 where the workers take turns), and
///    each worker's chunks come in increasing order and together make one contiguous range (the
///    trainer relies on this to know which parameters a worker updated). An exception thrown by
///    any work call is rethrown after all workers finish (finish is then skipped). One parallel
///    region per call.
///  - `for_chunks(n, body)`: calls body(range) over a partition of [0, n) (each index once).
///  - `reducer(w)`: the WorkerReducer worker w hands to its layers; a sum over all workers of the
///    team, then over ranks through the hook given to `set_rank_reduce` (called by the master
///    thread only, which MPI_THREAD_FUNNELED allows).
template <class E>
concept Executor = requires(E& e, std::span<const std::span<float>> buffers) {
    { e.workers() } -> std::convertible_to<std::size_t>;
    { e.threads() } -> std::convertible_to<std::size_t>;
    e.run(
        std::size_t{}, [](std::size_t, Range) {}, buffers);
    e.for_chunks(std::size_t{}, [](Range) {});
    { E::name() } -> std::convertible_to<const char*>;
    { e.reducer(std::size_t{}) } -> std::convertible_to<WorkerReducer*>;
    e.set_rank_reduce(std::function<void(std::span<double>)>{});
};

/// Whether executor E runs the training step as a team that splits every layer
/// (TensorParallelExecutor) instead of splitting the batch over workers.
template <class E>
inline constexpr bool splits_layers_v = requires {
    requires E::splits_layers;
};

} // namespace pardl
