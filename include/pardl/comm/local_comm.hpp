// LocalComm: the communicator of a single process; every collective is the identity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "pardl/comm/communicator.hpp"
#include "pardl/tensor/buffer.hpp"

namespace pardl {

class LocalComm {
public:
    using Environment = NoEnvironment;
    static constexpr int rank() { return 0; }
    static constexpr int size() { return 1; }
    static const char* name() { return "local"; }
    /// With one process there is nothing to share: a plain aligned buffer.
    using ReduceBuffer = AlignedBuffer<float>;
    ReduceBuffer allocate(std::size_t n) { return ReduceBuffer(n); }
    void allreduce_sum(std::span<float>) {}
    void allreduce_sum(std::span<double>) {}
    template <class Apply>
    void allreduce_apply(std::span<float>, std::size_t n, std::span<float>, Apply&& apply) {
        apply(Range{0, n});
    }
    void broadcast(std::span<float>, int = 0) {}
    double sum(double v) { return v; }
    std::uint64_t min(std::uint64_t v) { return v; }
    std::uint64_t max(std::uint64_t v) { return v; }
    void barrier() {}
};

} // namespace pardl
