// The executor contract: how a rank's share of a batch is spread over workers (threads) and how
// their private gradient buffers are combined. Executors are the only code that opens parallel
// regions; kernels and layers never do.
#pragma once

#include <algorithm>
#include <cassert>
#include <concepts>
#include <cstddef>
#include <functional>
#include <span>
#include <type_traits>

#include "pardl/execution/partition.hpp"
#include "pardl/layers/layer.hpp"
#include "pardl/tensor/vector_loop.hpp"

namespace pardl {

/// The default `finish` of Executor::run: nothing after the reduction.
struct NoFinish {
    void operator()(std::size_t, Range, float*) const noexcept {}
};

/// The default `then` of Executor::run: nothing after the finishes.
struct NoThen {
    void operator()(std::size_t, Range) const noexcept {}
};

/// Gradient sums run in blocks of this many floats: small enough that a fused epilogue (the
/// optimizer update) reads what was just summed from L1.
inline constexpr std::size_t reduction_block = 2048;

/// Worker `part` of `parts`'s share of a gradient of n floats in a worker sum with a second pass
/// (Executor::run's `then`): whole blocks of reduction_block floats, so that every block (the
/// unit of the clipping norm's partial sums) is summed by one thread, whatever the thread count.
/// Without a second pass the shares are cut at cache lines (line_share), which balances many
/// threads more evenly (W-MLP's 115 blocks over 16 threads: 8 for the busiest, 7.2 on average).
constexpr Range reduction_share(std::size_t n, std::size_t part, std::size_t parts) noexcept {
    return unit_share(n, part, parts, reduction_block);
}

/// out[i - r.begin] = buffers[0][i] + buffers[1][i] + ... (added in that order) for i in r, for
/// two or more buffers; `out` may be buffers[0].data() + r.begin. The one worker-sum of every
/// executor: the order is what makes runs reproducible. It only reads the buffers it does not
/// write: the trainer's backward overwrites them every step. (It used to zero them as well, which
/// moves another core's cache lines here and back every step for nothing; dropping that
/// measured neutral in the 2-thread W-MLP step in alternating runs.)
inline void sum_worker_buffers(std::span<const std::span<float>> buffers, Range r, float* out) noexcept {
    assert(buffers.size() >= 2);
    const auto at = [&](std::size_t b) { return static_cast<const float*>(buffers[b].data() + r.begin); };
    simd::for_each_vector(
        r.size(),
        [](simd::FloatVector& o, const simd::FloatVector& a, const simd::FloatVector& b) { o = a + b; }, out,
        at(0), at(1));
    for (std::size_t b = 2; b < buffers.size(); ++b)
        simd::for_each_vector(
            r.size(), [](simd::FloatVector& o, const simd::FloatVector& s) { o += s; }, out, at(b));
}

/// Worker `w`'s share `r` of the reduction (r.begin a multiple of cache_line_floats, of
/// reduction_block where a `then` follows), in blocks of reduction_block floats from r.begin. Without a
/// finish each block's sum goes into buffers[0]. With one, each block's sum goes to finish(w, block, sums)
/// right after it is made, in a buffer on this thread's stack, so the fused epilogue reads it from L1 and no
/// worker writes a line of another worker's buffer: the sum of two threads' gradients then moves
/// each line between the cores once, where writing it into buffers[0] also took the other
/// thread's lines over and gave them back at its next backward. With a single buffer there is
/// nothing to add: finish gets that buffer's block. Every executor's reduction goes through here.
template <class Finish>
void sum_and_finish(std::span<const std::span<float>> buffers, Range r, std::size_t w, Finish&& finish) {
    constexpr bool finishes = !std::is_same_v<std::decay_t<Finish>, NoFinish>;
    alignas(64) float sums[finishes ? reduction_block : 1];
    for (std::size_t b = r.begin; b < r.end; b += reduction_block) {
        const Range piece{b, std::min(r.end, b + reduction_block)};
        float* const first = buffers[0].data() + piece.begin;
        if (buffers.size() == 1) {
            finish(w, piece, first);
        } else if constexpr (finishes) {
            sum_worker_buffers(buffers, piece, sums);
            finish(w, piece, static_cast<float*>(sums));
        } else {
            sum_worker_buffers(buffers, piece, first);
        }
    }
}

/// requires
///  - `E(threads)`: threads == 0 picks the executor's default.
///  - `workers()`: number of workers W (fixed after construction); `threads()`: the threads they
///    run on (W for a thread team, 1 when the workers take turns).
///  - `run(rows, work, buffers, finish, then)`: calls work(w, range) once for every worker w in [0, W)
///    with range = balanced_range(rows, w, W), concurrently or not; then, if `buffers` is
///    non-empty (W spans of equal size), makes buffers[0][i] = buffers[0][i] + buffers[1][i] + ...
///    in that fixed order for every i (buffers[1..W) are only read). With a `finish` (the optional
///    fused epilogue, e.g. the optimizer update) it instead calls finish(w, chunk, sums) on chunks
///    partitioning the buffer once each chunk is summed: sums[i - chunk.begin] is the sum for i in
///    chunk, in memory finish may overwrite, and buffers[0] need not receive the sums (with W = 1,
///    sums points into buffers[0]). w is the worker whose thread runs that finish (0 where the workers take
///    turns), and each worker's chunks come in increasing order and together make one contiguous range (the
///    trainer relies on this to know which parameters a worker updated); each chunk holds at most
///    reduction_block floats. With a `then` as well (a second epilogue pass that needs every
///    chunk finished, e.g. the update after the clipping norm's partial sums), chunks begin at
///    multiples of reduction_block whatever W (reduction_share), and then(w, range) runs once per
///    worker that finished chunks, with the range they made, after every finish of the call has
///    returned. An exception thrown by any work call is rethrown after all workers finish (finish
///    and then are skipped); finish and then must not throw (the optimizer updates do not). One
///    parallel region per call. Every thread runs work, finish and then under the calling
///    thread's SubnormalMode (core/subnormals.hpp); for_chunks' body too.
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
    e.run(
        std::size_t{}, [](std::size_t, Range) {}, buffers, [](std::size_t, Range, float*) {},
        [](std::size_t, Range) {});
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
