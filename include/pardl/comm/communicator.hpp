// The communicator contract: moves flat typed buffers between processes and knows nothing of
// layers. Every call is a collective: all ranks call it in the same order with the same sizes.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pardl/execution/partition.hpp"

namespace pardl {

/// requires
///  - `rank()`, `size()`: this process's index and the process count.
///  - `allreduce_sum(span<float|double>)`: in place; on return every rank holds the element-wise
///    sum over ranks, bit-identical on all ranks.
///  - `allreduce_apply(values, n, results, apply)`: sums `values` over ranks as allreduce_sum,
///    but hands the first n sums to `apply(Range)` instead of to every rank: the ranges it is
///    called with partition [0, n) (on every node, when ranks share nodes), values[range] then
///    holds the global sums, and apply must write results[range] (for example, updated
///    parameters). On return `results` is identical on every rank, values[n, size) holds the sums
///    on every rank, and values[0, n) holds unspecified values (the caller writes it anew before
///    its next reduction). This lets ranks share the work done on the sum (the optimizer
///    update) instead of repeating it.
///  - `broadcast(span<float>, root)`: every rank receives root's values.
///  - `sum(double)`, `min(uint64)`, `max(uint64)`: scalar reductions to every rank.
///  - `barrier()`.
///  - `ReduceBuffer` and `allocate(n)`: a move-only, zeroed, 64-byte aligned buffer of n floats
///    with `data()`, `size()`, `span()`, `zero()`, that converts to `span<float>`. Buffers that are
///    reduced every step (the trainer's gradient buffer) should come from here: when exactly the
///    span of such a buffer is passed to `allreduce_sum`, the communicator may reduce it through
///    memory shared with the other ranks of the node instead of messages. `allocate` and the
///    buffer's destruction may be collectives: all ranks allocate and destroy such buffers in the
///    same order with the same sizes, while the communicator's environment is alive.
///  - `Environment`: the RAII type a program must keep alive while communicators are used.
template <class C>
concept Communicator = requires(C& c, std::span<float> f, std::span<double> d, typename C::ReduceBuffer& b) {
    { c.rank() } -> std::convertible_to<int>;
    { c.size() } -> std::convertible_to<int>;
    c.allreduce_sum(f);
    c.allreduce_sum(d);
    c.allreduce_apply(f, std::size_t{}, f, [](Range) {});
    c.broadcast(f, 0);
    { c.sum(1.0) } -> std::convertible_to<double>;
    { c.min(std::uint64_t{}) } -> std::convertible_to<std::uint64_t>;
    { c.max(std::uint64_t{}) } -> std::convertible_to<std::uint64_t>;
    c.barrier();
    typename C::ReduceBuffer;
    { c.allocate(std::size_t{}) } -> std::same_as<typename C::ReduceBuffer>;
    { b.data() } -> std::same_as<float*>;
    { b.size() } -> std::convertible_to<std::size_t>;
    { b.span() } -> std::same_as<std::span<float>>;
    b.zero();
    requires std::movable<typename C::ReduceBuffer>;
    typename C::Environment;
    { C::name() } -> std::convertible_to<const char*>;
};

/// Environment of communicators that need none.
struct NoEnvironment {
    NoEnvironment() = default;
    NoEnvironment(int&, char**&) {}
    static int world_rank() { return 0; }
    static int world_size() { return 1; }
    static int max_over_ranks(int v) { return v; }
    static std::uint64_t max_over_ranks(std::uint64_t v) { return v; }
    /// Ends the whole job after an error; with one process that is just exit.
    [[noreturn]] static void abort(int code);
};

} // namespace pardl

#include <cstdlib>
[[noreturn]] inline void pardl::NoEnvironment::abort(int code) {
    std::exit(code);
}
